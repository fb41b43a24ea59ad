"""Campaign effects per action: each arm of a multi-arm test against its shared control group."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.uplift.effects import campaign_effects, shared_control


def rows_of(arms: list[tuple[str, int, int, int]], cutoff: str = "2024-03-01") -> pd.DataFrame:
    """(action, treatment, customers, churners) per arm, as uplift rows."""
    parts = [pd.DataFrame({"action": action, "treatment": treatment, "cutoff": pd.Timestamp(cutoff),
                           "churned": np.r_[np.ones(churners), np.zeros(n - churners)].astype(int)})
             for action, treatment, n, churners in arms]
    return pd.concat(parts, ignore_index=True)


def test_each_arm_of_a_test_with_one_control_group_is_compared_with_it() -> None:
    rows = rows_of([("mail A", 1, 400, 80), ("mail B", 1, 400, 120), ("no mail", 0, 400, 160)])
    table = campaign_effects(rows, ("action",)).set_index(["group", "level"])
    a, b = table.loc[("action", "mail A")], table.loc[("action", "mail B")]
    assert a["control_group"] == b["control_group"] == "shared" and a["control"] == b["control"] == 400
    assert np.isclose(a["effect"], 0.40 - 0.20) and np.isclose(b["effect"], 0.40 - 0.30)
    overall = table.loc[("all", "all")]
    assert overall["contacted"] == 800 and np.isclose(overall["effect"], 0.40 - 0.25)
    # the control group's own level has no contacted customers: no effect, said by the counts
    assert table.loc[("action", "no mail"), "contacted"] == 0 and pd.isna(table.loc[("action", "no mail"), "effect"])


def test_each_action_with_its_own_control_uses_only_that_control() -> None:
    """Actions randomised separately (each with control rows of its own action): no pooling, and an
    action given without any randomised control stays without an effect (another action's controls
    are other customers)."""
    rows = rows_of([("call", 1, 300, 30), ("call", 0, 100, 20), ("waiver", 1, 300, 60), ("waiver", 0, 100, 25),
                    ("gift", 1, 50, 5)])
    assert not shared_control(rows).any()
    table = campaign_effects(rows, ("action",)).set_index(["group", "level"])
    assert table.loc[("action", "call"), "control_group"] == "same action"
    assert np.isclose(table.loc[("action", "call"), "effect"], 0.20 - 0.10)
    assert np.isclose(table.loc[("action", "waiver"), "effect"], 0.25 - 0.20)
    assert table.loc[("action", "gift"), "control"] == 0 and pd.isna(table.loc[("action", "gift"), "effect"])


def test_a_shared_control_is_taken_from_the_same_cutoffs_only() -> None:
    early = rows_of([("mail A", 1, 200, 20), ("no mail", 0, 200, 40)], "2024-02-01")
    late = rows_of([("mail A", 1, 200, 60), ("no mail", 0, 100, 80), ("mail B", 1, 100, 10)], "2024-03-01")
    rows = pd.concat([early, late], ignore_index=True)
    table = campaign_effects(rows, ("action",)).set_index(["group", "level"])
    b = table.loc[("action", "mail B")]
    assert b["control"] == 100 and np.isclose(b["mean_control"], 0.80)  # March's control group, not February's
    a = table.loc[("action", "mail A")]
    assert a["control"] == 300 and np.isclose(a["mean_control"], 120 / 300)

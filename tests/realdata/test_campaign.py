"""A randomised campaign on real data: the uplift learners and the campaign effects, from `churn init` on.

The MineThatData e-mail test (`tests/realdata/datasets.py email_campaign`): 64,000 customers randomised to
a men's e-mail, a women's e-mail or none, and whether each visited in the two weeks after. As a care team
would bring it: a customers snapshot whose flag `visit` = 0 is the short-horizon churn (did not come
back), and the campaign's contact list with its control group. The generated bank cannot show whether
the uplift learners find real persuadables (its planted effect is too small for its control group, see
README *Uplift*); this set can, and the effects have a known answer: the arms' visit rates in the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models.uplift.metrics import bootstrap_metrics
from models.uplift.training import split_uplift_rows, uplift_features
from pipelines.config import load_config
from tests.realdata.datasets import EMAIL_CONTROL, RealDataset
from tests.realdata.test_end_to_end import churn


def reference_uplift_qini(rows: pd.DataFrame, horizon_days: int, test_cutoffs: int, seed: int) -> dict[str, float]:
    """Held-out Qini (with its bootstrap interval) of what a user gets from a notebook in minutes: two
    logistic regressions (contacted, control) on the same rows, split and features as the pipeline's."""
    train, test, *_ = split_uplift_rows(rows, horizon_days, test_cutoffs, seed)
    features = uplift_features(rows)
    x = rows[features].copy()
    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(x[c])]
    numeric = [c for c in features if c not in categorical]
    x[categorical] = x[categorical].astype("str")
    x[numeric] = x[numeric].astype(float).fillna(0.0)
    y, treated = rows["churned"].to_numpy(dtype=int), rows["treatment"].to_numpy(dtype=int) == 1

    def fitted(arm: np.ndarray) -> object:
        model = make_pipeline(ColumnTransformer([("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
                                                 ("numeric", StandardScaler(), numeric)]),
                              LogisticRegression(max_iter=2000))
        return model.fit(x[train & arm], y[train & arm])

    uplift = fitted(~treated).predict_proba(x[test])[:, 1] - fitted(treated).predict_proba(x[test])[:, 1]
    return bootstrap_metrics(uplift, treated[test].astype(int), y[test], (0.1,), 200, seed)["qini"]


def rank_by_uplift(config: Path, recency_as_of_campaign: bool = False) -> None:
    """What a campaign's user changes in the config `churn init` wrote: the list ranked by uplift and, for the
    e-mail test, `recency` put back among the static features (init leaves a "recency" out as a measure
    taken at export; there it is as of the campaign)."""
    raw = yaml.safe_load(config.read_text())
    if recency_as_of_campaign:
        raw["features"]["static_features"] = ["recency", *raw["features"]["static_features"]]
        raw["features"]["static_types"] = {"recency": "numeric", **raw["features"]["static_types"]}
    raw["scoring"]["ranking"] = "uplift"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.mark.slow
def test_randomised_email_campaign_uplift_and_effects_from_init(campaign_data: RealDataset, tmp_path: Path) -> None:
    assert campaign_data.contacts is not None
    churn("init", "--customers", str(campaign_data.customers), "--contacts", str(campaign_data.contacts),
          "--churn-flag", "visit", "--churned-value", "0", "--horizon", "14", "--as-of", str(campaign_data.as_of),
          "--out", "mine.yaml", cwd=tmp_path)
    config = tmp_path / "mine.yaml"
    cfg = load_config(config)
    assert cfg.labels.horizon_days == 14 and cfg.labels.churn_flag is not None
    assert (cfg.labels.cutoffs.count, cfg.labels.cutoffs.anchor) == (1, "as_of")
    # init leaves `recency` out as a measure taken at export; here it is as of the campaign, so the user puts it
    # back, as the comment beside static_features invites
    assert "recency" not in cfg.features.static_features
    rank_by_uplift(config, recency_as_of_campaign=True)
    churn("run", "--config", "mine.yaml", "--to", "score", cwd=tmp_path)
    cfg = load_config(config)
    reports, outputs = tmp_path / cfg.paths.reports_dir, tmp_path / cfg.paths.outputs_dir

    # every customer's contact decision is an uplift row; the control group is the file's No E-Mail arm
    contacts = pd.read_csv(campaign_data.contacts, dtype={"customer_id": "str"})
    rows = pd.read_parquet(tmp_path / cfg.paths.features_dir / "uplift.parquet")
    assert len(rows) == len(contacts) == 64_000
    assert int((rows["treatment"] == 0).sum()) == int((contacts["action"] == EMAIL_CONTROL).sum())

    # the learners find real persuadables: the chosen one beats random targeting on customers it never saw
    metrics = json.loads((reports / "uplift_metrics.json").read_text())
    chosen = metrics["metrics"][metrics["selected"]]["qini"]
    reference = reference_uplift_qini(rows, cfg.labels.horizon_days, cfg.uplift.test_cutoffs, cfg.seed)
    print(f"\nemail campaign: {metrics['selected']} held-out Qini {chosen['value']:.4f} "
          f"[{chosen['low']:.4f}, {chosen['high']:.4f}]; reference two logistic regressions {reference['value']:.4f} "
          f"[{reference['low']:.4f}, {reference['high']:.4f}]; held out {metrics['info']['rows_test']:,} rows")
    assert metrics["info"]["ranking_gate"] == "passed" and chosen["low"] > 0
    assert chosen["value"] > reference["low"]  # not behind what a notebook gets, beyond the noise

    # the list is ranked by uplift: no customer value is known, so the persuadables by predicted uplift
    manifest = json.loads((outputs / "manifest.json").read_text())
    assert manifest["plan"]["ranking"]["used"] == "uplift"
    scores = pd.read_parquet(outputs / "scores.parquet")
    listed = scores[scores["selected"]].sort_values("rank")
    assert len(listed) > 0 and (listed["selection_reason"] == "highest_uplift_no_value").all()
    assert (listed["uplift_class"] == "persuadable").all()
    waiting = scores[scores["selection_reason"] == "over_capacity"]
    assert waiting.empty or waiting["uplift"].max() <= listed["uplift"].min()

    # the campaign effects equal the arms' rates in the file: overall and per e-mail against the shared control
    churn("effects", "--config", "mine.yaml", cwd=tmp_path)
    table = pd.read_csv(reports / "effects.csv")
    assert set(table["outcome"]) == {"churned"}  # no value, transactions or surveys: nothing else is measured
    assert json.loads((reports / "effects.json").read_text())["outcomes"] == ["churned"]
    churned = table[table["outcome"] == "churned"].set_index(["group", "level"])
    customers = pd.read_csv(campaign_data.customers, dtype={"customer_id": "str"})
    arm = contacts.set_index("customer_id")["action"].reindex(customers["customer_id"]).to_numpy()
    gone = customers["visit"].to_numpy() == 0
    control_rate = gone[arm == EMAIL_CONTROL].mean()
    overall = churned.loc[("all", "all")]
    assert overall["control"] == (arm == EMAIL_CONTROL).sum() and overall["contacted"] == (arm != EMAIL_CONTROL).sum()
    assert overall["effect"] == pytest.approx(control_rate - gone[arm != EMAIL_CONTROL].mean(), abs=1e-12)
    assert overall["low"] > 0  # the e-mails brought customers back, beyond doubt
    for email in ("Mens E-Mail", "Womens E-Mail"):
        line = churned.loc[("action", email)]
        assert line["control_group"] == "shared" and line["control"] == (arm == EMAIL_CONTROL).sum()
        assert line["effect"] == pytest.approx(control_rate - gone[arm == email].mean(), abs=1e-12)
    assert churned.loc[("action", "Mens E-Mail"), "low"] > churned.loc[("action", "Womens E-Mail"), "high"]


def test_where_nearly_everyone_is_flagged_init_keeps_the_attributes(promotion_data: RealDataset,
                                                                   tmp_path: Path) -> None:
    """The Starbucks promotion set: about 1% buy, so 99% are flagged (no purchase). Every level of every
    attribute is then about 99% "churned" by chance; init must keep the attributes as features (it once
    took each for the outcome in disguise and left the model nothing to learn from), and the features stage
    must build every customer's row at the flag's window start, the offer's contacts after it."""
    churn("init", "--customers", str(promotion_data.customers), "--contacts", str(promotion_data.contacts),
          "--churn-flag", "purchase", "--churned-value", "0", "--horizon", "30", "--as-of", str(promotion_data.as_of),
          "--out", "mine.yaml", cwd=tmp_path)
    cfg = load_config(tmp_path / "mine.yaml")
    assert list(cfg.features.static_features) == promotion_data.facts["attributes"]
    churn("run", "--config", "mine.yaml", "--to", "features", cwd=tmp_path)
    train = pd.read_parquet(tmp_path / cfg.paths.features_dir / "train.parquet")
    rows = pd.read_parquet(tmp_path / cfg.paths.features_dir / "uplift.parquet")
    assert len(train) == len(rows) == promotion_data.facts["customer_rows"]
    assert int(rows["treatment"].sum()) == promotion_data.facts["treated"]
    assert int(train["churned"].sum()) == promotion_data.facts["customer_rows"] - promotion_data.facts["buyers"]

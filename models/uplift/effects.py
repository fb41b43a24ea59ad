"""Campaign effects: contacted vs randomised control on past contacts, with intervals and power.

Input: the uplift rows (`data.py`: customers contacted or kept as control just after a
cutoff, with the churn label of that cutoff) plus per-row outcomes measured over the same
label window [cutoff, cutoff + horizon):
- churned: closed (or, under `inactivity`, went inactive) in the window; the effect is reported
  as churn prevented = control rate - contacted rate (positive: the contacts kept customers);
- value_kept: the value the customer brought in the window (`future_value`);
- satisfaction: mean CSAT (1-5) of the survey answers in the window (rows without an answer are
  left out of that outcome, counted);
- repurchase: at least one transaction with a positive amount in the window.
Satisfaction and repurchase are read from the event tables by one relational query on every engine
(features/relational/outcomes.py, run by pipelines/effects.py); `with_outcomes` adds them to the rows.
For each group (all, each care segment, each action, each customer segment) and outcome: sizes, means, the
difference with a 95% interval (normal approximation, unpooled), the two-sided p-value, and
the sample size per arm a future test would need to detect the observed difference with 80%
power at 5% significance (statsmodels power analysis, same arm ratio as observed).
The randomisation makes the difference an unbiased estimate of the average effect.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

Z95 = 1.959963984540054
ALPHA = 0.05
POWER = 0.8

OUTCOMES: dict[str, str] = {
    "churned": "binary", "repurchase": "binary", "value_kept": "mean", "satisfaction": "mean",
}
"""Outcome -> kind. The effect of churn is reported as control minus contacted (churn prevented);
the others as contacted minus control (what the contact added)."""


def required_per_arm(kind: str, treated: np.ndarray, control: np.ndarray, difference: float) -> float | None:
    """Contacted customers a future test needs (controls in the observed ratio) to detect `difference`."""
    from statsmodels.stats.power import NormalIndPower, TTestIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if not np.isfinite(difference) or difference == 0 or len(treated) < 2 or len(control) < 2:
        return None
    ratio = len(control) / len(treated)
    if kind == "binary":
        p_t, p_c = float(treated.mean()), float(control.mean())
        if p_t in (0.0, 1.0) and p_c in (0.0, 1.0):
            return None
        size = abs(proportion_effectsize(p_c, p_t))
        if size == 0:
            return None
        n = NormalIndPower().solve_power(effect_size=size, alpha=ALPHA, power=POWER, ratio=ratio)
    else:
        pooled = math.sqrt((treated.var(ddof=1) + control.var(ddof=1)) / 2.0)
        if not pooled > 0:
            return None
        n = TTestIndPower().solve_power(effect_size=abs(difference) / pooled, alpha=ALPHA, power=POWER, ratio=ratio)
    return float(math.ceil(float(np.squeeze(n))))


def compare(treated: np.ndarray, control: np.ndarray, kind: str, outcome: str) -> dict[str, float | int | None]:
    """Sizes, means, effect with 95% interval, p-value and the sample size needed, for one outcome."""
    treated = treated[np.isfinite(treated)]
    control = control[np.isfinite(control)]
    row: dict[str, float | int | None] = {"contacted": int(len(treated)), "control": int(len(control))}
    if len(treated) < 2 or len(control) < 2:
        return {**row, "mean_contacted": None, "mean_control": None, "effect": None, "low": None, "high": None,
                "p_value": None, "needed_contacted_per_test": None}
    m_t, m_c = float(treated.mean()), float(control.mean())
    effect = (m_c - m_t) if outcome == "churned" else (m_t - m_c)
    se = math.sqrt(treated.var(ddof=1) / len(treated) + control.var(ddof=1) / len(control))
    p_value = float(2 * stats.norm.sf(abs(effect) / se)) if se > 0 else None
    return {**row, "mean_contacted": m_t, "mean_control": m_c, "effect": effect,
            "low": effect - Z95 * se, "high": effect + Z95 * se, "p_value": p_value,
            "needed_contacted_per_test": required_per_arm(kind, treated, control, effect)}


def shared_control(rows: pd.DataFrame) -> np.ndarray:
    """Control rows of a shared control group: those whose action no contacted row at their cutoff has.

    A test with several arms and one control group (e-mail A, e-mail B, no e-mail) records the
    control customers under an action of their own ("No E-Mail"), so no arm has control rows of its
    action. Where every control row carries an action that was also given at its cutoff (each action
    randomised with its own control), there is no shared group and this is all False.
    """
    treated = rows["treatment"].to_numpy(dtype=np.int64) == 1
    keys = rows["cutoff"].astype("str") + "\x1f" + rows["action"].astype("str")
    given = set(keys[treated])
    return ~treated & ~keys.isin(given).to_numpy()


def campaign_effects(rows: pd.DataFrame, group_columns: tuple[str, ...] = ("segment", "action")) -> pd.DataFrame:
    """One line per (group, level, outcome): the contacted-vs-control comparison (see the module docstring).

    `control_group` says whom the contacted were compared with: `same <group>` (control rows of the
    same level), or for an action with no control rows of its own, `shared` (the shared control group
    at the same cutoffs, `shared_control`: the usual design of a test with several arms). Customer
    attributes (segments) are known before the contact, so their levels always use their own controls.
    """
    treated = rows["treatment"].to_numpy(dtype=np.int64) == 1
    shared = shared_control(rows) if "action" in rows and "cutoff" in rows else np.zeros(len(rows), dtype=bool)
    cutoffs = rows["cutoff"].astype("str").to_numpy() if "cutoff" in rows else np.zeros(len(rows), dtype=object)
    lines: list[dict[str, object]] = []
    groups: list[tuple[str, str, np.ndarray]] = [("all", "all", np.ones(len(rows), dtype=bool))]
    for column in group_columns:
        if column in rows:
            values = rows[column].astype("str").to_numpy()
            groups += [(column, level, values == level) for level in sorted(set(values))]
    for group, level, mask in groups:
        control = mask & ~treated
        basis = "all" if group == "all" else f"same {group}"
        if group == "action" and not control.any() and (mask & treated).any() and shared.any():
            control = shared & np.isin(cutoffs, np.unique(cutoffs[mask & treated]))
            basis = "shared"
        for outcome, kind in OUTCOMES.items():
            if outcome not in rows:
                continue
            values = rows[outcome].to_numpy(dtype=float)
            lines.append({"group": group, "level": level, "outcome": outcome, "control_group": basis,
                          **compare(values[mask & treated], values[control], kind, outcome)})
    return pd.DataFrame(lines)


def with_outcomes(rows: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """`rows` (a copy) with the outcomes `campaign_effects` compares besides churn: value_kept (the row's
    `future_value`, when any row has one) and the window outcomes `measured` (repurchase, satisfaction; one
    row per row of `rows`, in the same order: features/relational/outcomes.py)."""
    if len(measured) != len(rows):
        raise ValueError(f"{len(measured)} measured outcomes for {len(rows)} rows: they must match row for row")
    out = rows.copy()
    value = out["future_value"].to_numpy(dtype=float) if "future_value" in out else np.empty(0)
    if np.isfinite(value).any():  # no value known at all (a snapshot without a value column): not an outcome
        out["value_kept"] = value
    for column in ("repurchase", "satisfaction"):
        if column in measured:
            out[column] = measured[column].to_numpy(dtype=float)
    return out

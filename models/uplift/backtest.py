"""What a list reached and saved at one past cutoff, for the value-at-risk, uplift and random lists.

Pure: the scored customers at the cutoff (with the list decisions), what happened after it
(churned in the horizon), the bank's randomised contacts just after it, and, on generated
data, each customer's true uplift. Figures per list:
- customers, churners_reached (listed customers who churned in the horizon), value_at_risk_reached
  (sum of predicted value at risk on the list);
- estimated_churners_saved: the list's size x (churn rate of its randomised control members - churn
  rate of its contacted members), from the bank's own randomised contacts just after the cutoff
  (only list members the campaign happened to reach count; their numbers are reported, and the
  estimate is empty when either arm is empty); estimated_value_saved: the same rate gap x the
  list's retained lifetime value;
- true_churners_saved and true_value_saved (generated data only): the sum over the list of the
  true uplift, and of true uplift x retained lifetime value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def list_outcomes(listed: np.ndarray, churned: np.ndarray, value_at_risk: np.ndarray,
                  retained_value: np.ndarray, campaign_treatment: np.ndarray,
                  true_uplift: np.ndarray | None) -> dict[str, float]:
    """The figures of one list (see the module docstring); arrays aligned over the scored customers.

    `campaign_treatment`: 1 contacted, 0 randomised control, -1 not in the campaign just after the cutoff.
    """
    listed = np.asarray(listed, dtype=bool)
    churned = np.asarray(churned, dtype=float)
    value = np.nan_to_num(np.asarray(retained_value, dtype=float), nan=0.0)
    arm = np.asarray(campaign_treatment, dtype=np.int64)
    treated = listed & (arm == 1)
    control = listed & (arm == 0)
    out: dict[str, float] = {
        "customers": float(listed.sum()),
        "churners_reached": float(np.nansum(churned[listed])),
        "value_at_risk_reached": float(np.nansum(np.asarray(value_at_risk, dtype=float)[listed])),
        "campaign_contacted_on_list": float(treated.sum()),
        "campaign_control_on_list": float(control.sum()),
    }
    if treated.any() and control.any():
        gap = float(np.nanmean(churned[control]) - np.nanmean(churned[treated]))
        out["estimated_churners_saved"] = gap * float(listed.sum())
        out["estimated_value_saved"] = gap * float(value[listed].sum())
    else:
        out["estimated_churners_saved"] = float("nan")
        out["estimated_value_saved"] = float("nan")
    if true_uplift is not None:
        truth = np.nan_to_num(np.asarray(true_uplift, dtype=float), nan=0.0)
        out["true_churners_saved"] = float(truth[listed].sum())
        out["true_value_saved"] = float((truth * value)[listed].sum())
    return out


def random_list(size: int, count: int, seed: int) -> np.ndarray:
    """A seeded random list of `size` customers out of `count`."""
    chosen = np.zeros(count, dtype=bool)
    if size:
        chosen[np.random.default_rng(seed).choice(count, size=min(size, count), replace=False)] = True
    return chosen


def totals(frame: pd.DataFrame) -> pd.DataFrame:
    """Per list: the figures summed over the cutoffs (an empty estimate counts as missing, not 0)."""
    numeric = frame.drop(columns=["cutoff"]).groupby("list", sort=False)
    return numeric.sum(min_count=1).reset_index()

"""Baselines trained and evaluated on the same split as the models, so the gain is measured.

- logistic regression on the same features (`models/linear.py`: imputed, scaled, one-hot
  categoricals, calibrated like the booster; it is also a servable candidate);
- a recency-only rule: the longer since the last transaction, the higher the risk;
- for value, last period's value carried forward.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

RECENCY_FEATURE = "days_since_last_transaction"


def recency_scores(frame: pd.DataFrame) -> np.ndarray | None:
    """Days since the last transaction (never active = riskiest); None without transactions."""
    if RECENCY_FEATURE not in frame.columns:
        return None
    days = frame[RECENCY_FEATURE].to_numpy(dtype=float)
    worst = np.nanmax(days) + 1 if np.isfinite(days).any() else 1.0
    return np.where(np.isfinite(days), days, worst)


def carry_forward_value(frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
    """Value of the last period as the forecast of the next, scaled to the horizon's length.

    Uses the transaction-amount window closest to the horizon (e.g. `transaction_amount_90d`).
    """
    windows = {int(m.group(1)): c for c in frame.columns
               if (m := re.fullmatch(r"transaction_amount_(\d+)d", c))}
    if not windows:
        return None
    days = min(windows, key=lambda w: (abs(w - horizon_days), w))
    values = frame[windows[days]].to_numpy(dtype=float) * horizon_days / days
    return np.clip(np.nan_to_num(values, nan=0.0), 0, None)

"""Baselines trained and evaluated on the same split as the models, so the gain is measured.

- logistic regression on the same features (`models/linear.py`: imputed, scaled, one-hot
  categoricals, calibrated like the booster; it is also a servable candidate);
- a recency-only rule: the longer since the last transaction, the higher the risk;
- for value, last period's value carried forward;
- buy-till-you-die (purchase data): churn = 1 - P(at least one purchase in the horizon) and
  value = expected purchases x expected spend, from the BG/NBD and Gamma-Gamma models fitted
  at each cutoff on the history before it (`features/btyd.py`, `models/btyd/`).
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


BTYD_ACTIVE = "btyd_probability_active_horizon"
BTYD_VALUE = "btyd_expected_value_horizon"


def btyd_churn_scores(frame: pd.DataFrame) -> np.ndarray | None:
    """1 - P(a purchase in the horizon) of the BG/NBD model; None without the BTYD features.

    A customer without a purchase before the cutoff (no BTYD history) counts as certain to churn.
    """
    if BTYD_ACTIVE not in frame.columns or not frame[BTYD_ACTIVE].notna().any():
        return None
    active = frame[BTYD_ACTIVE].to_numpy(dtype=float)
    return np.clip(1.0 - np.nan_to_num(active, nan=0.0), 0.0, 1.0)


def btyd_value(frame: pd.DataFrame) -> np.ndarray | None:
    """BG/NBD expected purchases x Gamma-Gamma expected spend in the horizon (0 without history)."""
    if BTYD_VALUE not in frame.columns or not frame[BTYD_VALUE].notna().any():
        return None
    return np.clip(np.nan_to_num(frame[BTYD_VALUE].to_numpy(dtype=float), nan=0.0), 0.0, None)

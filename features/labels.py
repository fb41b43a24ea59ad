"""Who is a customer at a cutoff, and what happens to them in the label window after it.

Population at a cutoff: signed up before it and not closed by it (closed_date after the
cutoff or empty); for the `inactivity` definition also at least one transaction in the
`inactivity_lookback_days` before it. Label window: (cutoff, cutoff + horizon].
- churned, `closure`: the account closes in the window.
- churned, `inactivity`: no transaction in the window, or the account closes in it.
- future_value: sum of the value column (default `amount`) of the transactions in the
  window, 0 if none; missing (NaN) when there is no transactions table at all.
"""

from __future__ import annotations

import numpy as np

from features._grouping import US_PER_DAY, Prepared, add_counts, add_sums
from features.settings import LabelSettings


def _require_transactions(prepared: Prepared, labels: LabelSettings) -> None:
    if prepared.transactions is None:
        raise ValueError("labels.definition 'inactivity' needs a transactions table; "
                         "use 'closure' for data without transactions")


def active_between(prepared: Prepared, start: int, end: int, *, include_start: bool) -> np.ndarray:
    """Mask of customers with a transaction in [start, end) or (start, end]."""
    events = prepared.transactions
    assert events is not None
    seen = np.zeros(prepared.n_customers, dtype=np.int64)
    for code, time, _ in events.chunks_between(start, end + 1):
        inside = (time >= start) & (time < end) if include_start else (time > start) & (time <= end)
        add_counts(seen, code[inside])
    return seen > 0


def population_mask(prepared: Prepared, cutoff: int, labels: LabelSettings) -> np.ndarray:
    """Boolean mask over `prepared` customers: who is in the population at the cutoff."""
    mask = (prepared.signup < cutoff) & (prepared.closed > cutoff)
    if labels.definition == "inactivity":
        _require_transactions(prepared, labels)
        lookback = cutoff - labels.inactivity_lookback_days * US_PER_DAY
        mask &= active_between(prepared, lookback, cutoff, include_start=True)
    return mask


def label_arrays(prepared: Prepared, cutoff: int, labels: LabelSettings) -> tuple[np.ndarray, np.ndarray]:
    """churned (0/1 int64) and future_value (float) of every customer for the window after `cutoff`."""
    end = cutoff + labels.horizon_days * US_PER_DAY
    closes = (prepared.closed > cutoff) & (prepared.closed <= end)
    events = prepared.transactions
    if events is None:
        if labels.definition == "inactivity":
            _require_transactions(prepared, labels)
        return closes.astype(np.int64), np.full(prepared.n_customers, np.nan)
    seen = np.zeros(prepared.n_customers, dtype=np.int64)
    value = np.zeros(prepared.n_customers, dtype=np.float64)
    for code, time, (amount,) in events.chunks_between(cutoff, end + 1, ("label_value",)):
        inside = (time > cutoff) & (time <= end)
        add_counts(seen, code[inside])
        add_sums(value, code[inside], amount[inside])
    churned = closes if labels.definition == "closure" else closes | (seen == 0)
    return churned.astype(np.int64), value

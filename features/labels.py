"""Who is a customer at a cutoff, and what happens to them in the label window after it.

One half-open convention holds for every window, features and labels alike: a window is
[start, end), so an event stamped exactly at a cutoff (for date-only data: any event on
the cutoff day) belongs to what comes *after* the cutoff. It is in the label window of
that cutoff and in the features of the next one, and counted exactly once.

Population at a cutoff: signed up before it and not closed before it (closed_date on or
after the cutoff, or empty); for the `inactivity` definition also at least one
transaction in [cutoff - `inactivity_lookback_days`, cutoff). Label window:
[cutoff, cutoff + horizon).
- churned, `closure`: the account closes in the window.
- churned, `inactivity`: no transaction in the window, or the account closes in it.
- future_value: sum of the value column (default `amount`) of the transactions in the
  window, 0 if none. Without a transactions table: the customers column
  `labels.customer_value_column` (value per month) times the horizon in months, the value
  the customer brings if they stay; missing (NaN) when that is not set either.
"""

from __future__ import annotations

import numpy as np

from features._grouping import US_PER_DAY, Prepared, add_counts, add_units, decimal_units, from_units
from features.settings import LabelSettings
from features.static import DAYS_PER_MONTH


def _require_transactions(prepared: Prepared, labels: LabelSettings) -> None:
    if prepared.transactions is None:
        raise ValueError("labels.definition 'inactivity' needs a transactions table; "
                         "use 'closure' for data without transactions")


def active_between(prepared: Prepared, start: int, end: int) -> np.ndarray:
    """Mask of customers with a transaction in [start, end)."""
    events = prepared.transactions
    assert events is not None
    seen = np.zeros(prepared.n_customers, dtype=np.int64)
    for code, time, _ in events.chunks_between(start, end):
        inside = (time >= start) & (time < end)
        add_counts(seen, code[inside])
    return seen > 0


EXCLUSION_REASONS: dict[str, tuple[str, str]] = {
    "not_yet_signed_up": ("signup_date on or after the cutoff", "customers.signup_date"),
    "closed_before_cutoff": ("closed_date before the cutoff", "customers.closed_date"),
    "no_transaction_in_lookback": ("no transaction in the inactivity look-back window before the cutoff",
                                   "labels.inactivity_lookback_days"),
}
"""Why a customer of the customers table is not in the population at a cutoff: reason ->
(what it means, the column or config key that controls it). Order = precedence."""

RULE_EXCLUSIONS: tuple[str, ...] = ("no_transaction_in_lookback",)
"""Reasons that come from a configurable rule (rather than the customer not existing at the
cutoff): the customers they leave out are written to the `excluded` tables."""


def population_reasons(prepared: Prepared, cutoff: int, labels: LabelSettings) -> np.ndarray:
    """Per customer: -1 in the population at the cutoff, else the index of its first reason in
    `EXCLUSION_REASONS` (not yet signed up, closed before the cutoff, inactive in the look-back)."""
    active = None
    if labels.definition == "inactivity":
        _require_transactions(prepared, labels)
        active = active_between(prepared, cutoff - labels.inactivity_lookback_days * US_PER_DAY, cutoff)
    return reasons_from(prepared.signup, prepared.closed, cutoff, active)


def reasons_from(signup: np.ndarray, closed: np.ndarray, cutoff: int, active: np.ndarray | None) -> np.ndarray:
    """`population_reasons` from each customer's signup and closure (microseconds, NEVER when empty) and,
    under the `inactivity` rule, whether they transacted in the look-back (`active`; None: no such rule)."""
    reason = np.full(len(signup), -1, dtype=np.int8)
    if active is not None:
        reason[~active] = 2
    reason[closed < cutoff] = 1
    reason[~(signup < cutoff)] = 0
    return reason


def population_mask(prepared: Prepared, cutoff: int, labels: LabelSettings) -> np.ndarray:
    """Boolean mask over `prepared` customers: who is in the population at the cutoff."""
    return population_reasons(prepared, cutoff, labels) < 0


def label_arrays(prepared: Prepared, cutoff: int, labels: LabelSettings) -> tuple[np.ndarray, np.ndarray]:
    """churned (0/1 int64) and future_value (float) of every customer for the window after `cutoff`."""
    end = cutoff + labels.horizon_days * US_PER_DAY
    closes = (prepared.closed >= cutoff) & (prepared.closed < end)
    events = prepared.transactions
    if events is None:
        if labels.definition == "inactivity":
            _require_transactions(prepared, labels)
        if prepared.customer_value is not None:  # snapshot: the known value per month, over the horizon
            return closes.astype(np.int64), prepared.customer_value * (labels.horizon_days / DAYS_PER_MONTH)
        return closes.astype(np.int64), np.full(prepared.n_customers, np.nan)
    seen = np.zeros(prepared.n_customers, dtype=np.int64)
    value = np.zeros(prepared.n_customers, dtype=np.float64)
    for code, time, (amount,) in events.chunks_between(cutoff, end, ("label_value",)):
        inside = (time >= cutoff) & (time < end)
        add_counts(seen, code[inside])
        add_units(value, code[inside], decimal_units(amount[inside]))  # exact millionths (features/_grouping.py)
    churned = closes if labels.definition == "closure" else closes | (seen == 0)
    return churned.astype(np.int64), from_units(value)


def days_to_closure(prepared: Prepared, cutoff: int, labels: LabelSettings) -> np.ndarray:
    """Days from the cutoff to the account's closure when it closes in [cutoff, cutoff + horizon)
    (0 = the first day), NaN otherwise: the time to churn of the `closure` definition, from which
    the label of any shorter horizon follows (churned within h days = days_to_churn < h)."""
    end = cutoff + labels.horizon_days * US_PER_DAY
    closes = (prepared.closed >= cutoff) & (prepared.closed < end)
    elapsed = np.where(closes, prepared.closed - cutoff, 0) // US_PER_DAY
    return np.where(closes, elapsed, np.nan).astype(np.float64)

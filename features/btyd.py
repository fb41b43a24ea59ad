"""Buy-till-you-die features: each customer's purchase history in the BTYD sense, and what a
BG/NBD and a Gamma-Gamma model fitted at the cutoff say about their next horizon.

A purchase period is a day before the cutoff (`window_day`: day 0 is [cutoff - 1 day, cutoff)),
so several transactions on one day (the lines of one basket) are one purchase. Per customer,
from every transaction in the history window [cutoff - `features.btyd_history_days`, cutoff)
(every transaction before the cutoff when that is empty):

- frequency: purchase days after the first one (repeat purchases);
- recency: days from the first to the last purchase day;
- age (T): days from the start of the first purchase day in the window to the cutoff;
- mean spend: value (`labels.value_column`) per purchase day.

The models are fitted at each cutoff on every customer with a purchase before it (the
customers of the population and those a rule leaves out alike: they are the history the
model learns dying from), so they see nothing after the cutoff. Pass a `BtydFit` of the
whole population to build one partition of the customers at a time, as with the RFM
breakpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features._grouping import BLOCK_DAYS, US_PER_DAY, Events, add_units, decimal_units, from_units, window_day
from models.btyd import (BgNbdParams, GammaGammaParams, expected_purchases, expected_spend, fit_bgnbd,
                         fit_gamma_gamma, probability_active, probability_alive)

EARLIEST = -(2**62)
"""A start before any event (the whole history)."""


@dataclass(frozen=True)
class PurchaseHistory:
    """Per-customer BTYD summary at one cutoff (NaN for customers without a purchase)."""

    frequency: np.ndarray
    recency: np.ndarray
    age: np.ndarray
    mean_spend: np.ndarray

    @property
    def bought(self) -> np.ndarray:
        return np.isfinite(self.age)


@dataclass(frozen=True)
class BtydFit:
    """The models fitted at one cutoff (None where the data had too little to fit)."""

    bgnbd: BgNbdParams | None
    gamma_gamma: GammaGammaParams | None


GROUP_DAYS = 8
"""Days per group of `purchase_history`: a customer's purchase days in one group are 8 bytes, one 64-bit word."""


def history_start(cutoff: int, history_days: int | None) -> int:
    """The first moment of the BTYD history window of `cutoff` (`features.btyd_history_days`; None: all)."""
    return EARLIEST if history_days is None else cutoff - history_days * US_PER_DAY


def purchase_history(events: Events, n_customers: int, cutoff: int, history_days: int | None = None
                     ) -> PurchaseHistory:
    """Frequency, recency, age and mean spend per purchase day of every customer at `cutoff`, from the
    purchases in [cutoff - `history_days` days, cutoff) (None: every purchase before the cutoff).

    Distinct purchase days are counted without sorting: the days back from the cutoff fall into
    8-day groups, and each open group holds 8 flag bytes per customer (day d of the group sets
    byte d to 1, however many times it is bought on), so a customer's purchase days in a group
    are the set bits of one 64-bit word. The rows come in time-block order and are taken a
    block at a time, so a group is closed (counted and freed) as soon as the blocks still to
    come cannot reach it: at most three groups are open (24 bytes a customer), however long
    or sparse the history.
    """
    if events.block_rows is None:
        events = events.in_time_blocks(materialise=False)
    days = np.zeros(n_customers, dtype=np.int64)
    spend = np.zeros(n_customers, dtype=np.float64)
    # int32 days back (np.minimum.at and np.maximum.at are ~3x faster on them than on int64)
    first = np.full(n_customers, -1, dtype=np.int32)  # oldest purchase day (days back); -1 none
    last = np.full(n_customers, np.iinfo(np.int32).max, dtype=np.int32)  # newest purchase day
    groups: dict[int, np.ndarray] = {}  # open group -> 8 flag bytes per customer, one per day of the group
    width = BLOCK_DAYS * US_PER_DAY

    def close(still_reachable: int) -> None:
        for group in [g for g in groups if g > still_reachable]:
            days[:] += np.bitwise_count(groups.pop(group).view(np.uint64))

    start = history_start(cutoff, history_days)
    for code, time, (value,) in events.chunks_between(start, cutoff, ("label_value",)):
        before = (time < cutoff) & (time >= start)
        code, time, value = code[before], time[before], value[before]
        if not len(code):
            continue
        back = window_day(cutoff, time)
        group, flag = back // GROUP_DAYS, code.astype(np.int64) * GROUP_DAYS + back % GROUP_DAYS
        block = (time - events.block_origin) // width  # ascending: the rows are in time-block order
        edges = np.concatenate([[0], np.flatnonzero(block[1:] != block[:-1]) + 1, [len(block)]])
        for start, stop in zip(edges[:-1], edges[1:]):
            in_block = group[start:stop]  # one 7-day block: one or two groups
            for g in range(int(in_block.min()), int(in_block.max()) + 1):
                rows = np.flatnonzero(in_block == g) + start
                if len(rows):
                    flags = groups.get(g)
                    if flags is None:
                        flags = groups[g] = np.zeros(n_customers * GROUP_DAYS, dtype=np.uint8)
                    flags[flag[rows]] = 1
            # the rows still to come start at the next block in this chunk, or may go on with this block in the
            # next chunk: days further back than that block's start cannot recur
            coming = int(block[stop]) if stop < len(block) else int(block[start])
            close(int(window_day(cutoff, events.block_origin + coming * width)) // GROUP_DAYS)
        add_units(spend, code, decimal_units(value))  # exact millionths, as the relational engine's decimal sum
        days_back = back.astype(np.int32)
        np.maximum.at(first, code, days_back)
        np.minimum.at(last, code, days_back)
    close(-1)
    bought = first >= 0
    frequency = np.where(bought, days - 1, np.nan)
    recency = np.where(bought, first - np.where(bought, last, 0), np.nan).astype(np.float64)
    age = np.where(bought, first + 1, np.nan).astype(np.float64)
    mean_spend = np.where(bought, from_units(spend) / np.maximum(days, 1), np.nan)
    return PurchaseHistory(frequency.astype(np.float64), recency, age, mean_spend)


def fit_btyd(history: PurchaseHistory) -> BtydFit:
    """BG/NBD and Gamma-Gamma fitted on every customer with a purchase (None if too few to fit)."""
    bought = history.bought
    try:
        bgnbd = fit_bgnbd(history.frequency[bought], history.recency[bought], history.age[bought])
    except ValueError:
        bgnbd = None
    try:
        gamma_gamma = fit_gamma_gamma(history.frequency[bought], history.mean_spend[bought])
    except ValueError:
        gamma_gamma = None
    return BtydFit(bgnbd, gamma_gamma)


def btyd_features(history: PurchaseHistory, fit: BtydFit, horizon_days: int) -> dict[str, np.ndarray]:
    """The BTYD feature columns (catalogue family `btyd`) of every customer; NaN without a purchase."""
    n = len(history.age)
    x, t_x, age = history.frequency, history.recency, history.age
    bought = history.bought
    out = {"btyd_frequency": x, "btyd_recency_days": t_x, "btyd_age_days": age}
    alive = np.full(n, np.nan)
    active = np.full(n, np.nan)
    purchases = np.full(n, np.nan)
    if fit.bgnbd is not None and bought.any():
        alive[bought] = probability_alive(fit.bgnbd, x[bought], t_x[bought], age[bought])
        active[bought] = probability_active(fit.bgnbd, x[bought], t_x[bought], age[bought], horizon_days)
        purchases[bought] = expected_purchases(fit.bgnbd, x[bought], t_x[bought], age[bought], horizon_days)
    spend = np.full(n, np.nan)
    if fit.gamma_gamma is not None and bought.any():
        spend[bought] = expected_spend(fit.gamma_gamma, x[bought], history.mean_spend[bought])
    out.update({"btyd_probability_alive": alive, "btyd_probability_active_horizon": active,
                "btyd_expected_purchases_horizon": purchases, "btyd_expected_spend": spend,
                "btyd_expected_value_horizon": purchases * spend})
    return out

"""Transaction features: recency, frequency, monetary value, trends and RFM scores.

One pass per cutoff (`summarise_transactions`) puts every transaction of the longest
window into an age bin (days back from the cutoff, bins cut at every window edge and
every 30-day month) per customer, counting and summing on a combined (bin, customer) key
(`add_counts`, `add_units`). Every window count or sum, trend and monthly profile is
then read from the cumulative bins; the lifecycle family reads the same summary.

Money is summed in whole millionths (`decimal_units`), exactly, as the relational engine sums
DECIMAL(38, 6): every money feature equals that engine's bit for bit, whatever the row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features._grouping import US_PER_DAY, Events, add_counts, add_units, decimal_units, from_units, ratio, window_day
from features.catalogue import (ACTIVE_DAYS_WINDOW, ACTIVITY_MONTHS, MONTH_DAYS, OUTFLOW_WINDOW, RFM_SEGMENTS,
                                TREND_DAYS)
from features.settings import FeatureSettings

QUINTILES = (0.2, 0.4, 0.6, 0.8)


def bin_edges(settings: FeatureSettings) -> np.ndarray:
    """Upper edges (days back from the cutoff) of the age bins every transaction feature needs."""
    edges = set(settings.windows_days) | {ACTIVE_DAYS_WINDOW, OUTFLOW_WINDOW}
    edges |= {MONTH_DAYS * k for k in range(1, ACTIVITY_MONTHS + 1)}
    edges |= {d for t in TREND_DAYS for d in (t, 2 * t)}
    return np.array(sorted(edges), dtype=np.int64)


@dataclass(frozen=True)
class TransactionSummary:
    """Per-customer transaction totals by age bin at one cutoff.

    Column b of `counts` and `amounts` is cumulative: the transactions in the window
    [cutoff - edges[b] days, cutoff), added bin by bin from the newest (bins cut at every edge).
    `outflows_90d` is the sum of the negative amounts (<= 0) of the last 90 days,
    `largest_outflow_90d` the largest single outflow of those days (as a positive amount, 0 if
    none) and `days_since_largest_outflow_90d` its age in whole days (the most recent of equal
    ones; NaN if none); `absolute_amounts` sums the absolute amounts over the longest window.
    Money fields are exact totals in millionths (`decimal_units`); `amount_within` gives the currency.
    """

    edges: np.ndarray
    counts: np.ndarray
    amounts: np.ndarray
    outflows_90d: np.ndarray
    largest_outflow_90d: np.ndarray
    days_since_largest_outflow_90d: np.ndarray
    absolute_amounts: np.ndarray
    days_since_last: np.ndarray
    active_days_365d: np.ndarray

    def _column(self, days: int) -> int:
        position = int(np.searchsorted(self.edges, days))
        if position >= len(self.edges) or self.edges[position] != days:
            raise ValueError(f"{days} days is not a bin edge")
        return position

    def count_within(self, days: int) -> np.ndarray:
        """Transactions in the `days` days before the cutoff."""
        return self.counts[:, self._column(days)]

    def amount_within(self, days: int) -> np.ndarray:
        """Net amount of the transactions in the `days` days before the cutoff."""
        return from_units(self.units_within(days))

    def units_within(self, days: int) -> np.ndarray:
        """`amount_within` in exact millionths, for exact arithmetic before the one rounding."""
        return self.amounts[:, self._column(days)]

    def count_between(self, newer_days: int, older_days: int) -> np.ndarray:
        """Transactions from `older_days` up to `newer_days` days before the cutoff."""
        return self.counts[:, self._column(older_days)] - self.counts[:, self._column(newer_days)]

    def monthly_counts(self, months: int = ACTIVITY_MONTHS) -> np.ndarray:
        """(customers, months) transaction counts (int32: no month holds 2**31 of one customer's transactions);
        column 0 is the latest 30-day month."""
        out = np.empty((len(self.counts), months), dtype=np.int32)
        for k in range(months):
            out[:, k] = self.count_between(MONTH_DAYS * k, MONTH_DAYS * (k + 1)) if k else self.count_within(MONTH_DAYS)
        return out


SUMMARY_CHUNK_ROWS = 1 << 20
"""Rows binned at a time by `summarise_transactions`: its dozen row-sized temporaries per chunk were 0.5 GB at
the peak of scoring 1M customers with 4M-row chunks (`CHUNK_ROWS`). Every sum is of whole millionths, exact in any
order (`add_units`), so the features are the same whatever the chunk size."""
ACTIVE_WEEKS = -(-ACTIVE_DAYS_WINDOW // 7)
"""Bytes per customer of the active-day bits (`summarise_transactions`): day d of the window is bit d % 7 of the
customer's byte in week d // 7 (53 MB at 1M customers, where a byte per day took 365 MB). Week-major, a week's
bytes side by side: a chunk's rows (a few weeks) then write within a few MB, 2.5x faster than customer-major."""
DAY_BITS = (1 << np.arange(7)).astype(np.uint8)


def summarise_transactions(events: Events, n_customers: int, cutoff: int,
                           settings: FeatureSettings) -> TransactionSummary:
    """Bin every transaction strictly before `cutoff` by customer and age.

    Only the rows in the time blocks of the longest window are binned; older rows are read
    once more for nothing but each customer's latest time (recency beyond the window).
    """
    edges = bin_edges(settings)
    longest = int(edges[-1])
    n_bins = len(edges) + 1
    lookup = np.searchsorted(edges, np.arange(longest + 1), side="right").astype(np.int64)
    # bin-major, (bins, customers): a chunk's rows (a few weeks of time blocks) fall in one or two age bins, so
    # their keys span a narrow range and are counted and summed with a local bincount (`add_counts`, `add_units`)
    counts = np.zeros(n_bins * n_customers, dtype=np.int64)
    amounts = np.zeros(n_bins * n_customers, dtype=np.float64)
    outflows = np.zeros(n_customers, dtype=np.float64)
    largest_outflow = np.zeros(n_customers, dtype=np.float64)
    outflows_longest = np.zeros(n_customers, dtype=np.float64)
    never = np.iinfo(np.int64).max
    largest_outflow_days = np.full(n_customers, never, dtype=np.int64)
    # int32 days (the window's rows are at most a few hundred days back): np.minimum.at is ~3x faster on them
    last_in_window = np.full(n_customers, np.iinfo(np.int32).max, dtype=np.int32)
    # one bit per day of the activity window, a byte per customer and week: a seventh of a byte per day
    active = np.zeros(n_customers * ACTIVE_WEEKS, dtype=np.uint8)
    window_start = cutoff - longest * US_PER_DAY
    older_time = events.latest_before_block_of(window_start, n_customers)
    for code, time, (amount,) in events.chunks_between(window_start, cutoff, ("amount",), SUMMARY_CHUNK_ROWS):
        before = time < cutoff
        if not before.all():  # only the chunks at the cutoff's own block hold later rows
            code, time, amount = code[before], time[before], amount[before]
        code = code.astype(np.int64)
        days = (cutoff - time) // US_PER_DAY  # whole days since the event ("days since" features)
        back = window_day(cutoff, time)  # which of the days before the cutoff it falls on (windows)
        key = lookup[np.minimum(back, longest)] * n_customers + code  # last bin: older rows of the first block, unused
        add_counts(counts, key)
        amount = decimal_units(amount)  # from here on in exact millionths, outflows and the largest one too
        add_units(amounts, key, amount)
        negative = amount < 0
        outflow = negative & (back < OUTFLOW_WINDOW)
        add_units(outflows, code[outflow], amount[outflow])
        # Only the (few) negative rows: absolute sums follow from net sums, |a| = a - 2 min(a, 0).
        negative &= back < longest
        add_units(outflows_longest, code[negative], amount[negative])
        if outflow.any():
            _keep_largest(largest_outflow, largest_outflow_days, code[outflow], -amount[outflow], days[outflow])
        np.minimum.at(last_in_window, code, days.astype(np.int32))
        recent = back < ACTIVE_DAYS_WINDOW
        if not recent.all():
            code, back = code[recent], back[recent]
        _mark_days(active, back // 7 * n_customers + code, back % 7)

    last = np.where(last_in_window == np.iinfo(np.int32).max, never, last_in_window.astype(np.int64))
    seen_before = older_time > np.iinfo(np.int64).min
    older_days = np.where(seen_before, (cutoff - np.where(seen_before, older_time, 0)) // US_PER_DAY, never)
    last = np.minimum(last, older_days)
    days_since_last = np.where(last == never, np.nan, last).astype(np.float64)
    active_days = np.bitwise_count(active).reshape(ACTIVE_WEEKS, n_customers).sum(axis=0, dtype=np.int64)
    # cumulative over the bins, newest first (the last bin, older rows of the first block, is dropped); the
    # summary's (customers, bins) arrays are views of them, each window's column one contiguous row
    cumulative_counts = counts.reshape(n_bins, n_customers)[:-1]
    cumulative_amounts = amounts.reshape(n_bins, n_customers)[:-1]
    np.cumsum(cumulative_counts, axis=0, out=cumulative_counts)
    np.cumsum(cumulative_amounts, axis=0, out=cumulative_amounts)
    largest_days = np.where(largest_outflow_days == never, np.nan, largest_outflow_days).astype(np.float64)
    absolute = cumulative_amounts[-1] - 2.0 * outflows_longest  # the last row is the longest window
    return TransactionSummary(edges, cumulative_counts.T, cumulative_amounts.T, outflows, largest_outflow, largest_days,
                              absolute, days_since_last, active_days)


def _mark_days(active: np.ndarray, week: np.ndarray, day: np.ndarray) -> None:
    """Set bit `day` of byte `week` of `active` for every row. One weekday at a time: rows of the same byte then
    write the same value (its old bits with this day's), so repeated bytes need no `np.bitwise_or.at`, which
    took twice as long as this."""
    for weekday in range(7):
        rows = week[day == weekday]
        active[rows] |= DAY_BITS[weekday]


def _keep_largest(largest: np.ndarray, largest_days: np.ndarray, code: np.ndarray, size: np.ndarray,
                  days: np.ndarray) -> None:
    """Update each customer's largest outflow (and its age) with one chunk's outflows.

    Within the chunk the largest wins, the most recent among equals; across chunks the same
    rule, so the result does not depend on how the rows are chunked.
    """
    order = np.lexsort((days, -size, code))
    code, size, days = code[order], size[order], days[order]
    first = np.ones(len(code), dtype=bool)
    first[1:] = code[1:] != code[:-1]
    code, size, days = code[first], size[first], days[first]
    better = (size > largest[code]) | ((size == largest[code]) & (days < largest_days[code]))
    largest[code[better]] = size[better]
    largest_days[code[better]] = days[better]


def trend_ratio(latest: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """(latest + 1) / (previous + 1); NaN where both periods are empty (no trend to speak of)."""
    out = (latest + 1.0) / (previous + 1.0)
    return np.where((latest == 0) & (previous == 0), np.nan, out)


def transaction_features(summary: TransactionSummary, settings: FeatureSettings) -> dict[str, np.ndarray]:
    """Recency, per-window counts and amounts, active days, trends and outflow share."""
    out: dict[str, np.ndarray] = {"days_since_last_transaction": summary.days_since_last}
    for window in settings.windows_days:
        count = summary.count_within(window)
        amount = summary.amount_within(window)
        out[f"transaction_count_{window}d"] = count
        out[f"transaction_amount_{window}d"] = amount
        out[f"average_transaction_amount_{window}d"] = ratio(amount, count)
    out["active_days_365d"] = summary.active_days_365d
    for days in TREND_DAYS:
        out[f"transaction_trend_{days}d"] = trend_ratio(summary.count_within(days),
                                                        summary.count_between(days, 2 * days))
    outflow = summary.outflows_90d  # exact millionths: the differences below are exact, rounded once
    absolute = summary.units_within(OUTFLOW_WINDOW) - 2.0 * outflow
    out[f"outflow_share_{OUTFLOW_WINDOW}d"] = ratio(from_units(np.abs(outflow)), from_units(absolute))
    typical = ratio(from_units(summary.absolute_amounts), summary.count_within(settings.longest_window))
    largest = from_units(summary.largest_outflow_90d)
    out[f"largest_outflow_{OUTFLOW_WINDOW}d"] = largest
    out[f"largest_outflow_{OUTFLOW_WINDOW}d_vs_typical"] = ratio(largest, typical)
    out[f"days_since_largest_outflow_{OUTFLOW_WINDOW}d"] = summary.days_since_largest_outflow_90d
    return out


# ---------------------------------------------------------------- RFM scores

@dataclass(frozen=True)
class RfmBreakpoints:
    """Quintile edges (20/40/60/80%) of recency, frequency and monetary in a population.

    Computed within the customers at the cutoff. Pass the whole population's breakpoints
    when building one partition at a time so every part scores on the same scale.
    """

    recency: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]


def _quintile_edges(values: np.ndarray) -> tuple[float, ...]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return ()
    return tuple(float(v) for v in np.quantile(finite, QUINTILES, method="inverted_cdf"))


def rfm_breakpoints(features: dict[str, np.ndarray], population: np.ndarray,
                    settings: FeatureSettings) -> RfmBreakpoints:
    """The quintile edges of the customers in `population` (a boolean mask)."""
    longest = settings.longest_window
    return RfmBreakpoints(
        recency=_quintile_edges(features["days_since_last_transaction"][population]),
        frequency=_quintile_edges(features[f"transaction_count_{longest}d"][population].astype(np.float64)),
        monetary=_quintile_edges(features[f"transaction_amount_{longest}d"][population]),
    )


def _score(values: np.ndarray, edges: tuple[float, ...], higher_is_better: bool) -> np.ndarray:
    """1-5: how many edges lie below the value (+1), reversed when lower is better; NaN -> 1."""
    if not edges:
        return np.ones(len(values), dtype=np.int64)
    below = np.searchsorted(np.asarray(edges), values, side="left")
    score = 1 + below if higher_is_better else 5 - below
    return np.where(np.isnan(values), 1, score).astype(np.int64)


def rfm_segment(recency: np.ndarray, frequency: np.ndarray, monetary: np.ndarray) -> pd.Categorical:
    """The named segment of each (R, F, M) score triple; rules in catalogue.RFM_SEGMENT_RULES."""
    conditions = [
        (recency >= 4) & (frequency >= 4) & (monetary >= 4),
        (recency >= 3) & (frequency >= 4),
        (recency <= 2) & (frequency >= 4) & (monetary >= 4),
        (recency <= 2) & (frequency >= 3),
        (recency >= 4) & (frequency <= 2),
        (recency >= 3) & (frequency == 3),
        (recency <= 2) & (frequency <= 2),
    ]
    names = ["champions", "loyal", "cannot_lose_them", "at_risk", "promising", "potential_loyalist",
             "hibernating"]
    codes = np.select(conditions, [RFM_SEGMENTS.index(name) for name in names],
                      default=RFM_SEGMENTS.index("needs_attention"))
    return pd.Categorical.from_codes(codes, categories=list(RFM_SEGMENTS))


def rfm_scores(features: dict[str, np.ndarray], breakpoints: RfmBreakpoints,
               settings: FeatureSettings) -> dict[str, np.ndarray | pd.Categorical]:
    """RFM quintile scores (1-5) and segment of every customer on the given breakpoints."""
    longest = settings.longest_window
    recency = _score(features["days_since_last_transaction"], breakpoints.recency, higher_is_better=False)
    frequency = _score(features[f"transaction_count_{longest}d"].astype(np.float64), breakpoints.frequency,
                       higher_is_better=True)
    monetary = _score(features[f"transaction_amount_{longest}d"], breakpoints.monetary, higher_is_better=True)
    return {"rfm_recency_score": recency, "rfm_frequency_score": frequency,
            "rfm_monetary_score": monetary, "rfm_segment": rfm_segment(recency, frequency, monetary)}


__all__ = ["RfmBreakpoints", "TransactionSummary", "bin_edges", "rfm_breakpoints", "rfm_scores",
           "rfm_segment", "summarise_transactions", "transaction_features", "trend_ratio"]

"""Complaint features: volumes, categories, service levels and satisfaction, as known at the cutoff.

A complaint counts from its `opened_at`. Its later milestones are only known once they
have happened: a first reply at or after the cutoff has not happened yet, a complaint
resolved at or after the cutoff (or never) is still open, and its resolution time and
satisfaction score are unknown. Service-level targets come from `complaint_targets`
(hours per priority tier); a complaint of a tier without a target is never late.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features._grouping import (NEVER, window_day, US_PER_DAY, US_PER_HOUR, Events, category_codes, datetimes_us,
                                distinct_sorted, floats, max_by, min_by, decimal_units, from_units, ratio, sum_by)
from features.catalogue import REPEAT_WINDOW
from features.complaint_text import SENTIMENT_WINDOW, TONE_DECIMALS, sentiment_scores
from features.contract import PRIORITY_TIERS
from features.settings import FeatureSettings

OPTIONAL_COLUMNS = ("priority", "channel", "first_response_at", "resolved_at", "satisfaction")


def complaint_inputs(settings: FeatureSettings) -> tuple[str, ...]:
    """The complaints columns `complaint_columns` reads (a stage reads no others: not the ids or the text
    unless features.complaint_sentiment needs it)."""
    return ("customer_id", "opened_at", "category", *OPTIONAL_COLUMNS,
            *(("text",) if settings.complaint_sentiment else ()))


def complaint_columns(frame: pd.DataFrame, known: np.ndarray, settings: FeatureSettings) -> dict[str, np.ndarray]:
    """The arrays the complaint features need, for the rows of known customers."""
    def keep(array: np.ndarray) -> np.ndarray:
        return array if known.all() else array[known]

    columns: dict[str, np.ndarray] = {
        "category": keep(category_codes(frame["category"], settings.own_column_categories, other=True)),
        "category_any": keep(pd.factorize(frame["category"].astype("str"), use_na_sentinel=False)[0]
                             .astype(np.int64)),
    }
    if "priority" in frame.columns:
        columns["priority"] = keep(category_codes(frame["priority"], PRIORITY_TIERS, other=False))
    if "channel" in frame.columns:
        columns["channel"] = keep(category_codes(frame["channel"], settings.complaint_channels, other=True))
    for name in ("first_response_at", "resolved_at"):
        if name in frame.columns:
            columns[name] = keep(datetimes_us(frame[name], missing=NEVER))
    if "satisfaction" in frame.columns:
        columns["satisfaction"] = keep(floats(frame["satisfaction"]))
    if settings.complaint_sentiment and "text" in frame.columns:
        columns["sentiment"] = keep(sentiment_scores(frame["text"]))  # the score only: the text stays here
    return columns


def _targets(settings: FeatureSettings, field: str) -> np.ndarray:
    """Target in microseconds per priority code; the extra last slot (code -1: unknown) has none."""
    out = np.full(len(PRIORITY_TIERS) + 1, NEVER, dtype=np.int64)
    for position, tier in enumerate(PRIORITY_TIERS):
        target = settings.complaint_targets.get(tier)
        hours = getattr(target, field) if target is not None else None
        if hours is not None:
            out[position] = int(round(hours * US_PER_HOUR))
    return out


def _counts_by_level(code: np.ndarray, level: np.ndarray, n_levels: int, n: int) -> np.ndarray:
    """(customers, levels) row counts."""
    key = code * n_levels + level
    return np.bincount(key, minlength=n * n_levels).reshape(n, n_levels)


def total_hours(code: np.ndarray, durations_us: np.ndarray, n: int) -> np.ndarray:
    """Hours per customer: the durations summed exactly in integer microseconds, then one division (as the
    relational engine's integer sum), so a mean of them is the same bit for bit on every engine."""
    total = np.zeros(n, dtype=np.int64)
    np.add.at(total, code, durations_us.astype(np.int64, copy=False))
    return total.astype(np.float64) / US_PER_HOUR


def complaint_features(events: Events, n: int, cutoff: int, settings: FeatureSettings) -> dict[str, np.ndarray]:
    """Every complaint feature of every customer at the cutoff."""
    before = events.before(cutoff)
    rows = slice(None) if before.all() else before  # every row before the cutoff (scoring): views, not copies
    code = events.code[rows].astype(np.int64)
    opened = events.time[rows]
    cols = {name: values[rows] for name, values in events.columns.items()}
    age = cutoff - opened
    age_days = window_day(cutoff, opened)  # windows are [cutoff - w days, cutoff)
    w_long = settings.longest_window
    in_window = age_days < w_long
    out: dict[str, np.ndarray] = {}

    for window in settings.windows_days:
        out[f"complaint_count_{window}d"] = np.bincount(code[age_days < window], minlength=n)

    categories = (*settings.own_column_categories, "other")
    by_category = _counts_by_level(code[in_window], cols["category"][in_window].astype(np.int64), len(categories), n)
    for position, category in enumerate(categories):
        out[f"complaints_about_{category}_{w_long}d"] = by_category[:, position]

    if "priority" in cols:
        priority = cols["priority"].astype(np.int64)
        tiered = in_window & (priority >= 0)
        by_tier = _counts_by_level(code[tiered], priority[tiered], len(PRIORITY_TIERS), n)
        for position, tier in enumerate(PRIORITY_TIERS):
            out[f"complaints_{tier}_priority_{w_long}d"] = by_tier[:, position]

    if "channel" in cols:
        channels = (*settings.complaint_channels, "other")
        by_channel = _counts_by_level(code[in_window], cols["channel"][in_window].astype(np.int64), len(channels), n)
        for position, channel in enumerate(channels):
            out[f"complaints_via_{channel}_{w_long}d"] = by_channel[:, position]

    if "resolved_at" in cols:
        resolved_at = cols["resolved_at"]
        resolved = resolved_at < cutoff
        still_open = ~resolved
        out["open_complaints"] = np.bincount(code[still_open], minlength=n)
        oldest = max_by(code[still_open], age[still_open], n, -1)
        out["open_complaints_oldest_age_days"] = np.where(oldest >= 0, oldest // US_PER_DAY, np.nan)
        done = resolved & in_window
        n_done = np.bincount(code[done], minlength=n)
        if "first_response_at" in cols:
            responded_at = cols["first_response_at"]
            answered = done & (responded_at < cutoff)
            out[f"mean_first_response_hours_{w_long}d"] = ratio(
                total_hours(code[answered], responded_at[answered] - opened[answered], n),
                np.bincount(code[answered], minlength=n))
        out[f"mean_resolution_hours_{w_long}d"] = ratio(total_hours(code[done], resolved_at[done] - opened[done], n),
                                                        n_done)

    if "priority" in cols:
        priority = cols["priority"].astype(np.int64)
        response_target = _targets(settings, "first_response_hours")[priority]
        resolution_target = _targets(settings, "resolution_hours")[priority]
        if "first_response_at" in cols:
            responded_at = cols["first_response_at"]
            answered = responded_at < cutoff
            late = in_window & answered & (responded_at - opened > response_target)
            out[f"late_first_responses_{w_long}d"] = np.bincount(code[late], minlength=n)
        if "resolved_at" in cols:
            resolved_at = cols["resolved_at"]
            resolved = resolved_at < cutoff
            late = in_window & resolved & (resolved_at - opened > resolution_target)
            out[f"late_resolutions_{w_long}d"] = np.bincount(code[late], minlength=n)
            if "first_response_at" in cols:
                waiting = ~resolved & (cols["first_response_at"] >= cutoff) & (age > response_target)
                out["unanswered_complaints_past_response_target"] = np.bincount(code[waiting], minlength=n)
            overdue = ~resolved & (age > resolution_target)
            out["open_complaints_past_resolution_target"] = np.bincount(code[overdue], minlength=n)

    if "satisfaction" in cols and "resolved_at" in cols:
        score = cols["satisfaction"]
        rated = in_window & (cols["resolved_at"] < cutoff) & ~np.isnan(score)
        n_rated = np.bincount(code[rated], minlength=n)
        out[f"mean_complaint_satisfaction_{w_long}d"] = ratio(sum_by(code[rated], score[rated], n), n_rated)
        out[f"low_satisfaction_share_{w_long}d"] = ratio(np.bincount(code[rated & (score < 3)], minlength=n),
                                                         n_rated)

    recent = age_days < REPEAT_WINDOW
    recent_code = code[recent]
    n_categories = int(events.columns["category_any"].max(initial=0)) + 1
    pairs = distinct_sorted(recent_code * n_categories + cols["category_any"][recent])
    distinct = np.bincount(pairs // n_categories, minlength=n)
    out[f"repeat_complaints_{REPEAT_WINDOW}d"] = np.bincount(recent_code, minlength=n) - distinct

    if "sentiment" in cols:  # the text is written when the complaint is opened: known from opened_at on
        recent = (age_days < SENTIMENT_WINDOW) & ~np.isnan(cols["sentiment"])
        tone = cols["sentiment"][recent]
        scored = np.bincount(code[recent], minlength=n)
        negative = recent.copy()
        negative[recent] = tone < settings.complaint_negative_below
        out[f"negative_complaints_{SENTIMENT_WINDOW}d"] = np.bincount(code[negative], minlength=n)
        # each tone to VADER's 4 decimals, summed exactly (as the relational engine's DECIMAL(9, 4) sum)
        tones = sum_by(code[recent], decimal_units(tone, TONE_DECIMALS), n)
        out[f"mean_complaint_sentiment_{SENTIMENT_WINDOW}d"] = ratio(from_units(tones, TONE_DECIMALS), scored)

    last = min_by(code, age // US_PER_DAY, n, NEVER)
    out["days_since_last_complaint"] = np.where(last == NEVER, np.nan, last).astype(np.float64)
    return out

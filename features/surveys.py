"""Survey features: the latest NPS and CSAT answers, their change, and how long ago.

Each score's answers are sorted once by (customer, answer time), keeping the input order
for ties. At a cutoff the answers before it are then a prefix of each customer's run, so
the latest and the one before are found by counting, without re-sorting per cutoff.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features._grouping import NEVER, US_PER_DAY, Events, datetimes_us, floats, min_by

SCORES = ("nps", "csat")
DETRACTOR_MAX_NPS = 6


def survey_columns(frame: pd.DataFrame, code: np.ndarray, known: np.ndarray) -> dict[str, np.ndarray]:
    """Per score: the answers (customer code, time, value) sorted by (customer, time)."""
    time = datetimes_us(frame["answered_at"])
    columns: dict[str, np.ndarray] = {}
    for score in SCORES:
        if score not in frame.columns:
            continue
        value = floats(frame[score])
        answered = known & ~np.isnan(value)
        order = np.lexsort((time[answered], code[answered]))
        columns[f"{score}_code"] = code[answered][order].astype(np.int64)
        columns[f"{score}_time"] = time[answered][order]
        columns[f"{score}_value"] = value[answered][order]
    return columns


def _latest_two(code: np.ndarray, time: np.ndarray, value: np.ndarray, n: int,
                cutoff: int) -> tuple[np.ndarray, np.ndarray]:
    """The latest answer before the cutoff and the one before it, per customer (NaN if none)."""
    starts = np.searchsorted(code, np.arange(n))
    seen = np.bincount(code[time < cutoff], minlength=n)
    latest = np.full(n, np.nan)
    previous = np.full(n, np.nan)
    has_one = seen >= 1
    latest[has_one] = value[starts[has_one] + seen[has_one] - 1]
    has_two = seen >= 2
    previous[has_two] = value[starts[has_two] + seen[has_two] - 2]
    return latest, previous


def survey_features(events: Events, n: int, cutoff: int) -> dict[str, np.ndarray]:
    """Latest NPS/CSAT, change vs the previous answer, detractor flag, days since last answer."""
    out: dict[str, np.ndarray] = {}
    cols = events.columns
    if "nps_value" in cols:
        latest, previous = _latest_two(cols["nps_code"], cols["nps_time"], cols["nps_value"], n, cutoff)
        out["last_nps"] = latest
        out["nps_change"] = latest - previous
        out["nps_detractor"] = np.where(np.isnan(latest), np.nan, (latest <= DETRACTOR_MAX_NPS).astype(np.float64))
    if "csat_value" in cols:
        latest, previous = _latest_two(cols["csat_code"], cols["csat_time"], cols["csat_value"], n, cutoff)
        out["last_csat"] = latest
        out["csat_change"] = latest - previous
    before = events.before(cutoff)
    days = (cutoff - events.time[before]) // US_PER_DAY
    last = min_by(events.code[before], days, n, NEVER)
    out["days_since_last_survey"] = np.where(last == NEVER, np.nan, last).astype(np.float64)
    return out

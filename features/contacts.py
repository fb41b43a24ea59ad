"""Retention-contact features: when the customer was last contacted, and how often lately.

Only real contacts count: rows with treatment = 1 when the table has a treatment column
(treatment = 0 marks a randomised hold-out that was not contacted; empty is unknown and
not counted).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features._grouping import NEVER, US_PER_DAY, Events, floats, min_by, window_day
from features.catalogue import CONTACT_WINDOW


def contacted_rows(frame: pd.DataFrame) -> np.ndarray:
    """Mask of the rows that are real contacts."""
    if "treatment" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    return floats(frame["treatment"]) == 1


def contact_features(events: Events, n: int, cutoff: int) -> dict[str, np.ndarray]:
    """Days since the latest retention contact and contacts in the last 90 days."""
    before = events.before(cutoff)
    code = events.code[before]
    days = (cutoff - events.time[before]) // US_PER_DAY
    last = min_by(code, days, n, NEVER)
    return {
        "days_since_last_retention_contact": np.where(last == NEVER, np.nan, last).astype(np.float64),
        f"retention_contacts_{CONTACT_WINDOW}d": np.bincount(
            code[window_day(cutoff, events.time[before]) < CONTACT_WINDOW], minlength=n),
    }

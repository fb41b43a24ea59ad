"""Complaint heat maps: counts and target-breach rates on business line x channel and weekday x hour grids.

A breach is a missed first-response or resolution target of the complaint's tier, as
known at `as_of` (`models.rules.breached_targets`, the same reading as the features and
the rules stage). Grids are long tables (row, column, complaints, breached, breach_rate);
the weekday is Monday = 0 and the hour is the hour the complaint was opened.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features._grouping import cutoff_us
from features.settings import TierTarget
from models.rules import breached_targets

WEEKDAYS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
GRIDS: dict[str, tuple[str, str]] = {"line_by_channel": ("business_line", "channel"),
                                     "weekday_by_hour": ("weekday", "hour")}


def heat_grids(complaints: pd.DataFrame, as_of: pd.Timestamp,
               targets: dict[str, TierTarget]) -> dict[str, pd.DataFrame]:
    """Each grid whose columns exist: complaints, breaches and breach rate per cell (all cells listed)."""
    opened = pd.to_datetime(complaints["opened_at"])
    frame = pd.DataFrame({"weekday": opened.dt.day_of_week.to_numpy(), "hour": opened.dt.hour.to_numpy()},
                         index=complaints.index)
    for column in ("business_line", "channel"):
        if column in complaints.columns:
            frame[column] = complaints[column].astype("str").where(complaints[column].notna(), "(unknown)")
    late = breached_targets(complaints, cutoff_us(as_of), targets)
    frame["breached"] = np.nan if late is None else late.astype(float)
    grids: dict[str, pd.DataFrame] = {}
    for name, (rows, cols) in GRIDS.items():
        if rows not in frame.columns or cols not in frame.columns:
            continue
        counts = frame.groupby([rows, cols]).agg(complaints=("breached", "size"), breached=("breached", "sum"))
        if rows == "weekday":
            full = pd.MultiIndex.from_product([range(7), range(24)], names=[rows, cols])
        else:
            full = pd.MultiIndex.from_product([sorted(frame[rows].unique()), sorted(frame[cols].unique())],
                                              names=[rows, cols])
        grid = counts.reindex(full, fill_value=0).reset_index()
        grid["breached"] = grid["breached"].astype("int64") if late is not None else pd.NA
        grid["breach_rate"] = (grid["breached"] / grid["complaints"].where(grid["complaints"] > 0)
                               if late is not None else np.nan)
        if rows == "weekday":
            grid.insert(1, "weekday_name", [WEEKDAYS[d] for d in grid["weekday"]])
        grids[name] = grid
    return grids

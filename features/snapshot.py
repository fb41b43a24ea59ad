"""Snapshots whose churn is a flag, not a date: the customers' dates derived from the flag and the tenure.

Many teams hold a customers snapshot with a churn flag (`Churn` Yes/No, `Exited` 1/0) and a tenure
(months with the company) and no dates at all. The pipeline's contract needs each customer's
signup_date and closed_date; `labels.churn_flag` (`ChurnFlagSettings`) derives them when the
customers table is read, so every stage sees an ordinary snapshot:

- the flag covers the window [as_of - horizon_days, as_of) before the snapshot date `data.as_of`;
  the one training cutoff (anchor as_of) is the window's start, C = as_of - horizon_days;
- closed_date = C for a flagged customer (left in the window), empty for the others (with the
  file's own signup dates, the signup day for one who joined inside the window). The day within
  the window is unknown, so no time to churn is learnt from it (`features.build.training_rows_at`
  writes no days_to_churn) and every churner counts as closing in the window, exactly once;
- signup_date = C - tenure, with the tenure in `tenure_unit` (months and years as 365.25 / 12 and
  365.25 days, rounded half up to whole days; a tenure of 0, a customer who joined in the window, as one
  day, so that every customer of the snapshot is present at the cutoff): tenure_days at the cutoff
  is then the tenure the snapshot gives. Without a tenure column (and no signup_date in the file) signup_date is C - 1 day for
  everyone: every customer is present at the cutoff, and tenure_days carries nothing.

The snapshot's columns describe each customer at one moment, the one the model learns from; so
`churn score` scores such data at that same moment, C, with the customers the flag says stayed
(pipelines/score.py), and tenure_days means the same in training and in the list.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.settings import ChurnFlagSettings
from features.validation import Problem, describe_rows

CHURNED_WORDS = ("1", "true", "yes", "y", "t")
STAYED_WORDS = ("0", "false", "no", "n", "f")
DAYS_PER_UNIT = {"days": 1.0, "weeks": 7.0, "months": 365.25 / 12, "years": 365.25}


def flag_values(values: pd.Series, churned_values: list[str | int | float | bool] | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(churned, unreadable) per row: the flag as booleans, and the rows whose value means neither.

    With `churned_values` any other non-empty value means stayed: text is compared ignoring case and
    surrounding spaces, a number as a number (1 matches "1.0"), and true / false (YAML reads an unquoted
    yes as true) as the words `CHURNED_WORDS` / `STAYED_WORDS`. Otherwise the value must be one of those
    words in any case, or a number equal to 1 or 0 (`1.0` is 1)."""
    missing = values.isna().to_numpy(dtype=bool)
    text = values.astype("str").str.strip()
    lower = text.str.lower()
    number = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    if churned_values is not None:
        words: set[str] = set()
        numbers: list[float] = []
        for value in churned_values:
            if isinstance(value, bool):
                words |= set(CHURNED_WORDS if value else STAYED_WORDS)
            elif isinstance(value, (int, float)):
                numbers.append(float(value))
            else:
                words.add(value.strip().lower())
                parsed = pd.to_numeric(value.strip(), errors="coerce")
                if pd.notna(parsed):
                    numbers.append(float(parsed))
        churned = (lower.isin(words).to_numpy(dtype=bool) | np.isin(number, numbers)) & ~missing
        unreadable = missing | (text == "").to_numpy(dtype=bool)
        return churned, unreadable
    churned = (lower.isin(CHURNED_WORDS).to_numpy(dtype=bool) | (number == 1.0)) & ~missing
    stayed = (lower.isin(STAYED_WORDS).to_numpy(dtype=bool) | (number == 0.0)) & ~missing
    return churned, ~(churned | stayed)


def tenure_in_days(values: pd.Series, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """(whole days, at least 1, unreadable) per row: the tenure in `unit` as days; unreadable when
    empty, not a number, negative or not finite."""
    number = pd.to_numeric(values.astype("str").str.strip() if values.dtype == object or
                           pd.api.types.is_string_dtype(values) else values, errors="coerce")
    number = np.asarray(number, dtype=float)
    unreadable = ~np.isfinite(number) | (number < 0)
    days = np.floor(np.where(unreadable, 0.0, number) * DAYS_PER_UNIT[unit] + 0.5)  # half a day up
    return np.maximum(days.astype(np.int64), 1), unreadable  # 0: joined in the window, still present at its start


def flag_window_start(as_of: pd.Timestamp, horizon_days: int) -> pd.Timestamp:
    """C: the start of the window the flag covers, and the one training cutoff."""
    return pd.Timestamp(as_of) - pd.Timedelta(days=horizon_days)


def with_flag_dates(customers: pd.DataFrame, flag: ChurnFlagSettings, as_of: pd.Timestamp,
                    horizon_days: int) -> tuple[pd.DataFrame, list[Problem]]:
    """The customers table with signup_date and closed_date derived from the flag (and the tenure), and
    the problems that stop it (each naming the column, the rows, examples and the fix).

    A new frame; the input is not changed. The flag and tenure columns stay in it (neither is ever a
    feature: `pipelines.config.churn_flag_problems` refuses them in `features.static_features`).
    """
    problems: list[Problem] = []
    key = "labels.churn_flag"
    if flag.column not in customers.columns:
        return customers, [Problem("customers", flag.column, 0, f"no column {flag.column!r} ({key}.column)",
                                   f"name the flag column of the customers file in {key}.column; the file has "
                                   f"{list(map(str, customers.columns))[:12]}")]
    if "closed_date" in customers.columns:
        problems.append(Problem("customers", "closed_date", 0,
                                f"the file has closure dates (closed_date) and {key} derives them from the flag",
                                f"use one or the other: remove {key} (the dates say who left and when), or drop "
                                "the closed_date column"))
    churned, unreadable = flag_values(customers[flag.column], flag.churned_values)
    if unreadable.any():
        rows, examples = describe_rows(customers, unreadable, "customers")
        shown = list(dict.fromkeys(customers[flag.column][unreadable].astype("str").head(50)))[:3]
        fix = (f"give every customer a value; {key}.churned_values lists the values that mean churned"
               if flag.churned_values is not None else
               f"write 1/0, yes/no or true/false, or list the values that mean churned in {key}.churned_values "
               "(every other value then means stayed)")
        problems.append(Problem("customers", flag.column, rows,
                                f"churn flag values that mean neither churned nor stayed (e.g. {shown})", fix, examples))
    start = flag_window_start(as_of, horizon_days)
    if flag.tenure_column is not None:
        if flag.tenure_column not in customers.columns:
            problems.append(Problem("customers", flag.tenure_column, 0,
                                    f"no column {flag.tenure_column!r} ({key}.tenure_column)",
                                    f"name the tenure column in {key}.tenure_column, or set it to null"))
            return customers, problems
        if "signup_date" in customers.columns:
            problems.append(Problem("customers", "signup_date", 0,
                                    f"the file has signup dates and {key}.tenure_column derives them from the tenure",
                                    f"use one or the other: set {key}.tenure_column to null, or drop signup_date"))
        days, bad_tenure = tenure_in_days(customers[flag.tenure_column], flag.tenure_unit)
        if bad_tenure.any():
            rows, examples = describe_rows(customers, bad_tenure, "customers")
            shown = list(dict.fromkeys(customers[flag.tenure_column][bad_tenure].astype("str").head(50)))[:3]
            problems.append(Problem("customers", flag.tenure_column, rows,
                                    f"tenure values that are not a number of {flag.tenure_unit} >= 0 (e.g. {shown})",
                                    "give every customer a tenure (0 for one who joined in the window); plain numbers "
                                    "with a dot as decimal separator", examples))
    else:
        days = np.ones(len(customers), dtype=np.int64)
    if any(p.severity == "error" for p in problems):
        return customers, problems
    columns: dict[str, object] = {}
    if "signup_date" not in customers.columns:
        signup = np.datetime64(start.to_datetime64(), "us") - days.astype("timedelta64[D]").astype("timedelta64[us]")
        columns["signup_date"] = pd.Series(signup, index=customers.index)
    closed_on = np.full(len(customers), np.datetime64(start.to_datetime64(), "us"))
    if "signup_date" in customers.columns:  # the file's own dates: one who joined in the window closes after joining
        joined = pd.to_datetime(customers["signup_date"], format="ISO8601", errors="coerce", utc=True)
        joined_us = joined.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
        closed_on = np.where(~np.isnat(joined_us) & (joined_us > closed_on), joined_us, closed_on)
    closed = np.where(churned, closed_on, np.datetime64("NaT", "us"))
    columns["closed_date"] = pd.Series(closed.astype("datetime64[us]"), index=customers.index)
    return customers.assign(**columns), problems

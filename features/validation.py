"""Checks of the input tables against the data contract, all problems in one pass.

Pure: frames in, a list of `Problem`s out. Reading files (and the encoding checks that
need the raw bytes) lives in `pipelines/tables.py`. Column-level rules (nulls,
uniqueness, allowed values, ranges, finiteness) run through pandera; rules that need
two tables (unknown customers, events before signup) are vectorised here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from features._grouping import CHUNK_ROWS, IdLookup, _as_arrow_strings
from features.contract import EVENT_TABLES, TABLES, ColumnSpec, TableSpec

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, how many rows, examples, and the fix."""

    table: str
    column: str | None
    rows: int
    message: str
    fix: str
    examples: tuple[str, ...] = field(default_factory=tuple)
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        if self.severity == "warning":
            where = f"warning: {where}"
        count = f" ({self.rows:,} row{'s' if self.rows != 1 else ''})" if self.rows else ""
        examples = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{where}: {self.message}{count}{examples}. Fix: {self.fix}"


class ValidationFailed(Exception):
    """Raised when any input breaks the contract; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"input validation failed with {len(problems)} problem(s):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


def describe_rows(frame: pd.DataFrame, mask: np.ndarray | pd.Series, table: str) -> tuple[int, tuple[str, ...]]:
    """Count the failing rows and name a few by file row number and id."""
    mask = np.asarray(mask, dtype=bool)
    positions = np.flatnonzero(mask)
    return len(positions), tuple(_row_label(frame, int(p), table) for p in positions[:MAX_EXAMPLES])


def _row_label(frame: pd.DataFrame, position: int, table: str) -> str:
    """'row 12 (customer C0001)': data rows counted from 1, as a spreadsheet shows them after the header."""
    id_column = "complaint_id" if table == "complaints" else "customer_id"
    label = f"row {position + 1}"
    if id_column in frame.columns:
        value = frame[id_column].iloc[position]
        if isinstance(value, str) and value:
            label += f" ({id_column.replace('_id', '')} {value})"
    return label


def _pandera_schema(spec: TableSpec, present: set[str]) -> pa.DataFrameSchema:
    columns: dict[str, pa.Column] = {}
    for col in spec.columns:
        if col.name not in present:
            continue
        checks: list[pa.Check] = []
        if col.allowed is not None:
            checks.append(pa.Check.isin(list(col.allowed), ignore_na=True, name="allowed"))
        if col.kind in ("float", "int"):
            checks.append(
                pa.Check(lambda s: pd.Series(~np.isinf(s.to_numpy(dtype=float)), index=s.index),
                         ignore_na=True, name="finite")
            )
            if col.minimum is not None:
                checks.append(pa.Check.ge(col.minimum, ignore_na=True, name="minimum"))
            if col.maximum is not None:
                checks.append(pa.Check.le(col.maximum, ignore_na=True, name="maximum"))
        columns[col.name] = pa.Column(
            nullable=col.nullable, unique=col.unique, checks=checks, required=False, coerce=False
        )
    return pa.DataFrameSchema(columns, strict=False)


_CHECK_ALIASES = {
    "isin": "allowed",
    "greater_than_or_equal_to": "minimum",
    "less_than_or_equal_to": "maximum",
}


def _fix_for(col: ColumnSpec, check: str) -> tuple[str, str]:
    """The message and the fix for one failed pandera check."""
    check = _CHECK_ALIASES.get(check, check)
    if check == "not_nullable":
        return "empty values in a required column", f"fill in {col.name} for every row or drop those rows"
    if check == "field_uniqueness":
        return "duplicate values in a column that must be unique", f"keep one row per {col.name}"
    if check == "allowed":
        return (f"values outside the allowed set {list(col.allowed or ())}",
                f"map them to one of {list(col.allowed or ())} (or leave empty)")
    if check == "finite":
        return "infinite values", "replace inf/-inf with real amounts or drop those rows"
    if check == "minimum":
        return f"values below the minimum {col.minimum:g}", f"{col.name} must be between {col.minimum:g} and {col.maximum:g}" if col.maximum is not None else f"{col.name} must be at least {col.minimum:g}"
    if check == "maximum":
        return f"values above the maximum {col.maximum:g}", f"{col.name} must be between {col.minimum:g} and {col.maximum:g}" if col.minimum is not None else f"{col.name} must be at most {col.maximum:g}"
    return f"failed check {check}", "correct the values"


def check_columns(frame: pd.DataFrame, spec: TableSpec) -> list[Problem]:
    """Null keys, duplicate ids, allowed values, ranges and finiteness of one table."""
    schema = _pandera_schema(spec, set(frame.columns))
    try:
        schema.validate(frame, lazy=True)
        return []
    except SchemaErrors as errors:
        cases = errors.failure_cases
    problems: list[Problem] = []
    cases = cases[cases["column"].notna() & cases["index"].notna()]
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        col = spec.column(str(column))
        check_name = str(check).split("(")[0]
        mask = np.zeros(len(frame), dtype=bool)
        mask[group["index"].astype("int64").unique()] = True
        rows, examples = describe_rows(frame, mask, spec.name)
        message, fix = _fix_for(col, check_name)
        problems.append(Problem(spec.name, str(column), rows, message, fix, examples))
    return problems


def check_cross_table(
    customers: pd.DataFrame, events: dict[str, pd.DataFrame], as_of: pd.Timestamp | None
) -> list[Problem]:
    """Unknown customers, closures before signup, events before signup or after as_of."""
    problems: list[Problem] = []
    if {"signup_date", "closed_date"} <= set(customers.columns):
        bad = (customers["closed_date"] < customers["signup_date"]).to_numpy(dtype=bool, na_value=False)
        if bad.any():
            rows, ex = describe_rows(customers, bad, "customers")
            problems.append(Problem("customers", "closed_date", rows, "closed before signup_date",
                                    "check the two dates; closed_date must be on or after signup_date", ex))
    if as_of is not None:
        for column in ("signup_date", "closed_date"):
            if column in customers.columns:
                late = (customers[column] >= as_of).to_numpy(dtype=bool, na_value=False)
                if late.any():
                    rows, ex = describe_rows(customers, late, "customers")
                    problems.append(Problem("customers", column, rows,
                                            f"dates on or after the data's as-of date {as_of.date()}",
                                            "set data.as_of later or drop rows dated after it", ex))
    ids = customers["customer_id"] if "customer_id" in customers.columns else pd.Series([], dtype="str")
    first = ~ids.duplicated().to_numpy()
    unique_ids = ids[first] if not first.all() else ids
    signup = customers["signup_date"].to_numpy() if "signup_date" in customers.columns else None
    if signup is not None and not first.all():
        signup = signup[first]
    lookup = _CustomerLookup(unique_ids)
    for name, frame in events.items():
        spec = TABLES[name]
        if "customer_id" not in frame.columns:
            continue
        codes = lookup.positions(frame["customer_id"])
        unknown = codes < 0
        if unknown.any():
            rows, ex = describe_rows(frame, unknown, name)
            problems.append(Problem(name, "customer_id", rows, "customers not in the customers table",
                                    "add those customers to the customers table or drop their rows", ex))
        time_column = spec.event_time
        if time_column is None or time_column not in frame.columns:
            continue
        times = frame[time_column].to_numpy()
        if signup is not None:
            # Unknown customers (code -1) meet the appended NaT, and nothing is before NaT.
            signup_or_nat = np.append(signup, np.array("NaT", dtype=signup.dtype))
            before = np.zeros(len(frame), dtype=bool)
            for start in range(0, len(frame), CHUNK_ROWS):
                rows = slice(start, start + CHUNK_ROWS)
                before[rows] = times[rows] < signup_or_nat[codes[rows]]
            # Dates without a time of day: an event on the signup day itself is fine.
            if before.any():
                rows, ex = describe_rows(frame, before, name)
                problems.append(Problem(name, time_column, rows, "events before the customer's signup_date",
                                        "check the customer mapping and dates; drop events before signup", ex))
        if as_of is not None:
            late = (frame[time_column] >= as_of).to_numpy(dtype=bool, na_value=False)
            if late.any():
                rows, ex = describe_rows(frame, late, name)
                problems.append(Problem(name, time_column, rows,
                                        f"events on or after the data's as-of date {as_of.date()}",
                                        "set data.as_of later or drop events dated after it", ex))
    if "complaints" in events:
        problems += _check_complaint_times(events["complaints"])
    return problems


class _CustomerLookup:
    """Position of event customer ids among the (first occurrences of the) customer ids.

    Works on the Arrow buffers (`IdLookup`), never on Python strings: on tens of millions
    of event rows this is seconds instead of the minute and gigabytes of object arrays a
    pandas index lookup takes. Same answers as `pd.Index.get_indexer`, including that a
    missing event id matches a missing customer id (both are reported as empty keys).
    """

    def __init__(self, unique_ids: pd.Series):
        missing = np.flatnonzero(unique_ids.isna().to_numpy())
        self.missing_position = int(missing[0]) if len(missing) else -1
        self.lookup = IdLookup(_as_arrow_strings(unique_ids))

    def positions(self, values: pd.Series) -> np.ndarray:
        codes = self.lookup.positions(values)
        if self.missing_position >= 0:
            codes = np.array(codes, dtype=np.int32)  # Arrow's result may be read-only
            codes[values.isna().to_numpy()] = self.missing_position
        return codes


def _check_complaint_times(complaints: pd.DataFrame) -> list[Problem]:
    problems: list[Problem] = []
    for column in ("first_response_at", "resolved_at"):
        if column in complaints.columns and "opened_at" in complaints.columns:
            bad = (complaints[column] < complaints["opened_at"]).to_numpy(dtype=bool, na_value=False)
            if bad.any():
                rows, ex = describe_rows(complaints, bad, "complaints")
                problems.append(Problem("complaints", column, rows, "earlier than opened_at",
                                        f"{column} must be on or after opened_at; check the time zone", ex))
    return problems


def check_not_empty(frame: pd.DataFrame, spec: TableSpec) -> list[Problem]:
    """A configured table with no rows is a mistake (wrong file or filter)."""
    if len(frame) == 0:
        fix = ("supply at least one customer" if spec.required
               else f"remove {spec.name} from data.tables if you have no such data")
        return [Problem(spec.name, None, 0, "the table has no rows", fix)]
    return []


def validate_tables(
    frames: dict[str, pd.DataFrame], as_of: pd.Timestamp | None
) -> list[Problem]:
    """Every contract check over already-typed canonical frames; [] means valid."""
    problems: list[Problem] = []
    for name, frame in frames.items():
        spec = TABLES[name]
        empty = check_not_empty(frame, spec)
        problems += empty
        if not empty:
            problems += check_columns(frame, spec)
    if "customers" in frames and len(frames["customers"]):
        events = {n: f for n, f in frames.items() if n in EVENT_TABLES and len(f)}
        problems += check_cross_table(frames["customers"], events, as_of)
    return problems


def data_as_of(frames: dict[str, pd.DataFrame], configured: str | None) -> pd.Timestamp:
    """The exclusive end of the data: the configured date, else midnight after the latest event."""
    if configured is not None:
        return pd.Timestamp(configured)
    latest: list[pd.Timestamp] = []
    for name, frame in frames.items():
        spec = TABLES[name]
        for col in spec.columns:
            if col.kind == "datetime" and col.name in frame.columns and len(frame):
                value = frame[col.name].max()
                if pd.notna(value):
                    latest.append(value)
    if not latest:
        raise ValueError("no dates in the data; set data.as_of in the config")
    return max(latest).normalize() + pd.Timedelta(days=1)



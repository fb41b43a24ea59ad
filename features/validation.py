"""Checks of the input tables against the data contract, all problems in one pass.

Pure: frames in, a list of `Problem`s out. Reading files (and the encoding checks that
need the raw bytes) lives in `pipelines/tables.py`. Column-level rules (nulls, allowed
values, ranges, finiteness) run through pandera, uniqueness by sorting (`unique_problems`, so
that a table read in batches keeps only its unique columns for it); rules that need
two tables (unknown customers, events before signup) are vectorised here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

from features._grouping import CHUNK_ROWS, IdLookup, _as_arrow_strings, sorted_ids
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
    detail: Detail | None = field(default=None, compare=False, repr=False)
    """What the message shows of the failing rows beyond the count (not in the report): lets the
    same problem found in two parts of a table merge into the one found in the whole table."""

    def merged(self, later: Problem) -> Problem:
        """This problem plus the same one in rows further down the table: exactly the whole table's.

        Row counts add up; the examples (each part's first, in file order) are the first of both;
        a message that shows values (`detail`) is written again from both parts' values.
        """
        detail = self.detail.merged(later.detail) if self.detail and later.detail else self.detail
        message, fix = detail.render(detail) if detail is not None else (self.message, self.fix)
        return replace(self, rows=self.rows + later.rows, message=message, fix=fix,
                       examples=(self.examples + later.examples)[:MAX_EXAMPLES], detail=detail)

    def report(self) -> dict[str, object]:
        """The problem as the validation report shows it."""
        return {"table": self.table, "column": self.column, "rows": self.rows, "message": self.message,
                "fix": self.fix, "examples": list(self.examples), "severity": self.severity, "text": str(self)}

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        if self.severity == "warning":
            where = f"warning: {where}"
        count = f" ({self.rows:,} row{'s' if self.rows != 1 else ''})" if self.rows else ""
        examples = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return f"{where}: {self.message}{count}{examples}. Fix: {self.fix}"


@dataclass(frozen=True)
class Detail:
    """The values a problem's message shows (the first `limit`, in file order) and a count it states.

    `render` writes (message, fix) from them, so two parts of a table merge (`Problem.merged`)
    into the message of the whole table. `distinct`: a value shown once however often it occurs.
    """

    render: Callable[[Detail], tuple[str, str]]
    values: tuple[object, ...] = ()
    count: int = 0
    limit: int = 3
    distinct: bool = False

    def merged(self, later: Detail) -> Detail:
        values = self.values + later.values
        if self.distinct:
            values = tuple(dict.fromkeys(values))
        return replace(self, values=values[:self.limit], count=self.count + later.count)


def merge_found(found: dict[Hashable, Problem], batch: Mapping[Hashable, Problem]) -> None:
    """Add the problems of one batch of rows to those of the batches before it, by key."""
    for key, problem in batch.items():
        found[key] = found[key].merged(problem) if key in found else problem


class ValidationFailed(Exception):
    """Raised when any input breaks the contract; carries every problem found (each reported once).

    `report` is the path of the failed validation report when one was written (`churn validate`).
    """

    def __init__(self, problems: list[Problem]):
        self.problems = without_double_reports(problems)
        self.report: str | None = None
        lines = [f"input validation failed with {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


EMPTY_VALUES = "empty values in a required column"
UNPARSEABLE = "values that are not "
"""How `pipelines.tables.coerce_types` begins its message for values that are not dates or numbers."""


def without_double_reports(problems: list[Problem]) -> list[Problem]:
    """Each bad value reported once: not again as an empty value of its required column.

    A value that is not a date or number is reported when the column is typed and then
    becomes empty, so the required-column check would count it a second time. The
    empty-values problem keeps only the rows that were empty in the file (its examples
    are the first failing rows, so those that were not bad values are the first empty ones),
    and goes when none were.
    """
    bad = {(p.table, p.column): p for p in problems
           if p.severity == "error" and p.column is not None and p.message.startswith(UNPARSEABLE)}
    if not bad:
        return list(problems)
    kept: list[Problem] = []
    for problem in problems:
        parsed = bad.get((problem.table, problem.column))
        if parsed is not None and problem.message == EMPTY_VALUES:
            rows = problem.rows - parsed.rows
            if rows <= 0:
                continue
            examples = tuple(e for e in problem.examples if e not in parsed.examples)
            problem = Problem(problem.table, problem.column, rows, problem.message, problem.fix, examples,
                              problem.severity)
        kept.append(problem)
    return kept


def describe_rows(frame: pd.DataFrame, mask: np.ndarray | pd.Series, table: str,
                  first_row: int = 0) -> tuple[int, tuple[str, ...]]:
    """Count the failing rows and name a few by file row number and id.

    `first_row`: the file position of the frame's first row (a batch further down the file)."""
    mask = np.asarray(mask, dtype=bool)
    positions = np.flatnonzero(mask)
    return len(positions), tuple(_row_label(frame, int(p), table, first_row) for p in positions[:MAX_EXAMPLES])


def label_column(table: str) -> str:
    """The id column that names a row of `table` in the examples of a problem (`describe_rows`)."""
    return "complaint_id" if table == "complaints" else "customer_id"


ROW_LABEL = re.compile(r"^row (\d+)")
"""The start of a `_row_label`: the row number."""


def renumbered(problem: Problem, file_row: Callable[[int], int], note: str) -> Problem:
    """`problem`, found in part of a table's rows, with its examples' row numbers those of the file
    (`file_row`: 0-based row of the part -> 0-based row of the file) and `note` (which rows) after its message."""
    examples = tuple(ROW_LABEL.sub(lambda m: f"row {file_row(int(m.group(1)) - 1) + 1}", e) for e in problem.examples)
    return replace(problem, examples=examples, message=f"{problem.message} {note}")


def _row_label(frame: pd.DataFrame, position: int, table: str, first_row: int = 0) -> str:
    """'row 12 (customer C0001)': data rows counted from 1, as a spreadsheet shows them after the header."""
    id_column = label_column(table)
    label = f"row {first_row + position + 1}"
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
            nullable=col.nullable, checks=checks, required=False, coerce=False
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
        return EMPTY_VALUES, f"fill in {col.name} for every row or drop those rows"
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
    return list(column_problems(frame, spec).values())


def column_problems(frame: pd.DataFrame, spec: TableSpec, first_row: int = 0,
                    unique: bool = True) -> dict[tuple[str, str], Problem]:
    """`check_columns` keyed by (column, pandera check), in that order; `first_row` as in `describe_rows`.

    On a batch of rows every check but uniqueness sees what it sees in the whole table: pass
    `unique=False` there and check the unique columns gathered over all batches (`unique_problems`)."""
    problems = unique_problems(frame, spec) if unique else {}
    schema = _pandera_schema(spec, set(frame.columns))
    try:
        # pandera copies the frame it checks unless told it may work in place (0.8 GB at the peak of
        # loading 46M transactions); a shallow copy (copy-on-write) keeps its schema note off ours
        schema.validate(frame.copy(deep=False), lazy=True, inplace=True)
        return problems
    except SchemaErrors as errors:
        cases = errors.failure_cases
    cases = cases[cases["column"].notna() & cases["index"].notna()]
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        col = spec.column(str(column))
        check_name = str(check).split("(")[0]
        mask = np.zeros(len(frame), dtype=bool)
        mask[group["index"].astype("int64").unique()] = True
        rows, examples = describe_rows(frame, mask, spec.name, first_row)
        message, fix = _fix_for(col, check_name)
        problems[(str(column), str(check))] = Problem(spec.name, str(column), rows, message, fix, examples)
    return dict(sorted(problems.items()))


UNIQUE_CHECK = "field_uniqueness"
"""The key of duplicate values among `column_problems`: pandera's name for its `unique` check, which
reported them before (the problems sort by it)."""


def unique_problems(frame: pd.DataFrame, spec: TableSpec) -> dict[tuple[str, str], Problem]:
    """Every row whose value of a unique column occurs more than once, keyed as in `column_problems`.

    `frame`: the whole table, or only its unique columns and `label_column` gathered over batches
    of rows. As pandera's `unique` reported it: empty values are no duplicates (they are reported
    as empty values of a required column)."""
    problems: dict[tuple[str, str], Problem] = {}
    for col in spec.columns:
        if not col.unique or col.name not in frame.columns:
            continue
        duplicated = repeated_values(frame[col.name])
        if duplicated.any():
            rows, examples = describe_rows(frame, duplicated, spec.name)
            message, fix = _fix_for(col, UNIQUE_CHECK)
            problems[(col.name, UNIQUE_CHECK)] = Problem(spec.name, col.name, rows, message, fix, examples)
    return problems


def repeated_values(values: pd.Series) -> np.ndarray:
    """Which rows hold a value that occurs more than once, empty values left out (pandas'
    `duplicated(keep=False)` without them).

    By sorting, not hashing: on 15.7M ids 0.6 GB beyond the ids instead of the 1.1 GB of a hash
    of them; values already in strictly increasing order (ids as most systems export them)
    need no sort at all."""
    arrow = _as_arrow_strings(values)
    found = np.zeros(len(arrow), dtype=bool)
    if len(arrow) < 2 or _flags(pc.less(arrow[:-1], arrow[1:])).all():
        return found
    order = pc.sort_indices(arrow)
    ordered = arrow.take(order)
    same = _flags(pc.equal(ordered[:-1], ordered[1:]))
    if same.any():
        repeated = np.zeros(len(arrow), dtype=bool)
        repeated[:-1] |= same
        repeated[1:] |= same
        found[order.to_numpy()[repeated]] = True
    return found


def _flags(flags: pa_arrow.Array | pa_arrow.ChunkedArray) -> np.ndarray:
    """An Arrow boolean result as numpy, null (a comparison with an empty value) as False."""
    filled = pc.fill_null(flags, False)
    chunks = filled.chunks if isinstance(filled, pa_arrow.ChunkedArray) else [filled]
    return np.concatenate([c.to_numpy(zero_copy_only=False) for c in chunks]) if chunks else np.empty(0, bool)


def check_cross_table(
    customers: pd.DataFrame, events: dict[str, pd.DataFrame], as_of: pd.Timestamp | None,
    early: "EarlyChecks | None" = None,
) -> list[Problem]:
    """Unknown customers, closures before signup, events before signup or after as_of (`early`: the parts
    already checked, reused where they were run on these very frames)."""
    problems = check_customers(customers, as_of)
    known = early.known if early is not None and early.same("customers", customers) else KnownCustomers(customers)
    for name, frame in events.items():
        done = early.events.get(name) if early is not None and early.same(name, frame) else None
        problems += done if done is not None else check_events(name, frame, known, as_of).values()
    if "complaints" in events:
        problems += check_complaint_times(events["complaints"]).values()
    return problems


def check_customers(customers: pd.DataFrame, as_of: pd.Timestamp | None) -> list[Problem]:
    """The customers' part of `check_cross_table`: closures before signup, dates after a configured as_of."""
    problems: list[Problem] = []
    if {"signup_date", "closed_date"} <= set(customers.columns):
        bad = (customers["closed_date"] < customers["signup_date"]).to_numpy(dtype=bool, na_value=False)
        if bad.any():
            rows, ex = describe_rows(customers, bad, "customers")
            problems.append(Problem("customers", "closed_date", rows, "closed before signup_date",
                                    "check the two dates; closed_date must be on or after signup_date", ex))
    if as_of is not None:
        for column in SNAPSHOT_DATE_COLUMNS:
            if column in customers.columns:
                late = late_rows(customers, "customers", column, as_of,
                                  f"dates on or after the data's as-of date {as_of.date()}",
                                  "set data.as_of later or drop rows dated after it")
                problems += [late] if late is not None else []
    return problems


class KnownCustomers:
    """The customers an event row may name: built once, then asked per event table or batch of rows."""

    def __init__(self, customers: pd.DataFrame):
        ids = customers["customer_id"] if "customer_id" in customers.columns else pd.Series([], dtype="str")
        first = ~ids.duplicated().to_numpy()
        self.unique_ids = ids[first] if not first.all() else ids
        signup = customers["signup_date"].to_numpy() if "signup_date" in customers.columns else None
        if signup is not None and not first.all():
            signup = signup[first]
        self.lookup: _CustomerLookup | IdLookup
        if len(ids) and first.all() and not ids.isna().any():
            # valid ids: positions in id order, the lookup the feature build makes of this table (`sorted_ids`),
            # so that it reuses every event table's positions found here
            order, self.lookup = sorted_ids(ids)
            signup = signup[order] if signup is not None else None
        else:
            self.lookup = _CustomerLookup(self.unique_ids)
        # Unknown customers (code -1) meet the appended NaT, and nothing is before NaT.
        self.signup_or_nat = (None if signup is None
                              else np.append(signup, np.array("NaT", dtype=signup.dtype)))
        self._by_key: pd.Series | None = None

    def by_key(self) -> pd.Series:
        """`_ids_by_key` of the customer ids, built the first time some event id is unknown."""
        if self._by_key is None:
            self._by_key = _ids_by_key(self.unique_ids)
        return self._by_key


EVENT_CHECKS = ("unknown", "before signup", "late")
"""The keys of `check_events`, in the order its problems are reported."""


def check_events(name: str, frame: pd.DataFrame, known: KnownCustomers, as_of: pd.Timestamp | None,
                 first_row: int = 0) -> dict[str, Problem]:
    """One event table's (or batch of rows') part of `check_cross_table`, keyed by `EVENT_CHECKS`.

    Unknown customers, events before the customer's signup, events on or after a configured as_of;
    `first_row` as in `describe_rows`."""
    problems: dict[str, Problem] = {}
    if "customer_id" not in frame.columns:
        return problems
    codes = known.lookup.positions(frame["customer_id"])
    unknown = codes < 0
    if unknown.any():
        rows, ex = describe_rows(frame, unknown, name, first_row)
        problems["unknown"] = _unknown_customers(frame, name, unknown, rows, ex, known.by_key())
    time_column = TABLES[name].event_time
    if time_column is None or time_column not in frame.columns:
        return problems
    times = frame[time_column].to_numpy()
    if known.signup_or_nat is not None:
        before = np.zeros(len(frame), dtype=bool)
        for start in range(0, len(frame), CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            before[rows] = times[rows] < known.signup_or_nat[codes[rows]]
        # Dates without a time of day: an event on the signup day itself is fine.
        if before.any():
            count, ex = describe_rows(frame, before, name, first_row)
            problems["before signup"] = Problem(
                name, time_column, count, "events before the customer's signup_date",
                "check the customer mapping and dates; drop events before signup", ex)
    if as_of is not None:
        late = late_rows(frame, name, time_column, as_of,
                          f"events on or after the data's as-of date {as_of.date()}",
                          "set data.as_of later or drop events dated after it", first_row=first_row)
        if late is not None:
            problems["late"] = late
    return problems


def id_key(ids: pd.Series) -> pd.Series:
    """Ids as compared across type and padding: numeric ids without leading zeros or a trailing .0.

    '319', '319.0', '0000319' and ' 319 ' all become '319'; other ids lose only surrounding spaces.
    """
    text = ids.astype("str").str.strip()
    numeric = text.str.fullmatch(r"\d+(?:\.0*)?", na=False)
    if numeric.any():
        digits = text[numeric].str.replace(r"\.0*$", "", regex=True).str.lstrip("0")
        text = text.mask(numeric, digits.mask(digits == "", "0"))
    return text


def _ids_by_key(ids: pd.Series) -> pd.Series:
    """The customer ids indexed by `id_key`, first of each key."""
    present = ids[ids.notna()]
    by_key = pd.Series(present.to_numpy(), index=pd.Index(id_key(present).to_numpy()))
    return by_key[~by_key.index.duplicated()]


def _unknown_customers(frame: pd.DataFrame, table: str, unknown: np.ndarray, rows: int,
                       examples: tuple[str, ...], known_by_key: pd.Series) -> Problem:
    """Event rows whose customer is not in the customers table; says so when only the id's format differs."""
    ids = frame["customer_id"][unknown]
    ids = ids[ids.notna()]
    pairs: tuple[str, ...] = ()
    match_rows = 0
    if len(ids) and len(known_by_key):
        distinct = ids.drop_duplicates()
        keys = id_key(distinct)
        matched = keys.isin(known_by_key.index).to_numpy()
        if matched.any():
            match_rows = int(ids.isin(distinct[matched]).sum())
            pairs = tuple(f"'{value}' is '{known_by_key[key]}'"
                          for value, key in zip(distinct[matched][:3], keys[matched][:3]))
    detail = Detail(_unknown_message, pairs, match_rows, distinct=True)
    message, fix = _unknown_message(detail)
    return Problem(table, "customer_id", rows, message, fix, examples, detail=detail)


def _unknown_message(detail: Detail) -> tuple[str, str]:
    """The message and fix for unknown customers; `detail`: the ids written another way and their rows."""
    message = "customers not in the customers table"
    fix = "add those customers to the customers table or drop their rows"
    if detail.count:
        pairs = ", ".join(map(str, detail.values))
        message += (f"; {detail.count:,} of these rows name a known customer written another way "
                    f"({pairs}): the ids differ only in type or padding")
        fix = ("write the ids the same way in every table: read and export them as text, so no number "
               "conversion adds '.0' or drops leading zeros; then add any customers still missing")
    return message, fix


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


COMPLAINT_TIMES = ("first_response_at", "resolved_at")
"""The keys of `check_complaint_times`, in the order its problems are reported."""


def check_complaint_times(complaints: pd.DataFrame, first_row: int = 0) -> dict[str, Problem]:
    """Replies and resolutions dated before the complaint was opened, keyed by `COMPLAINT_TIMES`.

    Each row on its own: a batch of rows gets its part; `first_row` as in `describe_rows`."""
    problems: dict[str, Problem] = {}
    for column in COMPLAINT_TIMES:
        if column in complaints.columns and "opened_at" in complaints.columns:
            bad = (complaints[column] < complaints["opened_at"]).to_numpy(dtype=bool, na_value=False)
            if bad.any():
                rows, ex = describe_rows(complaints, bad, "complaints", first_row)
                problems[column] = Problem("complaints", column, rows, "earlier than opened_at",
                                           f"{column} must be on or after opened_at; check the time zone", ex)
    return problems


def check_not_empty(frame: pd.DataFrame, spec: TableSpec) -> list[Problem]:
    """A configured table with no rows is a mistake (wrong file or filter)."""
    if len(frame) == 0:
        fix = ("supply at least one customer" if spec.required
               else f"remove {spec.name} from data.tables if you have no such data")
        return [Problem(spec.name, None, 0, "the table has no rows", fix)]
    return []


def validate_tables(
    frames: dict[str, pd.DataFrame], as_of: pd.Timestamp | None,
    dates_only: Mapping[str, tuple[int, DayCounts]] | None = None, inferred_end: pd.Timestamp | None = None,
    early: "EarlyChecks | None" = None,
) -> list[Problem]:
    """Every contract check over already-typed canonical frames; [] means valid.

    `as_of` is the configured data.as_of; when it is None, the end of the data is
    inferred (`data_as_of`) and rows dated after it are reported (`check_after_data_end`).
    `dates_only`: tables a stage does not use, as their row count and the `daily_counts` of their
    event time (pipelines/tables.py `event_days`), so that the inferred end is the same in every
    stage; they are not checked here. `inferred_end`: that end when the caller has it already, from
    `end_of_data` on the same frames and `dates_only` (counting every date again is 0.5 s on 46M rows).
    `early`: the checks already run on some of these frames (`check_early`), not run again.
    """
    problems: list[Problem] = []
    for name, frame in frames.items():
        done = early.tables.get(name) if early is not None and early.same(name, frame) else None
        problems += done if done is not None else table_problems(frame, TABLES[name])
    if "customers" in frames and len(frames["customers"]):
        events = {n: f for n, f in frames.items() if n in EVENT_TABLES and len(f)}
        problems += check_cross_table(frames["customers"], events, as_of, early)
    if as_of is None:
        problems += check_after_data_end(frames, dates_only, inferred_end)
    return problems


def table_problems(frame: pd.DataFrame, spec: TableSpec) -> list[Problem]:
    """One table's own checks: empty, then (if not) `check_columns`."""
    empty = check_not_empty(frame, spec)
    return empty or check_columns(frame, spec)


@dataclass
class EarlyChecks:
    """The checks of `validate_tables` that some tables allow before the others are read: each table's
    own checks and, with the customers, their lookup and the cross-table checks of those event tables.
    A stage runs them while a slow table is still being read (`pipelines/tables.py`); `validate_tables`
    reuses them for the same frame objects and reports every problem in its usual order."""

    frames: dict[str, pd.DataFrame]
    tables: dict[str, list[Problem]]
    events: dict[str, list[Problem]]
    known: KnownCustomers | None

    def same(self, name: str, frame: pd.DataFrame) -> bool:
        """Whether `frame` is the very frame these checks ran on."""
        return self.frames.get(name) is frame


def check_early(frames: dict[str, pd.DataFrame], as_of: pd.Timestamp | None) -> EarlyChecks:
    """`EarlyChecks` of the tables read so far (`as_of`: the configured data.as_of, as `validate_tables`)."""
    tables = {name: table_problems(frame, TABLES[name]) for name, frame in frames.items()}
    customers = frames.get("customers")
    known: KnownCustomers | None = None
    events: dict[str, list[Problem]] = {}
    if customers is not None and len(customers):
        known = KnownCustomers(customers)
        events = {name: list(check_events(name, frame, known, as_of).values()) for name, frame in frames.items()
                  if name in EVENT_TABLES and len(frame)}
    return EarlyChecks(dict(frames), tables, events, known)


# ---------------------------------------------------------------- the end of the data

BUSY_DAY_SHARE = 0.01
"""A day counts towards the end of the data when it has at least this share of the median
number of events per day (over the days that have any); quieter days are stray rows."""
ISOLATED_AFTER_DAYS = 90
"""Dates after a gap longer than this, and longer than all the data before the gap, that hold
fewer rows than came before, are isolated (typing 2099 for 2024) and do not count either."""
SNAPSHOT_DATE_COLUMNS = ("signup_date", "closed_date")
"""The dates that say how far a customers-only snapshot runs."""
_DAY_BINS = 1 << 22
"""Dates spanning fewer days than this (11,000 years) are counted per day with bincount, others by sorting."""


def end_columns_of(shapes: Mapping[str, tuple[int, Collection[str]]]) -> list[tuple[str, str]]:
    """The (table, column) pairs whose dates say how far the data runs, from each table's row count and
    columns (`shapes`: tables whole, read in batches, or known by their dates alone).

    The event time of each event table with rows (transactions.timestamp,
    complaints.opened_at, surveys.answered_at, contacts.contacted_at), never secondary
    dates such as resolved_at; with no event rows (a customers-only snapshot), the
    customers' signup_date and closed_date.
    """
    pairs = [(name, TABLES[name].event_time) for name in EVENT_TABLES
             if name in shapes and shapes[name][0] and TABLES[name].event_time in shapes[name][1]]
    if pairs:
        return pairs  # type: ignore[return-value]
    customers = shapes.get("customers")
    return [("customers", c) for c in SNAPSHOT_DATE_COLUMNS if customers is not None and c in customers[1]]


DayCounts = tuple[np.ndarray, np.ndarray]
"""Days (as days since 1970-01-01) that have any date, ascending, and how many dates each."""
NO_DAYS: DayCounts = (np.empty(0, np.int64), np.empty(0, np.int64))


def add_day_counts(first: DayCounts, second: DayCounts) -> DayCounts:
    """The day counts of two parts of a column as those of the whole column."""
    days = np.union1d(first[0], second[0])
    counts = np.zeros(len(days), np.int64)
    counts[np.searchsorted(days, first[0])] += first[1]
    counts[np.searchsorted(days, second[0])] += second[1]
    return days, counts


def daily_counts(times: pd.Series) -> DayCounts:
    """Days (as days since 1970-01-01) that have any date in `times`, ascending, and how many each."""
    values = times.to_numpy()
    if not np.issubdtype(values.dtype, np.datetime64) or not len(values):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    first, last = times.min(), times.max()
    if pd.isna(first):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    start = int(np.datetime64(first, "D").astype(np.int64))
    bins = int(np.datetime64(last, "D").astype(np.int64)) - start + 1
    counts = np.zeros(bins, np.int64) if bins <= _DAY_BINS else None
    parts = []
    for begin in range(0, len(values), CHUNK_ROWS):
        chunk = values[begin:begin + CHUNK_ROWS]
        days = chunk[~np.isnat(chunk)].astype("datetime64[D]").astype(np.int64) - start
        if counts is not None:
            counts += np.bincount(days, minlength=bins)
        else:
            parts.append(days)
    if counts is None:
        busy, per_day = np.unique(np.concatenate(parts), return_counts=True)
        return busy + start, per_day.astype(np.int64)
    busy = np.flatnonzero(counts)
    return busy + start, counts[busy]


def bulk_end(times: pd.Series) -> pd.Timestamp | None:
    """The last day of the bulk of one date column (midnight of that day); None without dates.

    1. Days with fewer events than `BUSY_DAY_SHARE` (1%) of the median per busy day are
       left out (only bites when a typical day has more than 100 events).
    2. Of the rest, an isolated tail is left out: the days after a gap longer than
       `ISOLATED_AFTER_DAYS` and longer than everything before the gap, when they hold
       fewer rows than the days before it.
    3. The last day left is the end; the day right after it counts too when it has any
       events (a partial last day, such as an extract taken just after midnight).
    """
    return bulk_end_of(*daily_counts(times))


def bulk_end_of(days: np.ndarray, counts: np.ndarray) -> pd.Timestamp | None:
    """`bulk_end` from a column's `daily_counts` (added up over batches of rows)."""
    if not len(days):
        return None
    keep = counts >= BUSY_DAY_SHARE * float(np.median(counts))
    kept, kept_counts = days[keep], counts[keep]
    if len(kept) > 1:
        before = np.cumsum(kept_counts)[:-1]
        after = int(kept_counts.sum()) - before
        gap = np.diff(kept)
        isolated = (gap > np.maximum(ISOLATED_AFTER_DAYS, kept[:-1] - kept[0])) & (after < before)
        if isolated.any():
            kept = kept[:np.flatnonzero(isolated)[0] + 1]
    end = int(kept[-1])
    if np.isin(end + 1, days):
        end += 1
    return pd.Timestamp(np.datetime64(end, "D")).as_unit("us")


def inferred_as_of(frames: dict[str, pd.DataFrame]) -> pd.Timestamp | None:
    """Midnight after the latest `bulk_end` over the `end_columns_of`; None when there are no dates."""
    return _inferred_end(frames, {})[0]


def as_of_from_counts(columns: Iterable[DayCounts]) -> pd.Timestamp | None:
    """`inferred_as_of` from the `daily_counts` of each of the `end_columns_of`."""
    ends = [bulk_end_of(*counts) for counts in columns]
    ends = [end for end in ends if end is not None]
    return max(ends) + pd.Timedelta(days=1) if ends else None


def check_after_data_end(frames: dict[str, pd.DataFrame],
                         dates_only: Mapping[str, tuple[int, DayCounts]] | None = None,
                         inferred_end: pd.Timestamp | None = None) -> list[Problem]:
    """With data.as_of empty: rows dated on or after the inferred end of the data.

    Errors in the columns the end is inferred from (stray or mistyped dates, such as
    2099 for 2024); warnings for the customers' signup and closure dates when the event
    tables set the end (such customers count as not yet joined, or still open). The end comes
    from every table, `dates_only` too (`validate_tables`; `inferred_end`: already inferred from them);
    the checks look at `frames` only.
    """
    if inferred_end is not None:
        as_of, used = inferred_end, _end_columns(frames, dates_only or {})
    else:
        as_of, used = _inferred_end(frames, dates_only or {})
    if as_of is None:
        return []

    def late(table: str, column: str, message: str, fix: str,
             severity: Literal["error", "warning"] = "error") -> Problem | None:
        return late_rows(frames[table], table, column, as_of, message, fix, severity)

    return after_data_end(as_of, used, {name: frame.columns for name, frame in frames.items()}, late)


def end_of_data(frames: dict[str, pd.DataFrame], dates_only: Mapping[str, tuple[int, DayCounts]]) -> pd.Timestamp:
    """`data_as_of` with data.as_of empty, from whole tables and tables known by their event-time
    `daily_counts` alone (`validate_tables`): the same end as from the whole tables."""
    as_of, _ = _inferred_end(frames, dates_only)
    if as_of is None:
        raise ValueError(NO_DATES)
    return as_of


def _inferred_end(frames: dict[str, pd.DataFrame], dates_only: Mapping[str, tuple[int, DayCounts]]
                  ) -> tuple[pd.Timestamp | None, list[tuple[str, str]]]:
    """The inferred end (`inferred_as_of`) and the (table, column) pairs it comes from (`end_columns_of`)."""
    used = _end_columns(frames, dates_only)
    counts = [dates_only[table][1] if table in dates_only else daily_counts(frames[table][column])
              for table, column in used]
    return as_of_from_counts(counts), used


def _end_columns(frames: dict[str, pd.DataFrame], dates_only: Mapping[str, tuple[int, DayCounts]]
                 ) -> list[tuple[str, str]]:
    """The (table, column) pairs the end of the data is inferred from (`end_columns_of`)."""
    # A table in `dates_only` is known by all its rows there, even when `frames` holds some of them (a sample).
    shapes = {name: (len(frame), list(frame.columns)) for name, frame in frames.items()}
    shapes.update({name: (rows, [TABLES[name].event_time]) for name, (rows, _) in dates_only.items()})
    return end_columns_of(shapes)


LateRows = Callable[..., "Problem | None"]
"""(table, column, message, fix[, severity]) -> the rows of table.column dated on or after the end, or None."""


def after_data_end(as_of: pd.Timestamp, used: list[tuple[str, str]], checked: Mapping[str, Collection[str]],
                   late: LateRows) -> list[Problem]:
    """`check_after_data_end` given the inferred as_of, the `end_columns_of` it came from, the columns of
    each table to check (`checked`) and how to find a column's late rows (whole or in batches)."""
    last_day = (as_of - pd.Timedelta(days=1)).date()
    how = (f"dates after the end of the data, {last_day} (inferred because data.as_of is empty: the last day "
           f"with at least {BUSY_DAY_SHARE:.0%} of a typical day's events, isolated dates left out)")
    problems = [late(table, column, how, "set data.as_of or correct the dates")
                for table, column in used if table in checked]
    if used and used[0][0] != "customers" and "customers" in checked:
        problems += [late("customers", column,
                          f"dates after the end of the event data, {last_day}; these customers count as "
                          f"{'not yet joined' if column == 'signup_date' else 'still open'} at that date",
                          "set data.as_of if the data runs later, or correct the dates", "warning")
                     for column in SNAPSHOT_DATE_COLUMNS if column in checked["customers"]]
    for table, columns in SECONDARY_DATE_COLUMNS.items():
        if table in checked:
            problems += [late(table, column,
                              f"dates after the end of the data, {last_day}; they do not move it, and at "
                              "the scoring date these count as not yet happened",
                              "correct the dates, or set data.as_of if the data runs later", "warning")
                         for column in columns if column in checked[table]]
    return [p for p in problems if p is not None]


SECONDARY_DATE_COLUMNS = {"complaints": ("first_response_at", "resolved_at")}
"""Dates that never set the end of the data; a date after it (2099 typed for 2024) is a warning."""


def late_rows(frame: pd.DataFrame, table: str, column: str, as_of: pd.Timestamp, message: str, fix: str,
               severity: Literal["error", "warning"] = "error", first_row: int = 0) -> Problem | None:
    """Rows of `table.column` dated on or after `as_of`, as one problem (None when there are none)."""
    late = (frame[column] >= as_of).to_numpy(dtype=bool, na_value=False)
    if not late.any():
        return None
    rows, examples = describe_rows(frame, late, table, first_row)
    return Problem(table, column, rows, message, fix, examples, severity)


NO_DATES = "no dates in the data; set data.as_of in the config"


def data_as_of(frames: dict[str, pd.DataFrame], configured: str | pd.Timestamp | None) -> pd.Timestamp:
    """The exclusive end of the data: the configured date, else midnight after the data's last day.

    The last day is inferred from the bulk of the event dates (`inferred_as_of`, `bulk_end`),
    so a stray or mistyped date (2099) does not move it; `check_after_data_end` reports those.
    """
    if configured is not None:
        return pd.Timestamp(configured)
    as_of = inferred_as_of(frames)
    if as_of is None:
        raise ValueError(NO_DATES)
    return as_of



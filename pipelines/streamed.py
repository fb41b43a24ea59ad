"""`churn validate` in bounded memory: the event tables checked in batches of rows.

Every other stage loads the tables whole (`pipelines.tables.load_tables`); validation only needs
the problems and a summary, so the event tables (transactions, complaints, surveys, contacts)
are read from Parquet `BATCH_ROWS` rows at a time and each batch goes through the same checks as
a whole table (`coerce_types`, `column_problems`, `check_events` against the customers, looked up
once, `check_complaint_times`). The batches' problems merge (`Problem.merged`) into exactly the
ones the whole table gives, in the same order, so the report is identical to `load_tables`'.

A duplicate can be anywhere in the table, so of a table with a unique column (complaint_id)
that column alone is kept over the batches (Arrow strings) and checked at the end
(`unique_problems`). The customers (every event row is looked up among them) and CSV files (the
batched CSV reader does not treat empty and null values exactly as `pd.read_csv` does) are read
whole. Per-day counts of every date column are added up over the batches: with data.as_of
empty the end of the data is inferred from them, and the rows dated after it are then found in a
second pass over a date column, only when its dates reach that far.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import EVENT_TABLES, TABLES
from features.validation import (
    COMPLAINT_TIMES, EVENT_CHECKS, NO_DATES, NO_DAYS, DayCounts, KnownCustomers, Problem, add_day_counts,
    after_data_end, as_of_from_counts, check_complaint_times, check_customers, check_events, check_not_empty,
    column_problems, daily_counts, end_columns_of, label_column, late_rows, merge_found, unique_problems,
)
from pipelines.config import Config
from pipelines.tables import (
    BATCH_ROWS, STREAMED, ReadPlan, coerce_types, derived_columns, flag_dates, plan_read, raise_if_invalid,
    read_batches, read_whole, summary_time_column, table_summary,
)



@dataclass
class _Checked:
    """What the checks found in one table so far (batch by batch), and its summary."""

    plan: ReadPlan
    parsed: dict[Hashable, Problem] = field(default_factory=dict)
    columns: dict[Hashable, Problem] = field(default_factory=dict)
    events: dict[Hashable, Problem] = field(default_factory=dict)
    times: dict[Hashable, Problem] = field(default_factory=dict)
    """`check_complaint_times`."""
    rows: int = 0
    names: list[str] = field(default_factory=list)
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    days: dict[str, DayCounts] = field(default_factory=dict)
    """The `daily_counts` of every date column."""
    kept: dict[str, list[pd.Series]] = field(default_factory=dict)
    """Of a table read in batches: its unique columns (and `label_column`), batch by batch."""
    frame: pd.DataFrame | None = None
    """The whole table, when it is read whole (customers, CSV files)."""

    def summary(self) -> dict[str, object]:
        """This table's entry in the report's "tables" (as `summarise_tables` writes it)."""
        return table_summary(self.plan.name, self.rows, self.names, _or_nat(self.first), _or_nat(self.last))


def _or_nat(stamp: pd.Timestamp | None) -> pd.Timestamp:
    return pd.NaT if stamp is None else stamp


def check_tables(cfg: Config, batch_rows: int = BATCH_ROWS
                 ) -> tuple[dict[str, dict[str, object]], pd.Timestamp | None]:
    """The report's tables summary and the data's as-of date, or ValidationFailed listing every problem.

    The same problems, summary and as-of date as `load_tables(cfg)` and `summarise_tables`;
    `batch_rows`: rows per batch of the `STREAMED` tables.
    """
    configured = pd.Timestamp(cfg.data.as_of) if cfg.data.as_of else None
    problems: list[Problem] = []
    checked: dict[str, _Checked] = {}
    known: KnownCustomers | None = None
    for name in TABLES:
        source = cfg.data.tables.get(name)
        if source is None:
            continue
        plan, read_problems = plan_read(name, source, derived=derived_columns(cfg, name))
        problems += read_problems
        if plan is None:
            continue
        table = _Checked(plan)
        batches = _derived(cfg, name, read_batches(plan, batch_rows), problems)
        failed: Problem | None = None
        while True:
            try:  # only the reading: a check that fails is a bug, not the file's problem
                frame, first_row = next(batches)
            except StopIteration:
                break
            except Exception as error:  # noqa: BLE001 - any reader failure is the same user problem
                failed = plan.read_failed(error)
                break
            _check_batch(table, frame, first_row, known, configured)
        if failed is not None:
            problems.append(failed)
            continue
        merge_found(table.columns, unique_problems(_unique_columns(table), TABLES[name]))  # type: ignore[arg-type]
        table.kept.clear()
        problems += _sorted(table.parsed, [c.name for c in TABLES[name].columns].index)
        checked[name] = table
        customers = table.frame if name == "customers" else None
        if customers is not None and len(customers):
            known = KnownCustomers(customers)
    as_of = _as_of(checked, configured)
    if as_of is None and configured is None and checked:
        problems.append(Problem("customers", None, 0, NO_DATES, "set data.as_of in the config"))
    for name, table in checked.items():
        empty = check_not_empty(table.frame, TABLES[name]) if table.frame is not None else (
            [] if table.rows else check_not_empty(pd.DataFrame(), TABLES[name]))
        problems += empty or _sorted(table.columns, lambda key: key)
    customers = checked["customers"].frame if "customers" in checked else None
    if customers is not None and len(customers):
        problems += check_customers(customers, configured)
        for name, table in checked.items():
            if name in EVENT_TABLES and table.rows:
                problems += _sorted(table.events, EVENT_CHECKS.index)
        complaints = checked.get("complaints")
        if complaints is not None and complaints.rows:
            problems += _sorted(complaints.times, COMPLAINT_TIMES.index)
    if configured is None and as_of is not None:
        problems += _after_data_end(checked, as_of, batch_rows)
    raise_if_invalid(problems, "customers" in checked)
    summary = {name: table.summary() for name, table in checked.items()}
    summary["as_of"] = {"date": str(as_of)}
    return summary, as_of


def _derived(cfg: Config, name: str, batches: Iterator[tuple[pd.DataFrame, int]],
             problems: list[Problem]) -> Iterator[tuple[pd.DataFrame, int]]:
    """The batches with the columns `pipelines.tables.flag_dates` derives (the customers, read whole, under
    labels.churn_flag), its problems added to `problems`; any other table's batches as they come."""
    for frame, first_row in batches:
        frame, found = flag_dates(cfg, name, frame)
        problems += found
        yield frame, first_row


def _sorted(found: dict[Hashable, Problem], order: object) -> list[Problem]:
    """The merged problems of a table in the order one whole-table check reports them."""
    return [found[key] for key in sorted(found, key=order)]  # type: ignore[arg-type]


def _check_batch(table: _Checked, frame: pd.DataFrame, first_row: int, known: KnownCustomers | None,
                 configured: pd.Timestamp | None) -> None:
    """Every check of one batch of a table's rows, merged into what the batches before it found."""
    name = table.plan.name
    spec = TABLES[name]
    frame, parsed = coerce_types(frame, spec, first_row)
    merge_found(table.parsed, {p.column: p for p in parsed})
    whole = first_row == 0 and (name not in STREAMED or table.plan.fmt != "parquet")
    if len(frame):
        merge_found(table.columns, column_problems(frame, spec, first_row, unique=False))  # type: ignore[arg-type]
        if known is not None and name in EVENT_TABLES:
            merge_found(table.events, check_events(name, frame, known, configured, first_row))  # type: ignore[arg-type]
        if name == "complaints":
            merge_found(table.times, check_complaint_times(frame, first_row))  # type: ignore[arg-type]
    unique = [c.name for c in spec.columns if c.unique]
    if unique and not whole:
        for column in dict.fromkeys([*unique, label_column(name)]):
            if column in frame.columns:
                table.kept.setdefault(column, []).append(frame[column])
    table.rows += len(frame)
    table.names = list(map(str, frame.columns))
    time_column = summary_time_column(name)
    if time_column in frame.columns and len(frame):
        first, last = frame[time_column].min(), frame[time_column].max()
        if not pd.isna(first):
            table.first = first if table.first is None else min(table.first, first)
            table.last = last if table.last is None else max(table.last, last)
    for column in (c.name for c in spec.columns if c.kind == "datetime" and c.name in frame.columns):
        table.days[column] = add_day_counts(table.days.get(column, NO_DAYS), daily_counts(frame[column]))
    if whole:
        table.frame = frame


def _unique_columns(table: _Checked) -> pd.DataFrame:
    """What `unique_problems` looks at: the whole table, or the columns kept over its batches."""
    if table.frame is not None:
        return table.frame
    # Text columns (Arrow strings): concatenated without a copy, as one column of chunks.
    return pd.DataFrame({column: pd.concat(parts, ignore_index=True) for column, parts in table.kept.items()})


def _shapes(checked: dict[str, _Checked]) -> dict[str, tuple[int, list[str]]]:
    return {name: (table.rows, table.names) for name, table in checked.items()}


def _as_of(checked: dict[str, _Checked], configured: pd.Timestamp | None) -> pd.Timestamp | None:
    """The configured as-of date, else the one inferred from the batches' day counts (`data_as_of`)."""
    if configured is not None:
        return configured
    return as_of_from_counts(checked[table].days.get(column, NO_DAYS)
                             for table, column in end_columns_of(_shapes(checked)))


def _after_data_end(checked: dict[str, _Checked], as_of: pd.Timestamp, batch_rows: int) -> list[Problem]:
    """`check_after_data_end`: whole tables directly, streamed ones in a second pass over their dates."""
    as_of_day = int(np.datetime64(as_of, "D").astype(np.int64))

    def late(name: str, column: str, message: str, fix: str, severity: str = "error") -> Problem | None:
        table = checked[name]
        if table.frame is not None:
            return late_rows(table.frame, name, column, as_of, message, fix, severity)  # type: ignore[arg-type]
        days = table.days.get(column, NO_DAYS)[0]
        if not len(days) or days[-1] < as_of_day:
            return None  # no date on or after as_of: no need to read the column again
        spec = TABLES[name]
        wanted = [c for c in table.plan.wanted if table.plan.to_canonical.get(c) in (column, label_column(name))]
        found: dict[Hashable, Problem] = {}
        for frame, first_row in read_batches(dataclasses.replace(table.plan, wanted=wanted), batch_rows):
            frame, _ = coerce_types(frame, spec, first_row)
            problem = late_rows(frame, name, column, as_of, message, fix, severity, first_row)  # type: ignore[arg-type]
            merge_found(found, {column: problem} if problem is not None else {})
        return found.get(column)

    used = end_columns_of(_shapes(checked))
    return after_data_end(as_of, used, {name: table.names for name, table in checked.items()}, late)


"""Load the input tables named in the config: read, map columns, coerce types, validate.

Every stage calls `load_tables` first, so every stage runs the same validation. All
problems across all tables are collected before anything is raised, so a user sees the
whole list in one run.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

from features.build import transactions_read_from
from features.contract import EVENT_TABLES, TABLES, ColumnSpec, EarlierTransactions, Tables, TableSpec
from features.ids import IdSet, training_sample
from features.snapshot import with_flag_dates
from features.validation import (NO_DAYS, DayCounts, Detail, EarlyChecks, Problem, ValidationFailed, add_day_counts,
                                 check_early, daily_counts, describe_rows, end_of_data, merge_found, renumbered,
                                 validate_tables)
from pipelines.config import Config, TableSource
from pipelines.io import StageError

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("pipelines.tables")


def release_memory() -> None:
    """Hand the pages of freed buffers back to the system: Arrow's pool keeps them for reuse, and so does the C
    allocator (glibc's `malloc_trim`; elsewhere nothing). A stage calls it once its input tables are prepared and
    freed, before the features allocate in worker threads, whose allocator arenas would not reuse those pages
    (1M bank: 0.16 GB). Between batches of a read, Arrow's pool alone is released (the C heap is reused there)."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc (macOS, musl): Arrow's release only
        return None


_LIBC = _glibc()


def lean_arrow_memory() -> str:
    """Arrow allocates through jemalloc, giving freed pages back at once, unless the user chose a pool
    (ARROW_DEFAULT_MEMORY_POOL) or this pyarrow has no jemalloc (Windows); returns the pool in use.

    Loading the 1M bank's five tables (`load_tables`), alternated in fresh processes: peak 2.70-2.77 GB and
    2.32-2.42 GB held after, against 2.96-3.05 and 2.54-2.62 GB with pyarrow's default mimalloc, which keeps
    freed pages for reuse that pandas and numpy, allocating outside Arrow, never get."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ and "jemalloc" in pa.supported_memory_backends():
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
    return pa.default_memory_pool().backend_name


lean_arrow_memory()  # process-wide, once: every stage reads its tables through this module

DATETIME_UNIT = "datetime64[us]"
TEXT = pd.StringDtype("pyarrow", na_value=np.nan)
"""The "str" dtype every id, category and text column gets (Arrow large_string, NaN for missing)."""
UTF8_BOM = codecs.BOM_UTF8


PANDAS_BYTES_PER_ROW = 150
"""Peak memory of a stage that holds the input tables in pandas, per input row (measured on the pandas engine's
features stage: 6.76 GB for the 1M-customer bank's 51.0M rows, 133 bytes a row; the demo's 2.6M rows,
0.81 GB, 317 bytes with its fixed part)."""
PANDAS_MEMORY_SHARE = 0.5
"""The share of the machine's memory the input tables may fill in pandas (`features.pandas_max_rows` empty)."""
CSV_BYTES_PER_ROW = 60
"""A CSV input's rows, estimated from its size (a typical event line; no pass over the file)."""


CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
"""A container's memory limit (cgroup v2, then v1)."""


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its container's limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in CGROUP_MEMORY_LIMITS:
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():  # "max" (v2) is no limit; v1 writes a huge number for none, which `min` ignores
            return min(total, int(limit))
    return total


def input_rows(cfg: Config, names: Iterable[str] | None = None) -> int:
    """Rows of the input tables `names` (default all): Parquet's own count, a CSV's estimated from its size."""
    rows = 0
    for name in (cfg.data.tables if names is None else names):
        source = cfg.data.tables.get(name)
        if source is None or not source.path.is_file():
            continue
        if table_format(source) == "parquet":
            rows += pq.read_metadata(source.path).num_rows
        else:
            rows += source.path.stat().st_size // CSV_BYTES_PER_ROW
    return rows


def held_rows(cfg: Config, names: Iterable[str] | None = None, transactions_from: TransactionsFrom | None = None
              ) -> tuple[int, str]:
    """The input rows a stage holds in pandas, and which when not all ("" when all): every row of the tables
    `names` (default all), except that a stage reading the transactions from `transactions_from(end of the
    data)` on (`churn score`: `load_tables(transactions_from=...)`) holds only those. Counted only when every
    row would be above `pandas_row_limit` (one DuckDB pass over the transactions' dates, which `recent_read`
    then reuses)."""
    names = list(cfg.data.tables if names is None else names)
    rows = input_rows(cfg, names)
    if transactions_from is None or "transactions" not in names or rows <= pandas_row_limit(cfg)[0]:
        return rows, ""
    read = transactions_held(cfg, transactions_from)
    if read is None:
        return rows, ""
    held, total, since = read
    return rows - total + held, f"the transactions dated from {since.date()} on: {held:,} of {total:,}"


def transactions_held(cfg: Config, transactions_from: TransactionsFrom) -> tuple[int, int, pd.Timestamp] | None:
    """(rows read, rows in the file, from when) of a stage reading the transactions from
    `transactions_from(end)` on (`recent_read`): from the file's daily counts and the end they give
    (data.as_of, else the transactions' own; another table running later only moves the start later, so this
    is at most what is read). None when every row is read (not a Parquet file `recent_read_possible` reads
    in part, or no start)."""
    source = cfg.data.tables.get("transactions")
    if source is None or not source.path.is_file():
        return None
    plan, _ = plan_read("transactions", source)
    if plan is None or not recent_read_possible(plan):
        return None
    try:
        with _duckdb(cfg) as con:
            rows, (days, counts) = _day_counts(con, plan.path, plan.file_names["timestamp"])
        end = (pd.Timestamp(cfg.data.as_of) if cfg.data.as_of is not None
               else end_of_data({}, {"transactions": (rows, (days, counts))}))
    except Exception:  # noqa: BLE001 - a file DuckDB cannot count: the whole table is what the stage may hold
        return None
    since = transactions_from(end)
    if since is None:
        return None
    first_day = (since - pd.Timestamp("1970-01-01")) // pd.Timedelta(days=1)
    return rows - int(counts[days < first_day].sum()), rows, since  # undated rows are read (and reported)


def pandas_row_limit(cfg: Config) -> tuple[int, str]:
    """The most input rows held in pandas (`features.pandas_max_rows`, else what `PANDAS_MEMORY_SHARE` of
    this machine's memory holds at `PANDAS_BYTES_PER_ROW`), and where the figure comes from."""
    if cfg.features.pandas_max_rows is not None:
        return cfg.features.pandas_max_rows, "features.pandas_max_rows"
    memory = machine_memory()
    return (int(memory * PANDAS_MEMORY_SHARE) // PANDAS_BYTES_PER_ROW,
            f"half of this machine's {memory / 2**30:.1f} GiB at about {PANDAS_BYTES_PER_ROW} bytes a row; "
            "features.pandas_max_rows sets it")


def check_fits_in_memory(cfg: Config, names: Iterable[str], transactions_from: TransactionsFrom | None = None) -> None:
    """Refuse (StageError, exit 4) to load tables whose rows exceed `pandas_row_limit`, before reading
    anything: the kernel would kill the stage for memory, silently, part way. `transactions_from`: the
    stage reads the transactions from then on only (`held_rows`)."""
    names = [n for n in names if n in cfg.data.tables]
    rows, what = held_rows(cfg, names, transactions_from)
    limit, source = pandas_row_limit(cfg)
    if rows > limit:
        which = f"; {what}" if what else ""
        raise StageError(
            f"this command holds the tables {', '.join(names)} in memory (pandas): their rows (about {rows:,}{which}) need about "
            f"{rows * PANDAS_BYTES_PER_ROW / 1e9:.0f} GB, above {limit:,} rows ({source}); nothing was read or "
            "written. `churn features`, `churn score` and `churn effects` read files this size out of core with "
            "features.engine auto or duckdb (after `churn validate`); raise features.pandas_max_rows if this "
            "machine has the memory")


def table_format(source: TableSource) -> str:
    """csv or parquet, from the config or the file suffix."""
    if source.format:
        return source.format
    suffix = source.path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt"):
        return "csv"
    return "unknown"


def check_encoding(path: Path, table: str) -> tuple[list[Problem], bool]:
    """Non-UTF-8 bytes are an error; a UTF-8 byte-order mark is accepted with a warning."""
    problems: list[Problem] = []
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    has_bom = False
    with open(path, "rb") as handle:
        first = True
        for block in iter(lambda: handle.read(1 << 22), b""):
            if first:
                has_bom = block.startswith(UTF8_BOM)
                first = False
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                position = offset + error.start
                line = _line_of(path, position)
                problems.append(Problem(
                    table, None, 0,
                    f"{path} is not UTF-8 text (first bad byte at offset {position:,}, line {line})",
                    "re-save the file as UTF-8 (e.g. in Excel: Save As > CSV UTF-8; or "
                    "`iconv -f cp1252 -t utf-8`)",
                ))
                return problems, has_bom
            offset += len(block)
    if has_bom:
        problems.append(Problem(
            table, None, 0, f"{path} starts with a UTF-8 byte-order mark (BOM); it was ignored",
            "nothing needed; to silence this, save as UTF-8 without BOM", severity="warning",
        ))
    return problems, has_bom


def _line_of(path: Path, position: int) -> int:
    with open(path, "rb") as handle:
        return handle.read(position).count(b"\n") + 1


def _file_columns(path: Path, fmt: str, has_bom: bool) -> list[str]:
    if fmt == "parquet":
        return list(pq.read_schema(path).names)
    with open(path, encoding="utf-8-sig" if has_bom else "utf-8") as handle:
        header = handle.readline()
    return list(pd.read_csv(pd.io.common.StringIO(header), nrows=0).columns)


@dataclass(frozen=True)
class ReadPlan:
    """What to read of one input file, once its header has been checked (`plan_read`)."""

    name: str
    path: Path
    fmt: str
    has_bom: bool
    wanted: list[str]
    to_canonical: dict[str, str]

    @property
    def file_names(self) -> dict[str, str]:
        """Contract column -> its column in the file, for the columns read."""
        return {canonical: file for file, canonical in self.to_canonical.items() if file in self.wanted}

    @property
    def kinds(self) -> dict[str, str]:
        """The contract kind of each file column that maps to a contract column."""
        spec = TABLES[self.name]
        return {file: spec.column(canonical).kind for file, canonical in self.to_canonical.items()}

    def read_failed(self, error: Exception) -> Problem:
        """The problem a reader's failure is reported as."""
        if self.fmt == "csv" and "straddles two block boundaries" in str(error):
            return Problem(
                self.name, None, 0, f"cannot read {self.path} as csv: one record is longer than the CSV reader's "
                "block (1 MB) (pyarrow: straddling object straddles two block boundaries)",
                "look for a double quote that is never closed (the rest of the file then reads as one "
                "value) or a multi-megabyte value such as pasted text; close the quote, shorten the value, "
                "or save the table as Parquet")
        return Problem(self.name, None, 0, f"cannot read {self.path} as {self.fmt}: {error}",
                       f"check the file is a valid {self.fmt} file")


def read_table(name: str, source: TableSource, only: tuple[str, ...] | None = None,
               derived: tuple[str, ...] = ()) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read one table into canonical column names, every value still as stored.

    `only`: these canonical columns and no others (a stage that needs a table's dates alone);
    `derived`: as `plan_read`'s.
    """
    plan, problems = plan_read(name, source, only, derived)
    if plan is None:
        return None, problems
    try:
        frame = read_whole(plan)
    except Exception as error:  # noqa: BLE001 - any reader failure is the same user problem
        return None, problems + [plan.read_failed(error)]
    return frame, problems


BATCH_ROWS = 1 << 20
"""Rows per batch of a table read in batches (a million transactions hold about 100 MB in pandas)."""
STREAMED = EVENT_TABLES
"""The tables read in batches (from Parquet) by `churn validate`, and for their dates alone by the other
stages (`event_days`): every check on them but uniqueness looks at one row at a time."""


def read_batches(plan: ReadPlan, rows: int) -> Iterator[tuple[pd.DataFrame, int]]:
    """The planned columns of a table as (frame, file position of its first row): in batches of `rows`
    for the `STREAMED` tables in Parquet, else the whole table at once."""
    if plan.fmt != "parquet" or plan.name not in STREAMED:
        yield read_whole(plan), 0
        return
    kinds = plan.kinds
    dictionary = dictionary_columns(pq.read_schema(plan.path), plan.wanted, kinds)
    # pre_buffer (pyarrow's default) keeps every row group's buffers until the end of the file:
    # memory would grow with the rows read (0.48 GB more over 46M transactions, pyarrow 25).
    parquet = pq.ParquetFile(plan.path, read_dictionary=dictionary or None, pre_buffer=False)
    first_row = 0
    batches = parquet.iter_batches(batch_size=rows, columns=plan.wanted, use_pandas_metadata=True)
    empty = True
    for batch in batches:
        empty = False
        table = pandas_ready(pa.Table.from_batches([batch]), plan.wanted, kinds)
        del batch
        frame = table.to_pandas(split_blocks=True, self_destruct=True).rename(columns=plan.to_canonical)
        del table
        yield frame, first_row
        first_row += len(frame)
        del frame
        pa.default_memory_pool().release_unused()
    if empty:  # no row groups: the columns still say what the whole table's would
        table = parquet.schema_arrow.empty_table().select(plan.wanted)
        yield pandas_ready(table, plan.wanted, kinds).to_pandas().rename(columns=plan.to_canonical), 0


def event_days(name: str, source: TableSource, column: str
               ) -> tuple[tuple[int, DayCounts] | None, list[Problem]]:
    """A table a stage does not use, as its row count and the `daily_counts` of its event-time `column`
    (None when it cannot be read), and the problems found reading and typing that column.

    Read in batches (`read_batches`), so the end of the data is inferred as every stage infers it
    without holding the column: 459M transaction times at 10M customers are 3.7 GB, about twice that
    while typed.
    """
    plan, problems = plan_read(name, source, (column,))
    if plan is None:
        return None, problems
    counted, _, found = _count_batches(plan, BATCH_ROWS)
    return counted, problems + found


def _count_batches(plan: ReadPlan, batch_rows: int, kept_ids: pd.Series | None = None
                   ) -> tuple[tuple[int, DayCounts] | None, list[pd.DataFrame], list[Problem]]:
    """A planned event table read in batches and typed: its row count and the `daily_counts` of its event
    time over every row (None when it cannot be read), the typed rows of the `kept_ids` customers per
    batch (none without them), and the problems (each column's parse problem once, counted over batches)."""
    spec = TABLES[plan.name]
    found: dict[object, Problem] = {}
    parts: list[pd.DataFrame] = []
    days, rows = NO_DAYS, 0
    kept = IdSet(kept_ids) if kept_ids is not None else None
    try:
        for frame, first_row in read_batches(plan, batch_rows):
            typed, parsed = coerce_types(frame, spec, first_row)
            del frame
            merge_found(found, {p.column: p for p in parsed})  # type: ignore[arg-type]
            if spec.event_time in typed.columns:
                days = add_day_counts(days, daily_counts(typed[spec.event_time]))
            rows += len(typed)
            if kept is not None:
                parts.append(typed[kept.contains(typed["customer_id"])])
    except Exception as error:  # noqa: BLE001 - any reader failure is the same user problem
        return None, [], [plan.read_failed(error)]
    return (rows, days), parts, list(found.values())


def read_whole(plan: ReadPlan) -> pd.DataFrame:
    """The planned columns of the whole file, in canonical names."""
    if plan.fmt == "parquet":
        frame = _read_parquet(plan.path, plan.wanted, plan.kinds)
    else:
        frame = pd.read_csv(plan.path, dtype=str, usecols=plan.wanted, engine="pyarrow", encoding="utf-8")
        if plan.has_bom:
            frame = frame.rename(columns={frame.columns[0]: frame.columns[0].lstrip("\ufeff")})
    return frame.rename(columns=plan.to_canonical)


def plan_read(name: str, source: TableSource, only: tuple[str, ...] | None = None,
              derived: tuple[str, ...] = ()) -> tuple[ReadPlan | None, list[Problem]]:
    """Check that one input file exists, has a known format, readable text and the required columns;
    say which of its columns to read (None, with the problems, when it cannot be read).

    `derived`: required contract columns the pipeline derives when the file lacks them (`derived_columns`)."""
    spec = TABLES[name]
    path = source.path
    if not path.is_file():
        return None, [Problem(name, None, 0, f"file {path} does not exist",
                              f"check data.tables.{name}.path in the config (paths are relative to "
                              "the folder you run from)")]
    fmt = table_format(source)
    if fmt == "unknown":
        return None, [Problem(name, None, 0, f"cannot tell the format of {path}",
                              f"use a .csv or .parquet file, or set data.tables.{name}.format")]
    problems: list[Problem] = []
    has_bom = False
    if fmt == "csv":
        problems, has_bom = check_encoding(path, name)
        if any(p.severity == "error" for p in problems):
            return None, problems
    try:
        file_columns = _file_columns(path, fmt, has_bom)
    except Exception as error:  # noqa: BLE001 - any reader failure is the same user problem
        return None, problems + [Problem(name, None, 0, f"cannot read {path} as {fmt}: {error}",
                                         f"check the file is a valid {fmt} file")]
    to_canonical = {source.columns.get(c.name, c.name): c.name for c in spec.columns}
    missing = [f"{c.name} (looked for '{source.columns.get(c.name, c.name)}')"
               for c in spec.columns if c.required and c.name not in derived
               and source.columns.get(c.name, c.name) not in file_columns]
    if missing:
        return None, problems + [Problem(
            name, None, 0, f"missing required column(s): {', '.join(missing)}; the file has {file_columns[:12]}",
            f"rename the column(s) in the file or map them in data.tables.{name}.columns")]
    wanted = [c for c in file_columns if c in to_canonical or spec.extra_columns_allowed]
    if only is not None:  # an extra column (a customers attribute) keeps its file name
        wanted = [c for c in wanted if to_canonical.get(c, c) in only]
    return ReadPlan(name, path, fmt, has_bom, wanted, to_canonical), problems


def _read_parquet(path: Path, wanted: list[str], kinds: dict[str, str]) -> pd.DataFrame:
    """The `wanted` columns of a Parquet file as pandas, values as stored, ready for `coerce_types`.

    Faster and leaner than `pd.read_parquet` on big tables: contract category columns are
    read as Arrow dictionaries and arrive as pandas categoricals (parsing tens of millions
    of repeated short strings was most of the read time, and holding them as strings most
    of the memory); id and text dictionaries become strings and naive second/millisecond
    timestamps microsecond ones in Arrow, so `coerce_types` has nothing left to copy.
    `self_destruct` frees each Arrow column once pandas holds it. Index columns stored in
    the pandas metadata are restored as `pd.read_parquet` does.
    """
    dictionary = dictionary_columns(pq.read_schema(path), wanted, kinds)
    # without pre_buffer: pyarrow would hold column chunks' compressed bytes while it decodes (46M transactions,
    # alternated runs: peak 2.7-3.1 GB without, 2.9-3.4 GB with; no faster with)
    table = pq.read_table(path, columns=wanted, read_dictionary=dictionary or None, use_pandas_metadata=True,
                          pre_buffer=False)
    table = pandas_ready(table, wanted, kinds)  # the file's own table dropped: `to_pandas` can free each column
    return table.to_pandas(split_blocks=True, self_destruct=True)


def dictionary_columns(schema: pa.Schema, wanted: list[str], kinds: dict[str, str]) -> list[str]:
    """The text columns of the contract's category kind: read as Arrow dictionaries (`_read_parquet`)."""
    return [c for c in wanted if kinds.get(c) == "category" and _is_text(schema.field(c).type)]


def pandas_ready(table: pa.Table, wanted: list[str], kinds: dict[str, str]) -> pa.Table:
    """The per-column conversions of `_read_parquet`, on a whole file or one batch of its rows.

    Convert the result with `to_pandas(split_blocks=True, self_destruct=True)` holding no other
    reference to `table`: each column's buffers are then freed as pandas takes it (a reference
    kept to the table read from the file kept all of them, ~1 GB more at the peak of reading 46M
    transactions)."""
    for name in wanted:
        index = table.schema.get_field_index(name)
        column = table.column(index)
        kind = kinds.get(name)
        if (kind in ("id", "text") and pa.types.is_dictionary(column.type)
                and _is_text(column.type.value_type)):
            column = pc.cast(column, pa.large_string())
        elif (kind == "datetime" and pa.types.is_timestamp(column.type) and column.type.tz is None
              and column.type.unit in ("s", "ms")):
            column = column.cast(pa.timestamp("us"))
        else:
            continue
        table = table.set_column(index, pa.field(name, column.type), column)
    return table


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def coerce_types(frame: pd.DataFrame, spec: TableSpec,
                 first_row: int = 0) -> tuple[pd.DataFrame, list[Problem]]:
    """Give every contract column its type; values that cannot be parsed become problems.

    `first_row`: the file position of the frame's first row (a batch of a table read in parts)."""
    problems: list[Problem] = []
    columns: dict[str, pd.Series] = {}
    for col in spec.columns:
        if col.name not in frame.columns:
            continue
        converted, bad = _coerce(frame[col.name], col)
        columns[col.name] = converted
        if bad is not None and bad.any():
            rows, examples = describe_rows(frame, bad, spec.name, first_row)
            detail = Detail(functools.partial(_unparseable, col), tuple(frame[col.name][bad].head(3).tolist()))
            message, fix = _unparseable(col, detail)
            problems.append(Problem(spec.name, col.name, rows, message, fix, examples, detail=detail))
    return frame.assign(**columns), problems


def _unparseable(col: ColumnSpec, detail: Detail) -> tuple[str, str]:
    """The message (showing the first bad values) and fix for values of `col` that are not its type."""
    return f"values that are not {_kind_word(col)} (e.g. {list(detail.values)})", _parse_fix(col)


def _kind_word(col: ColumnSpec) -> str:
    return {"datetime": "dates", "float": "numbers", "int": "whole numbers"}.get(col.kind, col.kind)


def _parse_fix(col: ColumnSpec) -> str:
    if col.kind == "datetime":
        return "write dates as ISO 8601 (2024-03-31 or 2024-03-31 14:05:00); leave empty if unknown"
    return "write plain numbers with a dot as decimal separator and no currency symbols"


def _coerce(series: pd.Series, col: ColumnSpec) -> tuple[pd.Series, np.ndarray | None]:
    if col.kind in ("id", "text") and series.dtype == TEXT:
        return series, None  # already text with NaN for missing: nothing to convert or copy
    if col.kind == "id":
        if pd.api.types.is_string_dtype(series):
            return series.astype("str"), None
        text = series.astype("str").where(series.notna())
        return text, None
    if col.kind == "category":
        return _as_category(series), None
    if col.kind == "text":
        return series.astype("str").where(series.notna()), None
    if col.kind == "datetime":
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            return series.dt.tz_convert("UTC").dt.tz_localize(None).astype(DATETIME_UNIT), None
        if pd.api.types.is_datetime64_dtype(series):
            return series.astype(DATETIME_UNIT), None
        parsed = pd.to_datetime(series, format="ISO8601", errors="coerce", utc=True)
        parsed = parsed.dt.tz_localize(None).astype(DATETIME_UNIT)
        bad = (series.notna() & parsed.isna()).to_numpy(dtype=bool)
        return parsed, bad
    # numbers
    if pd.api.types.is_bool_dtype(series):
        series = series.astype("float64")
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64"), None
    parsed = pd.to_numeric(series, errors="coerce").astype("float64")
    bad = (series.notna() & parsed.isna()).to_numpy(dtype=bool)
    return parsed, bad


def _as_category(series: pd.Series) -> pd.Series:
    """A category column as a pandas categorical of its text values: sorted, only those that occur.

    Codes instead of one string per row: on tens of millions of transactions this is a
    tenth of the memory. Values, missing values, text conversions and sorting are the
    same as for the plain text column.
    """
    if not (isinstance(series.dtype, pd.CategoricalDtype)
            and all(isinstance(c, str) for c in series.cat.categories)):
        series = series.astype("str").where(series.notna()).astype("category")
    categories = series.cat.categories
    codes = series.cat.codes.to_numpy()
    used = _used_codes(codes, len(categories))
    kept = pd.Index(categories[used], dtype=TEXT)
    ordered = kept.sort_values()
    if (not series.cat.ordered and used.all() and ordered.equals(kept)
            and categories.dtype == TEXT):
        return series
    new_code = np.full(len(categories) + 1, -1, dtype=np.int64)  # last entry: code -1 stays -1
    new_code[np.flatnonzero(used)] = ordered.get_indexer(kept)
    dtype = pd.CategoricalDtype(ordered, ordered=False)
    recoded = new_code.astype(np.int8 if len(ordered) < 127 else np.int16 if len(ordered) < 32767 else np.int32)[codes]
    return pd.Series(pd.Categorical.from_codes(recoded, dtype=dtype, validate=False),
                     index=series.index, name=series.name)


def _used_codes(codes: np.ndarray, n_categories: int) -> np.ndarray:
    """Which of the categories occur (codes of -1 are missing values), counted in chunks."""
    used = np.zeros(n_categories + 1, dtype=bool)
    for start in range(0, len(codes), 1 << 22):
        used |= np.bincount(codes[start:start + (1 << 22)].astype(np.intp) + 1, minlength=n_categories + 1) > 0
    return used[1:]


def read_and_check(cfg: Config, needs: frozenset[str] | None = None
                   ) -> tuple[dict[str, pd.DataFrame], pd.Timestamp | None, list[Problem]]:
    """The tables read and typed, the data's as-of date, and every problem found.

    `needs`: the tables a stage uses (None: all). The others are not read; when data.as_of is
    empty, an event table among them is read as its event-time column alone, so the inferred
    end of the data (and every window that ends there) is the same in every stage.
    """
    frames, as_of, problems, _ = _read_and_check(cfg, needs)
    return frames, as_of, problems


TransactionsFrom = Callable[[pd.Timestamp], "pd.Timestamp | None"]
"""Given the end of the data, the earliest transaction time a stage reads in full (None: every row)."""


def scoring_read_from(data_end: pd.Timestamp, as_of: str | pd.Timestamp | None, cfg: Config) -> pd.Timestamp | None:
    """The earliest transaction time the scoring cutoff's features read (`transactions_read_from`): the cutoff is
    `as_of` when given, else the end of the data."""
    return transactions_read_from(pd.Timestamp(as_of) if as_of is not None else data_end, cfg.features, cfg.labels)


def _read_and_check(cfg: Config, needs: frozenset[str] | None = None, transactions_from: TransactionsFrom | None = None,
                    columns: Mapping[str, tuple[str, ...]] | None = None
                    ) -> tuple[dict[str, pd.DataFrame], pd.Timestamp | None, list[Problem], EarlierTransactions | None]:
    """`read_and_check`, and with `transactions_from` the transactions from that time on only
    (`start_recent_read`, `finish_recent_read`), with the summary of the earlier ones (None when the whole table
    was read); `columns` as `load_tables`'."""
    columns = columns or {}
    frames: dict[str, pd.DataFrame] = {}
    dates_only: dict[str, tuple[int, DayCounts]] = {}
    problems: list[Problem] = []
    recent: tuple[ReadPlan, Future[RecentRead]] | None = None
    for name in TABLES:
        source = cfg.data.tables.get(name)
        if source is None:
            continue
        if name == "transactions" and transactions_from is not None and (needs is None or name in needs):
            plan, plan_problems = plan_read(name, source, columns.get(name))
            if plan is not None and recent_read_possible(plan):
                problems += plan_problems
                # read beside the other tables, from the end its own dates give; checked against the end
                # they all give below (`finish_recent_read`)
                recent = plan, start_recent_read(cfg, plan, transactions_from)
                continue
        if needs is not None and name not in needs:
            event_time = TABLES[name].event_time
            if cfg.data.as_of is not None or event_time is None:
                continue
            counted, read_problems = event_days(name, source, event_time)
            problems += read_problems
            if counted is not None:
                dates_only[name] = counted
            continue
        frame, read_problems = read_table(name, source, columns.get(name), derived=derived_columns(cfg, name))
        # the reader's freed buffers back to the system before the next step: on 46M transactions
        # they are ~1 GB, which every later step would otherwise stack on top of
        pa.default_memory_pool().release_unused()
        problems += read_problems
        if frame is None:
            continue
        frame, flag_problems = flag_dates(cfg, name, frame)  # before typing, as `churn validate` derives them
        problems += flag_problems
        frame, parse_problems = coerce_types(frame, TABLES[name])
        problems += parse_problems
        frames[name] = frame
    earlier: EarlierTransactions | None = None
    configured_as_of = pd.Timestamp(cfg.data.as_of) if cfg.data.as_of else None
    early: EarlyChecks | None = None
    if recent is not None:
        # the other tables' checks while the transactions are still being read (`validate_tables` reuses them)
        early = check_early(frames, configured_as_of)
        frame, earlier, kept, read_problems = finish_recent_read(cfg, *recent, frames, dates_only,
                                                                 transactions_from)  # type: ignore[arg-type]
        problems += read_problems
        if frame is not None:
            frames = {name: frame if name == "transactions" else frames[name] for name in TABLES
                      if name in frames or name == "transactions"}
    as_of: pd.Timestamp | None = None
    try:
        if cfg.data.as_of is not None:
            as_of = pd.Timestamp(cfg.data.as_of)
        elif frames or dates_only:
            as_of = end_of_data(frames, dates_only)
    except ValueError as error:
        problems.append(Problem("customers", None, 0, str(error), "set data.as_of in the config"))
    problems += validate_tables(frames, configured_as_of, dates_only, inferred_end=as_of, early=early)
    if earlier is not None:  # the problems found in the rows read: their row numbers the file's, and which rows
        note = (f"(among the transactions dated from {earlier.since.date()} on, the rows this stage reads; "
                "`churn validate` checks every row)")
        problems = [renumbered(p, kept.file_row, note) if p.table == "transactions" and kept is not None else p
                    for p in problems]
    # Arrow keeps the pages of its freed read buffers for reuse, but what comes next (the
    # feature build, the models) allocates through numpy: hand them back (~0.4 GB on 46M rows).
    pa.default_memory_pool().release_unused()
    return frames, as_of, problems, earlier


def recent_read_possible(plan: ReadPlan) -> bool:
    """Whether only the recent rows of this transactions file can be read: a Parquet file whose event time
    is stored as a date or a time without a time zone (comparable to the cutoff as written) and whose
    customer ids are text or whole numbers. Otherwise the stage reads every row, as before."""
    if plan.fmt != "parquet":
        return False
    try:
        schema = pq.read_schema(plan.path)
    except Exception:  # noqa: BLE001 - the whole read reports what is wrong with the file
        return False
    files = plan.file_names
    if "timestamp" not in files or "customer_id" not in files:
        return False
    time_type = schema.field(files["timestamp"]).type
    id_type = schema.field(files["customer_id"]).type
    times_ok = pa.types.is_date(time_type) or (pa.types.is_timestamp(time_type) and time_type.tz is None)
    ids_ok = _is_text(id_type) or pa.types.is_integer(id_type)
    return times_ok and ids_ok


@dataclass
class RecentRead:
    """The transactions as read from `since` on (None: every row), with what the read needs besides."""

    days: tuple[int, DayCounts] | None  # the row count and daily counts of every row (data.as_of empty)
    since: pd.Timestamp | None
    earlier: pd.DataFrame | None  # `EarlierTransactions.customers` (with a `since`)
    frame: pd.DataFrame  # the rows read, as stored
    kept: KeptRows | None  # which file rows they are (with a `since`)


def start_recent_read(cfg: Config, plan: ReadPlan, transactions_from: TransactionsFrom) -> Future[RecentRead]:
    """`recent_read` in a background thread, from the end of the data the transactions' own dates give (the
    usual end; `finish_recent_read` checks it against every table's), while the caller reads the other tables."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="recent-transactions")
    future = pool.submit(recent_read, cfg, plan, transactions_from)
    pool.shutdown(wait=False)
    return future


def recent_read(cfg: Config, plan: ReadPlan, transactions_from: TransactionsFrom, fixed: bool = False,
                since: pd.Timestamp | None = None) -> RecentRead:
    """The transactions from `transactions_from(end)` on (`fixed`: from `since`, None = every row), where the
    end is data.as_of or, when empty, the end the transactions' dates alone give (their daily counts by DuckDB
    from the file, as `event_days` counts them); each customer's first and latest earlier time (one DuckDB
    query over the file's two columns); the rows read a row group at a time, groups wholly before the start
    skipped by their statistics."""
    time_file, id_file = plan.file_names["timestamp"], plan.file_names["customer_id"]
    days: tuple[int, DayCounts] | None = None
    earlier: pd.DataFrame | None = None
    with _duckdb(cfg) as con:  # closed before the rows are read: its memory is not held beside them
        if cfg.data.as_of is None and not fixed:
            days = _day_counts(con, plan.path, time_file)
        if not fixed:
            try:
                end = pd.Timestamp(cfg.data.as_of) if cfg.data.as_of is not None else end_of_data(
                    {}, {"transactions": days})  # type: ignore[dict-item]
            except ValueError:
                end = None
            since = transactions_from(end) if end is not None else None
        if since is not None:
            earlier = _earlier_customers(con, plan.path, id_file, time_file, since)
    if since is None:
        return RecentRead(days, None, None, read_whole(plan), None)
    frame, kept = _read_parquet_since(plan, time_file, since)
    return RecentRead(days, since, earlier, frame, kept)


def finish_recent_read(cfg: Config, plan: ReadPlan, started: Future[RecentRead], frames: dict[str, pd.DataFrame],
                       dates_only: dict[str, tuple[int, DayCounts]], transactions_from: TransactionsFrom
                       ) -> tuple[pd.DataFrame | None, EarlierTransactions | None, KeptRows | None, list[Problem]]:
    """The transactions from `transactions_from(end of the data)` on, typed; each customer's first and latest
    earlier time (`EarlierTransactions`; None when every row was read); which file rows were read; and the
    problems found in them. The end comes from every table (`frames`, `dates_only` and every transaction's
    date), as when the whole table is read; when it is not the one the background read started from (another
    table runs later than the transactions), the rows are read again from the right start."""
    try:
        read = started.result()
        if cfg.data.as_of is None:
            dates_only["transactions"] = read.days  # type: ignore[assignment]
        try:
            end = pd.Timestamp(cfg.data.as_of) if cfg.data.as_of is not None else end_of_data(frames, dates_only)
        except ValueError:
            end = None
        since = transactions_from(end) if end is not None else None
        if since != read.since:
            del read
            read = recent_read(cfg, plan, transactions_from, fixed=True, since=since)
    except Exception as error:  # noqa: BLE001 - e.g. a file DuckDB reads differently: read every row, as before
        log.debug("transactions: the recent read failed (%s); reading every row", error)
        dates_only.pop("transactions", None)
        try:
            read = RecentRead(None, None, None, read_whole(plan), None)
        except Exception as whole_error:  # noqa: BLE001 - any reader failure is the same user problem
            return None, None, None, [plan.read_failed(whole_error)]
    pa.default_memory_pool().release_unused()
    frame, problems = coerce_types(read.frame, TABLES["transactions"])
    if read.since is None:
        return frame, None, None, problems
    earlier = EarlierTransactions(read.since, read.earlier,  # type: ignore[arg-type]
                                  pq.ParquetFile(plan.path).metadata.num_rows - len(frame))
    return frame, earlier, read.kept, problems


@contextlib.contextmanager
def _duckdb(cfg: Config) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with the configured resources (`features.duckdb`), closed after use."""
    settings = cfg.features.duckdb
    config: dict[str, object] = {}
    if settings.threads is not None:
        config["threads"] = settings.threads
    if settings.memory_limit is not None:
        config["memory_limit"] = settings.memory_limit
    import duckdb

    con = duckdb.connect(config=config)
    try:
        yield con
    finally:
        con.close()


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


_COUNTED: dict[tuple[str, int, int, str], tuple[int, DayCounts]] = {}
"""`_day_counts` of the files this process counted, by (path, modification time, size, column): a stage that
sizes its read first (`transactions_held`) and then reads (`recent_read`) counts a file once (8 s at 10M)."""


def _day_counts(con: duckdb.DuckDBPyConnection, path: Path, time_file: str) -> tuple[int, DayCounts]:
    """The file's row count and the `daily_counts` of its event time (days since 1970-01-01, ascending)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, time_file)
    if key not in _COUNTED:
        _COUNTED.clear()  # one file at a time is all a stage asks twice
        _COUNTED[key] = _count_days(con, path, time_file)
    return _COUNTED[key]


def _count_days(con: duckdb.DuckDBPyConnection, path: Path, time_file: str) -> tuple[int, DayCounts]:
    column = _quoted(time_file)
    days = con.execute(f"SELECT CAST(CAST({column} AS DATE) - DATE '1970-01-01' AS BIGINT) AS day, count(*) AS n "
                       f"FROM read_parquet(?) WHERE {column} IS NOT NULL GROUP BY 1 ORDER BY 1",
                       [str(path)]).fetchnumpy()
    rows = pq.ParquetFile(path).metadata.num_rows
    counted = np.array(days["day"], dtype=np.int64), np.array(days["n"], dtype=np.int64)
    for array in counted:  # shared by the callers `_day_counts` hands them to
        array.setflags(write=False)
    return rows, counted


def _earlier_customers(con: duckdb.DuckDBPyConnection, path: Path, id_file: str, time_file: str,
                       since: pd.Timestamp) -> pd.DataFrame:
    """Per customer id with rows dated before `since`: the first and the latest of those times (in no
    particular order: they are read by customer)."""
    ids, times = _quoted(id_file), _quoted(time_file)
    frame = con.execute(f"SELECT {ids} AS customer_id, CAST(min({times}) AS TIMESTAMP) AS first, "
                        f"CAST(max({times}) AS TIMESTAMP) AS latest FROM read_parquet(?) "
                        f"WHERE {times} < ? AND {ids} IS NOT NULL GROUP BY 1",
                        [str(path), since.to_pydatetime()]).df()
    typed, _ = coerce_types(frame[["customer_id"]], TABLES["transactions"])
    return pd.DataFrame({"customer_id": typed["customer_id"], "first": frame["first"].astype(DATETIME_UNIT),
                         "latest": frame["latest"].astype(DATETIME_UNIT)})


def _read_parquet_since(plan: ReadPlan, time_file: str, since: pd.Timestamp) -> tuple[pd.DataFrame, "KeptRows"]:
    """`_read_parquet` of the rows dated from `since` on (and the undated ones), in file order, a row group
    at a time: a group whose statistics put every row before `since` is skipped unread. Also which file
    rows they are (`KeptRows`), for the row numbers of any problem found in them."""
    kinds = plan.kinds
    dictionary = dictionary_columns(pq.read_schema(plan.path), plan.wanted, kinds)
    parquet = pq.ParquetFile(plan.path, read_dictionary=dictionary or None, pre_buffer=False)
    leaf = [i for i in range(parquet.metadata.num_columns)
            if parquet.metadata.schema.column(i).path == time_file][0]
    time_type = parquet.schema_arrow.field(time_file).type
    bound = pa.scalar(since.date() if pa.types.is_date(time_type) else since.to_pydatetime(), type=time_type)
    parts: list[pa.Table] = []
    kept = KeptRows()
    file_row = 0
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        side = _side_of(parquet.metadata.row_group(group).column(leaf).statistics, bound)
        if side == "before":
            file_row += rows
            continue
        table = parquet.read_row_group(group, columns=plan.wanted, use_pandas_metadata=True)
        if side == "from":
            kept.add(file_row, None, table.num_rows)
        else:
            mask = pc.fill_null(pc.greater_equal(table.column(time_file), bound), True)  # undated rows: read, reported
            table = table.filter(mask)
            kept.add(file_row, np.flatnonzero(mask.to_numpy(zero_copy_only=False)), table.num_rows)
        parts.append(table)
        file_row += rows
    table = (pa.concat_tables(parts) if parts else
             parquet.schema_arrow.empty_table().select(plan.wanted))
    del parts
    table = pandas_ready(table, plan.wanted, kinds)
    return table.to_pandas(split_blocks=True, self_destruct=True).rename(columns=plan.to_canonical), kept


def _side_of(stats: pq.Statistics | None, bound: pa.Scalar) -> str:
    """Where a row group's times lie against `bound` by its statistics: "before" (every row earlier),
    "from" (every row at or after it) or "both" (mixed, undated rows, or statistics missing or unreadable)."""
    try:
        if stats is None or not stats.has_min_max or stats.null_count != 0:
            return "both"
        low, high = pa.scalar(stats.min, type=bound.type), pa.scalar(stats.max, type=bound.type)
        if pc.less(high, bound).as_py():
            return "before"
        return "from" if pc.greater_equal(low, bound).as_py() else "both"
    except Exception:  # noqa: BLE001 - statistics in a form we cannot compare: read the group and filter it
        return "both"


class KeptRows:
    """Which file rows a partial read holds, in order: row i of the frame -> its row in the file."""

    def __init__(self) -> None:
        self._starts: list[int] = []  # frame position where each read group begins
        self._groups: list[tuple[int, np.ndarray | None]] = []  # (file row of the group's first row, kept positions)
        self.rows = 0

    def add(self, file_row: int, positions: np.ndarray | None, count: int) -> None:
        """A row group starting at `file_row`, of which the rows at `positions` (None: all `count`) were kept."""
        if not count:
            return
        self._starts.append(self.rows)
        self._groups.append((file_row, positions.astype(np.int32) if positions is not None else None))
        self.rows += count

    def file_row(self, position: int) -> int:
        """The 0-based file row of the frame's row `position`."""
        group = int(np.searchsorted(self._starts, position, side="right")) - 1
        first, positions = self._groups[group]
        within = position - self._starts[group]
        return first + (int(positions[within]) if positions is not None else within)


def derived_columns(cfg: Config, name: str) -> tuple[str, ...]:
    """The contract columns of table `name` derived from other columns (`flag_dates`), so not required."""
    return ("signup_date", "closed_date") if name == "customers" and cfg.labels.churn_flag is not None else ()


def flag_dates(cfg: Config, name: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """The customers with their dates derived from `labels.churn_flag` (features/snapshot.py); any other
    table, or no churn flag, as it is."""
    flag = cfg.labels.churn_flag
    if name != "customers" or flag is None or cfg.data.as_of is None:
        return frame, []
    return with_flag_dates(frame, flag, pd.Timestamp(cfg.data.as_of), cfg.labels.horizon_days)


def raise_if_invalid(problems: list[Problem], customers_read: bool) -> None:
    """Log the warnings; raise ValidationFailed with the errors (or when the customers could not be read)."""
    errors = [p for p in problems if p.severity == "error"]
    for warning in (p for p in problems if p.severity == "warning"):
        log.warning("%s", warning)
    if errors or not customers_read:
        raise ValidationFailed(errors or [Problem("customers", None, 0, "table could not be read",
                                                  "see the messages above")])


def load_tables(cfg: Config, needs: frozenset[str] | None = None, transactions_from: TransactionsFrom | None = None,
                columns: Mapping[str, tuple[str, ...]] | None = None) -> Tables:
    """Every stage's first step: the validated tables, or ValidationFailed listing every problem.

    `needs`: the tables the stage uses (None: all); the others are left unread (only their
    dates when data.as_of is empty), said in the log. `churn validate` checks every table.
    `transactions_from`: a stage that looks back a bounded time (`churn score`) reads, from a Parquet
    file, only the transactions from that time on in full and the earlier ones as each customer's first and
    latest time (`Tables.earlier_transactions`); the checks then see the rows read.
    `columns`: per table, the only columns a stage reads (`features.build.feature_inputs`: not the complaints'
    text or ids when no feature uses them); the checks then see those columns, and the file must still have
    every required one. Tables not named are read whole.
    Refused (StageError) before anything is read when they would not fit in memory (`check_fits_in_memory`).
    """
    check_fits_in_memory(cfg, TABLES if needs is None else needs, transactions_from)
    frames, as_of, problems, earlier = _read_and_check(cfg, needs, transactions_from, columns)
    raise_if_invalid(problems, "customers" in frames)
    unread = [n for n in TABLES if n not in frames and n in cfg.data.tables and needs is not None
              and n not in needs]
    skipped = [n for n in TABLES if n not in frames and n not in unread]
    if skipped:
        log.info("tables not supplied, their features are skipped: %s", ", ".join(skipped))
    if unread:
        log.info("tables this stage does not use, not read%s: %s",
                 "" if cfg.data.as_of else " (only their dates, for the end of the data)", ", ".join(unread))
    return Tables(**frames, as_of=as_of, earlier_transactions=earlier)


@dataclass(frozen=True)
class CustomerSample:
    """The customers a command holds when the data has more than `labels.max_training_customers`."""

    kept: int
    of: int
    event_rows: dict[str, tuple[int, int]]
    """Per event table: (rows kept, rows in the file)."""
    first_event: pd.Timestamp | None = None
    """The day of the earliest event of every row of the event tables (where the whole data's history starts:
    `features.build.earliest_event`; a day is enough, cutoffs fall at midnight)."""

    @property
    def share(self) -> float:
        return self.kept / self.of

    def describe(self) -> dict[str, object]:
        return {"customers": self.kept, "of": self.of, "share": round(self.share, 6),
                "rule": "labels.max_training_customers: the customers with the lowest hashed id share, the "
                        "training sample of `churn features` / `churn train` (features.ids.training_sample)",
                "event_rows_kept": {name: {"kept": kept, "of": total} for name, (kept, total) in self.event_rows.items()}}


def load_sampled_tables(cfg: Config, batch_rows: int = BATCH_ROWS, whole: tuple[str, ...] = (),
                        columns: Mapping[str, tuple[str, ...]] | None = None) -> tuple[Tables, CustomerSample | None]:
    """The validated tables of the training sample's customers (`labels.max_training_customers`) with every
    row of theirs, and how many were kept; the tables as `load_tables` gives them, and None, when the data
    has no more customers than that.

    Event tables are read in batches (Parquet) and only the sample's rows kept, so a bank ten times the
    size `load_tables` can hold replays on one machine; the end of the data (data.as_of empty) is still
    inferred from every row, so cutoffs and windows are those of the whole data. Refused (StageError)
    before the events are read when even the sample's rows would not fit (`pandas_row_limit`).
    `whole`: tables kept whole (`churn features` reads every customer's static levels and every contact);
    `columns`: as `load_tables`'.
    """
    columns = columns or {}
    source = cfg.data.tables.get("customers")
    limit = cfg.labels.max_training_customers
    frame, problems = (read_table("customers", source, columns.get("customers"),
                                  derived=derived_columns(cfg, "customers"))
                       if source is not None else (None, []))
    if frame is None or limit is None or len(frame) <= limit:
        del frame
        return load_tables(cfg, columns=columns), None
    frame, flag_problems = flag_dates(cfg, "customers", frame)
    problems += flag_problems
    customers, parsed = coerce_types(frame, TABLES["customers"])
    del frame
    problems += parsed
    chosen = training_sample(customers["customer_id"].astype("str"), limit)
    assert chosen is not None  # more customers than the limit
    share = float(chosen.mean())
    events = [n for n in EVENT_TABLES if n in cfg.data.tables]
    kept_whole = [n for n in events if n in whole]
    csv = [n for n in events if n not in whole and table_format(cfg.data.tables[n]) != "parquet"]  # read whole
    estimate = (int(len(customers) if "customers" in whole else chosen.sum())
                + int(input_rows(cfg, [n for n in events if n not in csv and n not in whole]) * share)
                + input_rows(cfg, csv + kept_whole))
    rows_limit, limit_source = pandas_row_limit(cfg)
    if estimate > rows_limit:
        raise StageError(
            f"even the sample of {int(chosen.sum()):,} customers (labels.max_training_customers) holds about "
            f"{estimate:,} rows, above {rows_limit:,} ({limit_source}); nothing was written. Lower "
            "labels.max_training_customers or raise features.pandas_max_rows if this machine has the memory"
            + (f"; {', '.join(csv)} {'is' if len(csv) == 1 else 'are'} CSV, read whole before the sample's rows "
               "are kept: saved as Parquet, only the sample's rows are held" if csv else ""))
    kept_ids = customers["customer_id"][chosen]
    frames: dict[str, pd.DataFrame] = {"customers": customers if "customers" in whole
                                       else customers[chosen].reset_index(drop=True)}
    counts: dict[str, tuple[int, DayCounts]] = {}
    event_rows: dict[str, tuple[int, int]] = {}
    for name in events:
        counted: tuple[int, DayCounts] | None = None
        if name in whole:
            kept, found = read_table(name, cfg.data.tables[name], columns.get(name), derived=derived_columns(cfg, name))
            problems += found
            if kept is not None:
                kept, found = coerce_types(kept, TABLES[name])
                problems += found
                counted = (len(kept), daily_counts(kept[TABLES[name].event_time]))
        else:
            kept, counted, found = _sample_rows(name, cfg.data.tables[name], kept_ids, batch_rows, columns.get(name))
            problems += found
        if kept is not None and counted is not None:
            frames[name], counts[name] = kept, counted
            event_rows[name] = (len(kept), counted[0])
    configured = pd.Timestamp(cfg.data.as_of) if cfg.data.as_of is not None else None
    as_of: pd.Timestamp | None = configured
    if as_of is None:
        try:  # from the whole customers table and every event row, as `read_and_check` infers it
            as_of = end_of_data({"customers": customers}, counts)
        except ValueError as error:
            problems.append(Problem("customers", None, 0, str(error), "set data.as_of in the config"))
    del customers
    problems += validate_tables(frames, configured, counts)
    raise_if_invalid(problems, True)
    pa.default_memory_pool().release_unused()
    firsts = [days[counted > 0].min() for _, (days, counted) in counts.values() if (counted > 0).any()]
    first_event = pd.Timestamp(int(min(firsts)), unit="D") if firsts else None
    sample = CustomerSample(int(chosen.sum()), len(chosen), event_rows, first_event)
    log.info("holding the training sample: %s of %s customers (labels.max_training_customers)",
             f"{sample.kept:,}", f"{sample.of:,}")
    return Tables(**frames, as_of=as_of), sample


def _sample_rows(name: str, source: TableSource, kept_ids: pd.Series, batch_rows: int,
                 only: tuple[str, ...] | None = None
                 ) -> tuple[pd.DataFrame | None, tuple[int, DayCounts] | None, list[Problem]]:
    """One event table's typed rows of the `kept_ids` customers (category levels: those they use, sorted);
    its row count and the `daily_counts` of its event time over every row; the problems found. `only`: the
    columns read (`plan_read`)."""
    plan, problems = plan_read(name, source, only)
    if plan is None:
        return None, None, problems
    counted, parts, found = _count_batches(plan, batch_rows, kept_ids)
    if counted is None:
        return None, None, problems + found
    kept = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    for col in TABLES[name].columns:  # batches have their own levels; the kept rows get those they use, sorted
        if col.kind == "category" and col.name in kept.columns:
            merged = union_categoricals([p[col.name] for p in parts]) if len(parts) > 1 else kept[col.name]
            kept[col.name] = _as_category(pd.Series(merged, name=col.name))
    return kept, counted, problems + found


def summarise_tables(tables: Tables) -> dict[str, dict[str, object]]:
    """Row counts and date ranges per table, for the validation report (no customer data)."""
    summary: dict[str, dict[str, object]] = {}
    for name in tables.present():
        frame: pd.DataFrame = getattr(tables, name)
        column = summary_time_column(name)
        dated = column in frame.columns and len(frame)
        summary[name] = table_summary(name, len(frame), list(map(str, frame.columns)),
                                      frame[column].min() if dated else pd.NaT,
                                      frame[column].max() if dated else pd.NaT)
    summary["as_of"] = {"date": str(tables.as_of)}
    return summary


def summary_time_column(name: str) -> str:
    """The date column whose first and last values the validation report shows for table `name`."""
    return TABLES[name].event_time or "signup_date"


def table_summary(name: str, rows: int, columns: list[str], first: pd.Timestamp, last: pd.Timestamp
                  ) -> dict[str, object]:
    """One table's entry in the validation report: rows, columns and, when it has rows and its
    `summary_time_column`, that column's first and last value (whole table or added up over batches)."""
    entry: dict[str, object] = {"rows": int(rows), "columns": columns}
    if summary_time_column(name) in columns and rows:
        entry["first"], entry["last"] = str(first), str(last)
    return entry

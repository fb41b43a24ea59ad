"""The relational engine's I/O: a DuckDB or Spark connection from config and the input files read by it.

DuckDB (the embedded default) or Spark (`connect_spark`, the `spark` extra: `pip install
'churn-care[spark]'` and a Java 17 runtime) reads the Parquet or CSV files itself (no pandas load of
the raw events): each table becomes an Ibis table with the contract's canonical column names and the
engine's types, and only the finished feature table is handed to pandas. Both give identical tables
(tests/features/test_relational_engines.py). Validation of the files is still the pandas
loader's (pipelines/tables.py); run it first (`churn validate`).

Types: ids, categories and text are strings; times naive TIMESTAMP (microseconds; a time-zone-aware
Parquet column is converted to UTC, as pipelines/tables.py does); money columns (`amount` and the
label value column) DECIMAL(38, 6), so sums are exact and independent of the number of threads
(amounts with more than 6 decimals are rounded to 6); other numbers DOUBLE.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features._grouping import MONEY_DECIMALS, NEVER, cutoff_us, datetimes_us
from features.build import (ExclusionSink, cutoffs_between, earliest_event, excluded_at, no_cutoff_message,
                            tables_as_of)
from features.catalogue import Family, catalogue
from features.complaint_text import sentiment_scores
from features.contract import TABLES, Tables
from features.ids import is_in, training_sample
from features.relational.btyd import btyd_frame, purchase_summary
from features.relational.engine import KEYS, PORTED_FAMILIES, RelationalTables, customer_features, population_features
from features.labels import reasons_from
from features.settings import (SPARK_TIME_ZONE, DuckDBSettings, FeatureSettings, LabelSettings, SettingsProblem,
                               SparkSettings)
from features.static import customer_value_per_horizon, static_attributes
from models.uplift.data import contact_assignments, uplift_cutoffs
from models.uplift.settings import UpliftSettings
from pipelines.config import Config
from pipelines.io import StageError
from pipelines.tables import held_rows, load_tables, machine_memory, pandas_row_limit, table_format

if TYPE_CHECKING:
    import ibis.expr.types as ir
    from ibis.backends import BaseBackend
    from ibis.backends.duckdb import Backend
    from ibis.backends.pyspark import Backend as SparkBackend

ENGINES = ("duckdb", "spark")

MONEY = f"decimal(38, {MONEY_DECIMALS})"
"""The type money is summed in: exact, 32 digits before the point, 6 after (the pandas engine sums the
same millionths: features/_grouping.py `decimal_units`)."""


@dataclass(frozen=True)
class TableFile:
    """One input file: path, format (csv or parquet) and contract name -> column name in the file."""

    path: Path
    format: str
    columns: dict[str, str]


def connect_from(settings: DuckDBSettings) -> Backend:
    """A connection with the configured resources (`features.duckdb`)."""
    return connect(settings.threads, settings.memory_limit, settings.temp_directory)


def resolve_engine(cfg: Config, say: Callable[[str], None],
                   held: Callable[[Config], tuple[int, str]] = held_rows) -> Config:
    """`cfg` with `features.engine: auto` made concrete (pandas while the rows the stage would hold fit
    `features.pandas_max_rows`, `pipelines.tables.pandas_row_limit`, else duckdb), saying which and why;
    any other engine as configured. `held`: the rows the stage holds in pandas and which (`held_rows`: every
    input row; `churn score` passes its transactions' start, `churn features` its training sample's reads).

    Only the stage's working copy changes: the settings a training table records (`settings_of`) keep
    `auto`, so a table built by either engine is the config's (the engines give the same tables,
    tests/pipelines/test_features_engine.py)."""
    if cfg.features.engine != "auto":
        return cfg
    rows, which = held(cfg)
    limit, source = pandas_row_limit(cfg)
    engine = "pandas" if rows <= limit or cfg.labels.churn_flag is not None else "duckdb"
    which = f" ({which})" if which else ""
    why = ("labels.churn_flag: the dates derived from the flag exist only in the loaded customers table"
           if cfg.labels.churn_flag is not None and rows > limit else
           f"about {rows:,} input rows{which}, {'within' if engine == 'pandas' else 'above'} {limit:,}: {source}")
    say(f"features.engine auto: {engine} ({why})")
    return cfg.model_copy(update={"features": cfg.features.model_copy(update={"engine": engine})})


def connect_engine(engine: str, settings: FeatureSettings) -> BaseBackend:
    """A connection to `engine` ("duckdb" or "spark") with its configured settings
    (`features.duckdb` or `features.spark`)."""
    if engine == "duckdb":
        return connect_from(settings.duckdb)
    if engine == "spark":
        return connect_spark(settings.spark)
    raise ValueError(f"unknown relational engine {engine!r}; one of {', '.join(ENGINES)}")


SPARK_DEFAULTS: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
}
"""Spark properties unless `features.spark.config` sets them: no web UI, few shuffle partitions (the
default 200 is for clusters; a feature query shuffles many times), the JVMs' zone UTC."""


def connect_spark(settings: SparkSettings) -> SparkBackend:
    """An Ibis connection to a Spark session (`features.spark`: master, app name, extra properties),
    its session time zone UTC (times are naive UTC, as DuckDB and the pandas engine read them).

    A session already running in this process is reused (Spark allows one per process); its
    properties are then the ones it was started with, except the time zone, which is set again.
    """
    import shutil

    try:
        import ibis
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise StageError("features.engine spark needs pyspark, which is not installed: pip install 'churn-care[spark]' "
                         "(or `make test-spark`, which installs it into .venv); nothing was written") from error
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise StageError("features.engine spark needs a Java 17 runtime: no `java` on PATH and no JAVA_HOME "
                         "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless); nothing was written")
    builder = SparkSession.builder.master(settings.master).appName(settings.app_name)
    for key, value in {**SPARK_DEFAULTS, **settings.config, "spark.sql.session.timeZone": SPARK_TIME_ZONE}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return ibis.pyspark.connect(session)


def cutoffs_on(con: BaseBackend, cutoffs: Sequence[pd.Timestamp]) -> Sequence[pd.Timestamp] | ir.Table:
    """The cutoffs as `feature_table` and `label_table` should take them on `con`'s engine.

    On Spark: a cached one-column table (the type Ibis gives a naive timestamp), counted once so
    Spark knows its size and broadcasts it in every inequality join. Ibis's in-memory table is an
    RDD of unknown size to Spark, which then joined the events to it as a Cartesian product or
    broadcast the events instead (demo bank, one cutoff, two alternated runs each at a load average
    of 4-5: features 77 and 66 s, labels 13.0 and 13.0 s; cached: 63 and 65 s, 6.0 and 7.8 s; the
    tables identical). Elsewhere the cutoffs as they are (an Ibis in-memory table).
    """
    if con.name != "pyspark":
        return cutoffs
    import uuid

    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructField, StructType, TimestampType

    session = SparkSession.getActiveSession()
    values = pd.DataFrame({"cutoff": pd.to_datetime(list(cutoffs)).as_unit("us")})
    frame = session.createDataFrame(values, schema=StructType([StructField("cutoff", TimestampType())])).cache()
    frame.count()
    name = f"churn_cutoffs_{uuid.uuid4().hex}"
    frame.createOrReplaceTempView(name)
    return con.table(name)


def files_from_config(cfg: Config) -> dict[str, TableFile]:
    """The input files named in `data.tables`, with their formats and column mappings."""
    return {name: TableFile(source.path, table_format(source), dict(source.columns))
            for name, source in cfg.data.tables.items()}


FAMILIES: tuple[str, ...] = get_args(Family)
"""Every feature family, in catalogue order."""


@dataclass(frozen=True)
class Inputs:
    """The configured input files opened on an engine: the connection and the tables as Ibis tables."""

    con: BaseBackend
    tables: RelationalTables


def open_inputs(cfg: Config, engine: str | None = None) -> Inputs:
    """The files of `data.tables` on `engine` (default `features.engine`), nothing read yet."""
    con = connect_engine(engine or cfg.features.engine, cfg.features)
    tables = read_tables(con, files_from_config(cfg), cfg.labels.value_column)
    return Inputs(con, with_complaint_tone(con, tables, cfg.features))


def with_complaint_tone(con: BaseBackend, tables: RelationalTables, settings: FeatureSettings,
                        rows: int | None = None) -> RelationalTables:
    """The tables with each complaint's tone (`sentiment`: VADER compound score, empty for no text) on the
    complaints, when `features.complaint_sentiment` is on and the complaints have a text column.

    VADER has no SQL form, so the texts are read from the engine in batches of `rows` and scored here
    (`features.complaint_text.sentiment_scores`, as the pandas engine scores them); only (complaint_id,
    score) goes back, joined to the complaints on their unique complaint_id. The text never leaves
    this function.
    """
    import ibis

    complaints = tables.complaints
    if not settings.complaint_sentiment or complaints is None or "text" not in complaints.columns:
        return tables
    ids: list[pa.Array] = []
    scores: list[np.ndarray] = []
    for batch in record_batches(con, complaints.select("complaint_id", "text"), rows or BATCH_ROWS):
        ids.append(batch.column(0))
        scores.append(sentiment_scores(batch.column(1).to_pandas()))
    tone = pa.table({"complaint_id": pa.chunked_array(ids, pa.string()),
                     # no tone (NaN) as NULL: the engine's counts and sums skip it, as the pandas engine skips NaN
                     "sentiment": pa.array(np.concatenate(scores) if scores else np.array([]), pa.float64(),
                                           from_pandas=True)})
    scored = ibis.memtable(tone)
    joined = complaints.left_join(scored, complaints.complaint_id == scored.complaint_id)
    with_tone = joined.select(*[joined[c] for c in complaints.columns], sentiment=joined.sentiment)
    return dataclasses.replace(tables, complaints=with_tone)


def build_frames(cfg: Config, cutoffs: Sequence[pd.Timestamp], families: Sequence[str] = FAMILIES,
                 engine: str = "duckdb", customers: pd.DataFrame | None = None,
                 inputs: Inputs | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The feature table (`families`: every one by default) and the label table of the configured data
    at `cutoffs`, computed by `engine` (DuckDB, or Spark) from the files: `iter_frames` put together."""
    inputs = inputs or open_inputs(cfg, engine)
    parts = list(iter_frames(cfg, cutoffs, inputs, customers, families))
    if parts:
        both = pd.concat([frame for _, frame in parts], ignore_index=True)
    else:  # nobody at any cutoff: the columns of the empty query
        both = next(iter_frames(cfg, cutoffs, inputs, customers, families, keep_empty=True))[1]
    names = label_names(cfg)
    return both.drop(columns=names), both[["customer_id", "cutoff", *names]]


def label_names(cfg: Config) -> list[str]:
    """The label columns of `label_table` under the configured churn definition."""
    return ["churned", "future_value"] + (["days_to_churn"] if cfg.labels.definition == "closure" else [])


BATCH_ROWS = 250_000
"""Rows per batch the engine hands over while streaming the rows of many cutoffs."""


def iter_frames(cfg: Config, cutoffs: Sequence[pd.Timestamp], inputs: Inputs, customers: pd.DataFrame | None = None,
                families: Sequence[str] = FAMILIES, keep_empty: bool = False,
                split: Sequence[RelationalTables] | None = None,
                say: Callable[[str], None] | None = None,
                piece_rows: int | None = None) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
    """(cutoff, its rows: customer_id, cutoff, the features of `families`, then the labels) for every
    cutoff with a population, oldest first, from ONE query over all the cutoffs streamed in batches
    (so memory holds one cutoff's rows, not all of them; the engine sorts the result, spilling to
    disk beyond features.duckdb.memory_limit). Columns in the pandas engine's order (catalogue order,
    then the static attributes, then the labels).

    The relational families and the labels are that query; the BTYD family is a second query (the
    purchase history of every cutoff, one row per customer who bought) and a fit per cutoff on its
    result (features/relational/btyd.py); the static attributes come from the customers table
    (`customers`, else read and validated by pipelines/tables.py). `keep_empty`: yield one empty
    frame (with every column) when no cutoff has anyone.

    On DuckDB, more (customer, cutoff) rows than `features.duckdb.rows_per_statement` are computed in
    buckets of customers (`statement_buckets`): every table is written once to a Parquet file per
    bucket, each bucket's own columns and purchase history are a statement of their own, and the
    population-wide columns (RFM quintile scores and segment, the BTYD fits) are computed once over all
    of them. The result is the same, byte for byte, with any number of buckets. `split`: the tables
    already cut into buckets (`_Scratch.split`, shared by the queries of one stream); None: cut here
    when this query's rows need it. `say`: told each bucket's progress (at 10M customers a query runs
    for minutes). `piece_rows`: a cutoff's rows in consecutive pieces of at most that many rows (the
    same cutoff repeated), so a consumer that streams them (the score stage) never holds them all;
    None: each cutoff's rows in one frame.
    """
    con, tables = inputs.con, inputs.tables
    cuts = cutoffs_on(con, cutoffs)
    relational = [f for f in families if f in PORTED_FAMILIES]
    names = label_names(cfg)
    static = None
    if "static" in families and cfg.features.static_features:
        if customers is None:
            customers = load_tables(cfg, frozenset({"customers"})).customers
        attributes = static_attributes(customers, cfg.features)
        static = _keyed(pd.DataFrame({"customer_id": customers["customer_id"].astype("str").to_numpy(), **attributes}))
    known_value = None  # snapshot data: each customer's value per horizon from a customers column
    if cfg.labels.customer_value_column is not None and tables.transactions is None:
        if customers is None:
            customers = load_tables(cfg, frozenset({"customers"})).customers
        ids = customers["customer_id"].astype("str")
        known_value = _keyed(pd.DataFrame({"customer_id": ids.to_numpy(), "future_value": customer_value_per_horizon(
            customers, cfg.labels.customer_value_column, ids, cfg.labels.horizon_days)}))
    order = [i.name for i in catalogue(cfg.features)] + list(cfg.features.static_features)
    with contextlib.ExitStack() as scratch:  # the buckets' files, removed however the stream ends
        if split is None:
            buckets = 1 if con.name != "duckdb" else statement_buckets(
                con, int(con.execute(tables.customers.count())), len(cutoffs), cfg.features.duckdb)
            split = scratch.enter_context(_Scratch(con)).split(tables, buckets, say) if buckets > 1 else [tables]
        btyd: dict[pd.Timestamp, pd.DataFrame] | None = None  # per cutoff; absent cutoff: nobody bought before it
        no_purchase = pd.DataFrame()
        if "btyd" in families and cfg.features.btyd and tables.transactions is not None:
            # the purchase history per bucket of customers; the models fitted on all of them together
            histories = []
            for number, part in enumerate(split, 1):
                histories.append(con.to_pyarrow(purchase_summary(part, cuts, cfg.labels.value_column,
                                                                 moments=list(cutoffs),
                                                                 history_days=cfg.features.btyd_history_days)))
                _progress(say, split, number, "purchase histories")
            frame = btyd_frame(pa.concat_tables(histories).to_pandas(), cfg.labels.horizon_days)
            btyd = {pd.Timestamp(c): _keyed(part.drop(columns="cutoff")) for c, part in frame.groupby("cutoff", sort=True)}
            no_purchase = _keyed(frame.iloc[:0].drop(columns="cutoff"))

        def finish(batches: list[pa.RecordBatch], schema: pa.Schema) -> tuple[pd.Timestamp | None, pd.DataFrame]:
            table = pa.Table.from_batches(batches, schema=schema)
            batches.clear()  # the table's buffers are freed column by column as they are converted (typed_frame)
            frame = typed_frame(table, cfg.features, consume=True)
            del table
            cutoff = pd.Timestamp(frame["cutoff"].iloc[0]) if len(frame) else None
            if btyd is not None:
                frame = _with_columns(frame, btyd.get(cutoff, no_purchase))
            if static is not None:
                frame = _with_columns(frame, static)
            if known_value is not None:
                frame = _with_columns(frame.drop(columns="future_value"), known_value)
            present = [n for n in order if n in frame.columns]
            return cutoff, frame[["customer_id", "cutoff", *present, *names]]

        rows = scratch.enter_context(_Scratch(con)) if len(split) > 1 else None
        query = _rows_query(cfg, split, cuts, relational, rows, say)
        reader = record_batches(con, query, BATCH_ROWS) if rows is None else rows.result(query, BATCH_ROWS)
        yield from _split_by_cutoff(reader, finish, keep_empty, piece_rows)


def _progress(say: Callable[[str], None] | None, split: Sequence[RelationalTables], number: int, what: str) -> None:
    """Tell `say` that bucket `number` of `split` is done with `what` (nothing with one bucket)."""
    if say is not None and len(split) > 1:
        say(f"{what}: bucket {number} of {len(split)} of customers done")


def _rows_query(cfg: Config, split: Sequence[RelationalTables], cuts: Sequence[pd.Timestamp] | ir.Table,
                families: Sequence[str], parts: _Scratch | None,
                say: Callable[[str], None] | None = None) -> ir.Table:
    """The relational families' features and the labels of every (customer, cutoff) of the population,
    sorted by (cutoff, customer_id): one query of the tables `split[0]`, or with several buckets of
    customers (`split`, from `_Scratch.split`) each bucket's own columns computed by a statement of its
    own into `parts`, and the population-wide columns (`population_features`) over them all."""
    names = label_names(cfg)
    if len(split) == 1:
        [tables] = split
        own = customer_features(tables, cuts, cfg.features, cfg.labels, families, label_columns=names)
    else:
        assert parts is not None
        for number, part in enumerate(split, 1):
            parts.write(customer_features(part, cuts, cfg.features, cfg.labels, families, label_columns=names))
            _progress(say, split, number, "features and labels")
        if say is not None:
            say("features and labels: ranking the population (RFM scores) over all buckets, writing the sorted rows")
        own = parts.read()
    query = population_features(own, cfg.features, families, ordered=False, keep=names)
    return query.order_by(KEYS[::-1])


def _split_by_cutoff(reader: pa.RecordBatchReader,
                     finish: Callable[[list[pa.RecordBatch], pa.Schema], tuple[pd.Timestamp | None, pd.DataFrame]],
                     keep_empty: bool, piece_rows: int | None = None
                     ) -> Iterator[tuple[pd.Timestamp | None, pd.DataFrame]]:
    """`finish` of each cutoff's batches, from a reader of rows sorted by cutoff (`keep_empty`: one
    empty frame when there are no rows); with `piece_rows`, of each run of at most that many rows of
    one cutoff."""
    pending: list[pa.RecordBatch] = []
    held = 0  # rows in `pending`
    current = None
    yielded = False
    for batch in reader:
        if not batch.num_rows:
            continue
        column = batch.column(batch.schema.get_field_index("cutoff"))
        if current is None:
            current = column[0]
        # the rows are sorted by cutoff: split the batch where the cutoff changes (or a piece is full)
        start = 0
        while start < batch.num_rows:
            same = pc.equal(column.slice(start), current)
            run = pc.index(same, False).as_py()
            stop = batch.num_rows if run < 0 else start + run
            if piece_rows is not None:
                stop = min(stop, start + piece_rows - held)
            pending.append(batch.slice(start, stop - start))
            held += stop - start
            if stop < batch.num_rows or (piece_rows is not None and held >= piece_rows):
                yield finish(pending, reader.schema)
                yielded = True
                pending, held = [], 0
                if stop < batch.num_rows:
                    current = column[stop]
            start = stop
    if pending:
        yield finish(pending, reader.schema)
        yielded = True
    if keep_empty and not yielded:
        yield finish([], reader.schema)


ROWS_PER_GB = 200_000
"""(customer, cutoff) rows one DuckDB statement aggregates per GB of `features.duckdb.memory_limit`
when `features.duckdb.rows_per_statement` is empty (measured: see the README, "Features on DuckDB")."""


def statement_buckets(con: BaseBackend, customers: int, cutoff_count: int, settings: DuckDBSettings) -> int:
    """Into how many buckets `iter_frames` splits `customers` for a query of `cutoff_count` cutoffs on `con`:
    enough that each holds at most `rows_per_statement` (customer, cutoff) rows. DuckDB only: Spark
    distributes the work itself.

    Why: once a DuckDB hash aggregate outgrows its memory it keeps about one state per input row
    (duckdb/duckdb#22474), so the spill grows with events x state width, not customers; an aggregate
    that fits is never external. Customers are independent but for the population-wide ranks and fits,
    computed after the buckets."""
    per_statement = settings.rows_per_statement
    if per_statement is None:
        limit = con.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        per_statement = max(1, int(ROWS_PER_GB * memory_bytes(limit) / 1e9))
    rows = customers * max(cutoff_count, 1)
    return max(1, min(-(-rows // per_statement), customers))  # at most one customer per bucket


def memory_bytes(text: str) -> float:
    """Bytes of a memory size as DuckDB writes it (`953.6 MiB`, `18.8 GiB`, `2GB`)."""
    import re

    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)(i?)B\s*", text, flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"not a memory size: {text!r}")
    number, prefix, binary = match.groups()
    power = " KMGT".index(prefix.upper() or " ")
    return float(number) * (1024 if binary else 1000) ** power


class _Scratch:
    """A folder of Parquet files beside DuckDB's spill files (`temp_directory`), removed on exit: the
    inputs cut into buckets of customers (`split`), or the buckets' rows of one query (`write`, `read`)."""

    def __init__(self, con: BaseBackend) -> None:
        import tempfile

        spill = con.con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
        Path(spill).mkdir(parents=True, exist_ok=True)
        self.con, self.count = con, 0
        self.folder = Path(tempfile.mkdtemp(prefix="churn-care-buckets-", dir=spill))

    def split(self, tables: RelationalTables, buckets: int,
              say: Callable[[str], None] | None = None) -> list[RelationalTables]:
        """The tables of each of `buckets` buckets of customers (by a hash of the id), each table written
        once to a Parquet file per bucket: one pass over the inputs, where cutting them in every statement
        would scan every input once per bucket (and once per query of a stream)."""
        tables_of: list[dict[str, ir.Table | None]] = [{} for _ in range(buckets)]
        if say is not None:
            say(f"cutting the input tables into {buckets} buckets of customers (features.duckdb.rows_per_statement), "
                f"in {self.folder}")
        for field in dataclasses.fields(tables):
            table = getattr(tables, field.name)
            if table is None:
                for own in tables_of:
                    own[field.name] = None
                continue
            folder = self.folder / field.name
            code = table.customer_id.hash() % buckets
            self.con.to_parquet(table.mutate(_bucket=(code + buckets) % buckets), folder, partition_by="_bucket")
            for bucket, own in enumerate(tables_of):
                files = folder / f"_bucket={bucket}"
                own[field.name] = (self.con.read_parquet(str(files / "*.parquet"), hive_partitioning=False)
                                   .select(*table.columns) if files.is_dir()
                                   else table.limit(0))  # no file: none of its rows is of the bucket's customers
        return [RelationalTables(**own) for own in tables_of]

    def write(self, expr: ir.Table) -> None:
        self.con.to_parquet(expr, self.folder / f"bucket-{self.count:05d}.parquet")
        self.count += 1

    def read(self) -> ir.Table:
        return self.con.read_parquet(str(self.folder / "bucket-*.parquet"), hive_partitioning=False)

    def result(self, expr: ir.Table, rows: int) -> pa.RecordBatchReader:
        """The result of `expr` written to a file by the engine, then streamed from it in batches of
        `rows` rows: the engine's memory (the sorted result) is released before Python holds the rows,
        not held beside them as a streamed result is (at 10M customers, one cutoff: both about 6 GB)."""
        import pyarrow.parquet as pq

        path = self.folder / "result.parquet"
        self.con.to_parquet(expr, path)  # in the query's order (DuckDB keeps insertion order)
        schema = expr.schema().to_pyarrow()  # the types Ibis gives, as `record_batches`
        file = pq.ParquetFile(path)
        return pa.RecordBatchReader.from_batches(schema, (batch.cast(schema)
                                                          for batch in file.iter_batches(batch_size=rows)))

    def __enter__(self) -> _Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


def restricted(inputs: Inputs, ids: pd.Series) -> Inputs:
    """The inputs with every table cut to the customers `ids` (a semi-join on customer_id, so the engine
    reads, joins and aggregates only their events)."""
    import ibis

    keep = ibis.memtable(pa.table({"customer_id": pa.array(ids.astype("str").to_numpy(), pa.string())}))
    tables = {field.name: getattr(inputs.tables, field.name) for field in dataclasses.fields(inputs.tables)}
    return Inputs(inputs.con, RelationalTables(**{name: None if table is None else table.semi_join(keep, "customer_id")
                                                  for name, table in tables.items()}))


def record_batches(con: BaseBackend, expr: ir.Table, rows: int) -> pa.RecordBatchReader:
    """The result of `expr` streamed in batches of about `rows` rows.

    On DuckDB through its own reader: Ibis 12's `to_pyarrow_batches` calls `fetch_record_batch`,
    which DuckDB 2 no longer has (its successor is `to_arrow_reader`)."""
    if con.name != "duckdb":
        return con.to_pyarrow_batches(expr, chunk_size=rows)
    con._run_pre_execute_hooks(expr)  # registers the in-memory tables (the cutoffs) the query reads
    schema = expr.schema().to_pyarrow()  # the types Ibis gives (DuckDB's own reader has int32 where Ibis has int64)
    # a relation (`sql`), not a DB-API result (`raw_sql`): DuckDB copies a DB-API result's rows
    # once more to hand them to Arrow
    reader = con.con.sql(con.compile(expr)).to_arrow_reader(rows)
    return pa.RecordBatchReader.from_batches(schema, (batch.cast(schema) for batch in reader))


def active_customers(inputs: Inputs, cutoff: pd.Timestamp, lookback_days: int) -> pd.Series:
    """Ids of the customers with a transaction in [cutoff - lookback_days, cutoff) (the `inactivity`
    population rule's look-back), as the engine finds them."""
    import ibis

    t = inputs.tables.transactions
    if t is None:
        raise ValueError("labels.definition 'inactivity' needs a transactions table; "
                         "use 'closure' for data without transactions")
    moment = ibis.literal(pd.Timestamp(cutoff).as_unit("us").to_pydatetime(), "timestamp(6)")
    recent = t.filter((t.timestamp < moment) & (t.timestamp >= moment - ibis.interval(days=lookback_days)))
    return inputs.con.to_pyarrow(recent.select("customer_id").distinct()).to_pandas()["customer_id"].astype("str")


def earliest_event_time(inputs: Inputs) -> pd.Timestamp | None:
    """The earliest event time of any event table (None without events), as `features.build.earliest_event`
    reads it from loaded tables."""
    starts = []
    for name in ("transactions", "complaints", "surveys", "contacts"):
        table = getattr(inputs.tables, name)
        if table is not None:
            value = inputs.con.execute(table[TABLES[name].event_time].min())
            if value is not None and not pd.isna(value):
                starts.append(pd.Timestamp(value))
    return min(starts) if starts else None


def _keyed(extra: pd.DataFrame) -> pd.DataFrame:
    """`extra` (one row per customer_id) indexed by customer_id, for `_with_columns`: keyed once, so that
    the pieces of a cutoff (`piece_rows`) reuse its index rather than each hashing every id again."""
    keyed = extra.set_index("customer_id")
    if not keyed.index.is_unique:  # reindex would fail less clearly; a second row per customer is a bug upstream
        raise ValueError(f"{int(keyed.index.duplicated().sum())} customer_id values repeat in the columns to add")
    return keyed


def _with_columns(frame: pd.DataFrame, keyed: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the columns of `keyed` (`_keyed`: indexed by customer_id) matched on customer_id, empty
    where it has no row (ints then become floats, as a left merge makes them); rows and their order kept.

    Only the new columns are built (a merge would copy the whole feature table: at 10M customers,
    several GB each time)."""
    matched = keyed.reindex(frame["customer_id"].to_numpy())
    out = frame.copy(deep=False)
    for name in matched.columns:
        out[name] = matched[name].array
    return out


def scratch_root(temp_directory: str | None) -> Path:
    """Where the engine spills and the stages keep their temporary files: `features.duckdb.temp_directory`,
    default a `churn-care-duckdb` folder in the system's temporary directory."""
    import tempfile

    return Path(temp_directory) if temp_directory else Path(tempfile.gettempdir()) / "churn-care-duckdb"


def connect(threads: int | None = None, memory_limit: str | None = None, temp_directory: str | None = None
            ) -> Backend:
    """An in-memory DuckDB connection; `threads` and `memory_limit` (e.g. "2GB") as configured, and
    where it spills beyond the limit: `temp_directory`, default a `churn-care-duckdb` folder in the
    system's temporary directory (DuckDB's own default is `.tmp` in the working directory). Without a
    `memory_limit`, a third of the machine's memory (`machine_memory`): DuckDB's own default, 80%,
    leaves the Python side, which then holds the result rows, too little.

    Without DuckDB's ICU extension (not bundled; setting `TimeZone` would need it) a time-zone-aware
    column casts to its naive UTC time, as pipelines/tables.py converts it.
    """
    import ibis

    config: dict[str, object] = {"temp_directory": str(scratch_root(temp_directory))}
    if threads is not None:
        config["threads"] = threads
    config["memory_limit"] = memory_limit if memory_limit is not None else f"{machine_memory() // 3 // 2**20}MiB"
    con = ibis.duckdb.connect(**config)
    con.con.execute("SET enable_progress_bar = false").fetchall()  # DuckDB 2 draws one on stdout: noise in a log
    return con


def read_file(con: BaseBackend, source: TableFile) -> tuple[ir.Table, ir.IntegerValue]:
    """The file as the engine reads it (its own column names and types), and each row's position in
    the file (input order; 0-based for Parquet, increasing for CSV)."""
    import ibis

    path = str(source.path)
    if con.name == "pyspark":
        if source.format == "parquet":  # the file reader's row index (a hidden metadata column)
            quoted = path.replace("`", "``")
            raw = con.sql(f"SELECT *, _metadata.row_index AS `_file_row` FROM parquet.`{quoted}`")
            return raw, raw._file_row
        # every column as text (the casts below type it), as DuckDB and pandas keep an id like 007;
        # monotonically_increasing_id grows with the position in the file
        view = con.read_csv(path, header=True, inferSchema=False).get_name()
        raw = con.sql(f"SELECT *, monotonically_increasing_id() AS `_file_row` FROM `{view}`")
        return raw, raw._file_row
    if source.format == "parquet":
        raw = con.read_parquet(path, file_row_number=True)
        return raw, raw.file_row_number
    # DuckDB's CSV reader keeps the input order (preserve_insertion_order); it has no row-number option
    raw = con.read_csv(path)
    return raw, ibis.row_number()


def read_table(con: BaseBackend, name: str, source: TableFile, money: tuple[str, ...] = ("amount",)) -> ir.Table:
    """One table read by the engine, contract columns renamed to their canonical names and typed."""
    spec = TABLES[name]
    raw, position = read_file(con, source)
    columns: dict[str, ir.Value] = {}
    for column in spec.columns:
        file_name = source.columns.get(column.name, column.name)
        if file_name not in raw.columns:
            continue
        value = raw[file_name]
        if column.kind == "datetime":
            value = value.cast("timestamp(6)")
        elif column.name in money:
            value = value.cast(MONEY)
        elif column.kind in ("float", "int"):
            value = value.cast("float64")
        else:
            value = value.cast("string")
        columns[column.name] = value
    for extra in money:  # a label value column outside the contract (labels.value_column)
        if extra not in columns and name == "transactions" and source.columns.get(extra, extra) in raw.columns:
            columns[extra] = raw[source.columns.get(extra, extra)].cast(MONEY)
    if name == "surveys":  # the input position breaks ties of equal answer times (features/relational/surveys.py)
        columns["row"] = position.cast("int64")
    return raw.select(**columns)


def read_tables(con: BaseBackend, files: dict[str, TableFile], value_column: str = "amount") -> RelationalTables:
    """Every table given in `files` (customers required), read by the engine of `con`."""
    money = tuple(dict.fromkeys(("amount", value_column)))
    tables = {name: read_table(con, name, source, money) for name, source in files.items()}
    return RelationalTables(**tables)


def to_feature_frame(con: BaseBackend, expr: ir.Table, settings: FeatureSettings) -> pd.DataFrame:
    """Execute a feature or label query and type its result as the pandas engine types it
    (str ids, datetime64[us] cutoffs, int64 counts, float64 values, categoricals with their levels)."""
    return typed_frame(con.to_pyarrow(expr), settings)


def typed_frame(table: pa.Table, settings: FeatureSettings, consume: bool = False) -> pd.DataFrame:
    """A feature or label query's result typed as the pandas engine types its tables. `consume`: free
    the table's buffers column by column as they are converted (so its memory is not held twice; the
    table must not be used afterwards)."""
    frame = table.to_pandas(split_blocks=True, self_destruct=consume)
    frame["customer_id"] = frame["customer_id"].astype("str")
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us]")
    for info in catalogue(settings):
        if info.name in frame.columns and info.define is not None and info.define.output == "category":
            frame[info.name] = pd.Categorical(frame[info.name], categories=list(info.define.levels))
    return frame


QUERY_ROWS = 2_000_000
"""About how many rows (customers x cutoffs) one streamed query of `RelationalSource` sorts: the
engine must sort a query's whole result before the first batch comes, so the cutoffs go in groups
of QUERY_ROWS // customers (all of the demo bank's 40 in one query; two at a time for a million
customers, where 28 cutoffs in one query spilled 22 GB to disk with a 2 GB memory limit)."""


ENGINE_MISMATCH_FIX = ("Run the stage with `features.engine: pandas` meanwhile, and report this with the "
                       "engine's version (it is a bug: the two must agree)")


class RelationalSource:
    """What the features stage builds its tables from when `features.engine` is duckdb or spark.

    The event files are read by the engine, never loaded into pandas: `churn validate` must have
    passed on exactly these files (`pipelines.validate.check_validated`, else exit 4). The customers
    and contacts tables are loaded (and validated again) with pipelines/tables.py: the population rules,
    the static attributes and the uplift rows' contact assignments read them, and they are small next
    to the events. Every table is the pandas engine's, column for column (tests/pipelines/test_features_engine.py).
    """

    def __init__(self, cfg: Config, say: Callable[[str], None],
                 loaded: frozenset[str] = frozenset({"customers", "contacts"}),
                 fingerprint: dict[str, object] | None = None) -> None:
        """`fingerprint`: the stage's `input_fingerprint(cfg)`, reused to check the validation."""
        from pipelines.validate import check_validated, validated_inputs

        check_validated(cfg, validated_inputs(cfg, fingerprint))
        self.cfg, self.say = cfg, say
        self.tables = load_tables(cfg, loaded)  # `loaded`: the small tables the caller reads in pandas
        self.inputs = open_inputs(cfg)
        self.first_event = earliest_event_time(self.inputs)
        customers = self.tables.customers.sort_values("customer_id", kind="stable", ignore_index=True)
        self.customers = customers
        self.ids = customers["customer_id"].astype("str")
        self.signup = datetimes_us(customers["signup_date"])
        self.closed = (datetimes_us(customers["closed_date"]) if "closed_date" in customers.columns
                       else np.full(len(customers), NEVER, dtype=np.int64))
        self._uplift: _UpliftRows | None = None  # the uplift rows `training` gathered on its way
        self.sample = training_sample(self.ids, cfg.labels.max_training_customers)
        """The customers (in id order) of the training and uplift rows, `labels.max_training_customers`;
        None: every customer."""
        say(f"features on {cfg.features.engine} from the files ({', '.join(cfg.data.tables)}); "
            f"{' and '.join(sorted(loaded & set(cfg.data.tables)))} loaded; data as of {tables_as_of(self.tables).date()}")

    def reasons(self, cutoff: pd.Timestamp) -> np.ndarray:
        """`features.labels.population_reasons` of every customer (in id order) at `cutoff`."""
        labels = self.cfg.labels
        active = None
        if labels.definition == "inactivity":
            active = is_in(self.ids, active_customers(self.inputs, cutoff, labels.inactivity_lookback_days))
        return reasons_from(self.signup, self.closed, cutoff_us(cutoff), active)

    def stream(self, cutoffs: Sequence[pd.Timestamp], on_excluded: ExclusionSink | None,
               reported: Collection[pd.Timestamp] | None = None, only: np.ndarray | None = None,
               piece_rows: int | None = None) -> Iterator[tuple[pd.Timestamp, pd.DataFrame | None]]:
        """(cutoff, the rows of its population with features and labels, None when it has nobody) for
        each of `cutoffs` in order, from one streamed query (`iter_frames`). Before each cutoff's rows
        (of those in `reported`, default all), `on_excluded` gets who a rule left out at it, as the
        pandas engine says it. `only` (a mask over the customers, in id order): the rows of those
        customers alone, every table cut to them before the engine reads it (`restricted`). On DuckDB
        the inputs are cut into buckets of customers (`statement_buckets`) once for all the stream's
        queries, and so are the sampled customers' rows when there are several queries (else each
        query would scan the whole files again). `piece_rows`: each cutoff's rows in pieces of at most
        that many rows, as `iter_frames`."""
        ordered = sorted({pd.Timestamp(c).as_unit("us") for c in cutoffs})
        all_reasons = [self.reasons(cutoff) for cutoff in ordered]  # queries: before the stream holds the connection
        inputs = self.inputs if only is None else restricted(self.inputs, self.ids[only])
        customers = len(self.ids) if only is None else int(only.sum())
        per_query = max(1, QUERY_ROWS // max(customers, 1))
        groups = [ordered[i:i + per_query] for i in range(0, len(ordered), per_query)]
        with contextlib.ExitStack() as scratch:
            split = None  # the inputs cut into buckets (or to the sample) once, for every query of the stream
            if inputs.con.name == "duckdb":
                largest = max((len(group) for group in groups), default=1)
                buckets = statement_buckets(inputs.con, customers, largest, self.cfg.features.duckdb)
                if buckets > 1 or (only is not None and len(groups) > 1):
                    split = scratch.enter_context(_Scratch(inputs.con)).split(inputs.tables, buckets, self.say)
            frames = (frame for group in groups
                      for frame in iter_frames(self.cfg, group, inputs, self.customers, split=split, say=self.say,
                                               piece_rows=piece_rows))
            yield from self._checked(ordered, all_reasons, frames, on_excluded, reported, only)

    def _checked(self, ordered: list[pd.Timestamp], all_reasons: list[np.ndarray],
                 frames: Iterator[tuple[pd.Timestamp, pd.DataFrame]], on_excluded: ExclusionSink | None,
                 reported: Collection[pd.Timestamp] | None, only: np.ndarray | None
                 ) -> Iterator[tuple[pd.Timestamp, pd.DataFrame | None]]:
        """`stream`'s frames, each checked against the population rule, with None for a cutoff without anyone."""
        waiting = next(frames, None)
        for cutoff, reasons in zip(ordered, all_reasons):
            if on_excluded is not None and (reported is None or cutoff in reported):
                on_excluded(*(excluded_at(self.ids, cutoff, reasons) if only is None
                              else excluded_at(self.ids[only], cutoff, reasons[only])))
            expected = self.ids[reasons < 0 if only is None else (reasons < 0) & only].to_numpy()
            if waiting is None or waiting[0] != cutoff:
                if len(expected):
                    raise StageError(f"internal check failed: the {self.cfg.features.engine} engine found nobody at "
                                     f"{cutoff.date()}, where the population rule finds {len(expected):,} customers; "
                                     f"nothing was written. {ENGINE_MISMATCH_FIX}")
                yield cutoff, None
                continue
            seen = 0  # the cutoff's rows so far: it may come in pieces (`piece_rows`), in id order
            while waiting is not None and waiting[0] == cutoff:
                frame = waiting[1]
                ids = frame["customer_id"].to_numpy()
                last = seen + len(frame)
                if last > len(expected) or (ids != expected[seen:last]).any():
                    self._mismatch(cutoff, last, len(expected))
                seen = last
                yield cutoff, frame
                waiting = next(frames, None)
            if seen != len(expected):
                self._mismatch(cutoff, seen, len(expected))

    def _mismatch(self, cutoff: pd.Timestamp, rows: int, expected: int) -> None:
        raise StageError(f"internal check failed: the {self.cfg.features.engine} population at {cutoff.date()} "
                         f"({rows:,} rows so far) is not the population rule's ({expected:,} customers); "
                         f"nothing was written. {ENGINE_MISMATCH_FIX}")

    def _sampled_ids(self) -> pd.Series | None:
        return None if self.sample is None else self.ids[self.sample]

    def training(self, on_excluded: ExclusionSink, uplift: UpliftSettings | None = None) -> Iterator[pd.DataFrame]:
        """The training rows one cutoff at a time, as `features.build.iter_training_tables`. With `uplift`,
        the same stream also computes the uplift rows (their month-start cutoffs are mostly training
        cutoffs too, computed once), kept for `uplift`."""
        cutoffs = cutoffs_between(earliest_event(self.tables, self.first_event), tables_as_of(self.tables),
                                  self.cfg.labels)
        if not cutoffs:
            raise SettingsProblem("labels.horizon_days", no_cutoff_message(self.tables, self.cfg.labels,
                                                                           self.first_event))
        training = {pd.Timestamp(c).as_unit("us") for c in cutoffs}
        collect = _UpliftRows(self.tables, self.cfg.labels, uplift, self._sampled_ids()) if uplift is not None else None
        wanted = [*cutoffs, *(collect.cutoffs if collect is not None else [])]
        for cutoff, frame in self.stream(wanted, on_excluded, reported=training, only=self.sample):
            if collect is not None:
                collect.add(cutoff, frame)
            if frame is not None and cutoff in training:
                yield frame
        self._uplift = collect

    def open_complaints(self, moment: pd.Timestamp) -> pd.DataFrame | None:
        """The complaints open at `moment` (opened before it, not resolved before it) with the columns the
        overdue-complaint rule reads (`models.retention.overdue_complaint_tiers`, which looks at open ones
        only): its input without loading every complaint into pandas (15.7M at 10M customers). None
        without a complaints table or its `resolved_at` column (then nothing is known to be open)."""
        complaints = self.inputs.tables.complaints
        if complaints is None or "resolved_at" not in complaints.columns:
            return None
        wanted = [c for c in ("customer_id", "opened_at", "resolved_at", "first_response_at", "priority")
                  if c in complaints.columns]
        import ibis

        when = ibis.timestamp(pd.Timestamp(moment).to_pydatetime())  # naive, as the tables' times
        is_open = (complaints.opened_at < when) & (complaints.resolved_at.isnull() | (complaints.resolved_at >= when))
        return self.inputs.con.to_pyarrow(complaints.filter(is_open).select(*wanted)).to_pandas()

    def scoring(self, on_excluded: ExclusionSink, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
        """The scoring rows at `as_of` (default the end of the data), as `features.build.build_scoring_table`
        (no labels)."""
        [frame] = list(self.scoring_pieces(on_excluded, as_of))
        return frame

    def scoring_pieces(self, on_excluded: ExclusionSink, as_of: pd.Timestamp | None = None,
                       piece_rows: int | None = None) -> Iterator[pd.DataFrame]:
        """`scoring`'s rows in consecutive pieces of at most `piece_rows` rows (None: one frame), in
        customer id order: the score stage spools them (`pipelines.scoring_rows`), never holding them all."""
        cutoff = pd.Timestamp(as_of).as_unit("us") if as_of is not None else tables_as_of(self.tables)
        labels = label_names(self.cfg)
        found = False
        for _, frame in self.stream([cutoff], on_excluded, piece_rows=piece_rows):
            if frame is None:
                break
            found = True
            yield frame.drop(columns=labels)
        if not found:  # an empty population: the columns of an empty table
            frame = next(iter_frames(self.cfg, [cutoff], self.inputs, self.customers, keep_empty=True))[1]
            yield frame.drop(columns=labels)

    def uplift(self, settings: UpliftSettings) -> tuple[pd.DataFrame, dict[str, int]]:
        """The uplift rows, as `models.uplift.data.build_uplift_table`: at each uplift cutoff, the population's
        rows of the customers whose first contact record in the treatment window has a known treatment
        (those `training` collected with these settings, else computed now)."""
        collect = self._uplift
        if collect is None or collect.settings != settings:
            collect = _UpliftRows(self.tables, self.cfg.labels, settings, self._sampled_ids())
            for cutoff, rows in self.stream(collect.cutoffs, None, only=self.sample):
                collect.add(cutoff, rows)
        return collect.result()


class _UpliftRows:
    """The uplift rows gathered cutoff by cutoff from a stream of population rows (of the training sample's
    customers under `labels.max_training_customers`, as `models.uplift.data.iter_uplift_tables`)."""

    def __init__(self, tables: Tables, labels: LabelSettings, settings: UpliftSettings,
                 sample: pd.Series | None) -> None:
        """`sample`: the ids of the training sample (`RelationalSource.sample`), None for every customer."""
        assert tables.contacts is not None
        self.contacts, self.settings, self.sample = tables.contacts, settings, sample
        self.cutoffs = [pd.Timestamp(c).as_unit("us") for c in uplift_cutoffs(tables, labels, settings)]
        self.frames: list[pd.DataFrame] = []
        self.totals: dict[str, int] = {}

    def add(self, cutoff: pd.Timestamp, rows: pd.DataFrame | None) -> None:
        if cutoff not in self.cutoffs:
            return
        assigned, unknown = contact_assignments(self.contacts, cutoff, self.settings.treatment_window_days)
        in_population = (is_in(assigned["customer_id"], rows["customer_id"]) if rows is not None
                         else np.zeros(len(assigned), dtype=bool))
        counts = {"contact_records_unknown_treatment": unknown}
        if self.sample is None:
            counts["contacted_not_in_population"] = int((~in_population).sum())
        else:
            in_sample = is_in(assigned["customer_id"], self.sample)
            counts["contacted_not_in_population"] = int((in_sample & ~in_population).sum())
            counts["contacted_not_in_training_sample"] = int((~in_sample).sum())
        for key, count in counts.items():
            self.totals[key] = self.totals.get(key, 0) + count
        if rows is None or not in_population.any():
            return
        chosen = rows[is_in(rows["customer_id"], assigned["customer_id"])]
        chosen = chosen.drop(columns=["days_to_churn"], errors="ignore").reset_index(drop=True)
        self.frames.append(chosen.merge(assigned[in_population], on="customer_id", how="left", validate="one_to_one"))

    def result(self) -> tuple[pd.DataFrame, dict[str, int]]:
        if not self.frames:
            return pd.DataFrame(), self.totals
        return pd.concat(self.frames, ignore_index=True), self.totals

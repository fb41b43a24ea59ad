"""The relational features on every engine: DuckDB (1 and 2 threads), a local Spark and a PostgreSQL
server give the same feature and label tables, cell for cell, and the pandas engine's on the ported
columns. `make test-spark` runs these (pytest -m spark); `make test` leaves them out (no pyspark,
Java or PostgreSQL needed there).

Spark runs as `local[2]` through `pipelines.relational.connect_spark` (the session time zone UTC);
PostgreSQL is a throwaway server on 127.0.0.1 (tests/features/postgres_server.py) holding the
tables as a warehouse would, in the contract's names and types.
"""

from __future__ import annotations

from pathlib import Path

import ibis
import pandas as pd
import pytest

from features.build import build_training_table, training_cutoffs
from features.contract import Tables
from features.relational.engine import RelationalTables, feature_table, label_table
from features.settings import LabelSettings, SparkSettings
from pipelines.config import parse_config
from pipelines.relational import (TableFile, build_frames, connect, connect_spark, cutoffs_on, read_tables,
                                  to_feature_frame, with_complaint_tone)
from tests.features.postgres_server import postgres_server
from tests.features.relational_bank import (SETTINGS, TABLE_NAMES, assert_matches_pandas, frames, ported_columns,
                                            tables_frames, write_bank)

pytestmark = [pytest.mark.spark,
              # pyspark 4.0's and Ibis's conversions to pandas call options pandas 3 deprecates (hundreds a run)
              pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")]

DEFINITIONS = ["closure", "inactivity"]
SPARK = SparkSettings(master="local[2]", config={"spark.sql.shuffle.partitions": "2"})


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tables, dict[str, TableFile]]:
    return write_bank(tmp_path_factory.mktemp("engines"))


@pytest.fixture(scope="module")
def duckdb_frames(bank) -> dict[str, pd.DataFrame]:
    """DuckDB's tables (1 thread) for each label definition: the reference of the other engines."""
    tables, files = bank
    out = {}
    for definition in DEFINITIONS:
        labels = LabelSettings(definition=definition)
        out[definition] = frames(connect(threads=1), files, training_cutoffs(tables, labels), labels)
    return out


@pytest.fixture(scope="module")
def spark():
    """An Ibis connection to a local Spark session (two cores), stopped after the module."""
    con = connect_spark(SPARK)
    yield con
    con.disconnect()


@pytest.fixture(scope="module")
def postgres(bank):
    """A PostgreSQL server on 127.0.0.1 holding the bank's tables as typed by the engine (DuckDB
    reads the files; the typed tables are loaded as they are); stopped however the module ends."""
    _, files = bank
    duck = connect(threads=1)
    typed = read_tables(duck, files)
    with postgres_server() as keywords:
        con = ibis.postgres.connect(**keywords)
        try:
            for name in TABLE_NAMES:
                table = getattr(typed, name)
                con.create_table(name, duck.to_pyarrow(table), schema=table.schema())
            yield con
        finally:
            con.disconnect()


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_duckdb_threads_and_spark_give_identical_tables(bank, duckdb_frames, spark, definition: str) -> None:
    tables, files = bank
    labels = LabelSettings(definition=definition)
    cutoffs = training_cutoffs(tables, labels)
    assert len(cutoffs) > 5
    one = duckdb_frames[definition]
    assert list(one.columns) == ported_columns(labels) and len(one) > 500
    pd.testing.assert_frame_equal(frames(connect(threads=2), files, cutoffs, labels), one, check_exact=True)
    on_spark = frames(spark, files, cutoffs, labels)
    pd.testing.assert_frame_equal(on_spark, one, check_exact=True)  # dtypes too
    assert_matches_pandas(on_spark, build_training_table(tables, SETTINGS, labels))


def test_spark_reads_configured_files_as_duckdb_reads_them(bank, spark, tmp_path: Path) -> None:
    """From config (`features.spark`, `data.tables` with column mappings), CSV files and a Parquet
    file of zone-aware times (Europe/Paris, read as UTC) on Spark give DuckDB's tables from the naive
    UTC Parquet files; surveys too, with answers at equal times whose input order (the row position,
    read differently by each engine) decides the latest."""
    tables, files = bank
    surveys = tables.surveys
    again = surveys.iloc[:30].assign(nps=10 - surveys["nps"].iloc[:30], csat=6 - surveys["csat"].iloc[:30])
    surveys = pd.concat([surveys, again], ignore_index=True)  # the later row of a tie is the latest answer
    surveys.to_parquet(tmp_path / "surveys.parquet", row_group_size=50)
    parquet = dict(files, surveys=TableFile(tmp_path / "surveys.parquet", "parquet", {}))
    mapping = {"transactions": {"amount": "value_eur", "timestamp": "booked_at"},
               "surveys": {"answered_at": "answered"}, "customers": {"customer_id": "client"}}
    data = {}
    for name in TABLE_NAMES:
        frame = (surveys if name == "surveys" else getattr(tables, name)).rename(columns=mapping.get(name, {}))
        if name == "transactions":  # the same instants, written with their zone
            path = tmp_path / "transactions_paris.parquet"
            frame.assign(booked_at=frame["booked_at"].dt.tz_localize("UTC").dt.tz_convert("Europe/Paris")).to_parquet(
                path, row_group_size=500)
        else:
            path = tmp_path / f"{name}.csv"
            frame.to_csv(path, index=False)
        data[name] = {"path": str(path), "columns": mapping.get(name, {})}
    cfg = parse_config({"data": {"tables": data}, "features": {"btyd": False, "spark": SPARK.model_dump()}})
    cutoffs = training_cutoffs(tables, cfg.labels)[-3:]
    families = ("rfm", "surveys")
    features, labels = build_frames(cfg, cutoffs, families=families, engine="spark")

    con = connect(threads=2)
    typed = read_tables(con, parquet)
    pd.testing.assert_frame_equal(features, to_feature_frame(
        con, feature_table(typed, cutoffs, SETTINGS, cfg.labels, families), SETTINGS), check_exact=True)
    pd.testing.assert_frame_equal(labels, to_feature_frame(con, label_table(typed, cutoffs, cfg.labels), SETTINGS),
                                  check_exact=True)
    # some latest answers are the later row of a tie (which the earlier row's value would contradict)
    tied = again.merge(features, on="customer_id")
    tied = tied[tied["answered_at"] < tied["cutoff"]]
    assert (tied["nps"] == tied["last_nps"]).sum() > 5


def test_complaint_tone_on_spark_is_duckdbs(bank, spark, tmp_path: Path) -> None:
    """`features.complaint_sentiment`: texts scored in Python in batches, joined back on each engine."""
    tables, files = bank
    phrases = ["Terrible service, I am furious and want my money back!", "Thanks, resolved quickly, great help.",
               "The app froze during a transfer.", "", "   ", None]
    complaints = tables.complaints.assign(text=[phrases[i % len(phrases)] for i in range(len(tables.complaints))])
    complaints.to_parquet(tmp_path / "complaints.parquet", row_group_size=40)
    files = dict(files, complaints=TableFile(tmp_path / "complaints.parquet", "parquet", {}))
    settings = SETTINGS.model_copy(update={"complaint_sentiment": True})
    labels = LabelSettings()
    cutoffs = training_cutoffs(tables, labels)[-4:]

    def tone(con) -> pd.DataFrame:
        typed = with_complaint_tone(con, read_tables(con, files), settings, rows=50)
        return to_feature_frame(con, feature_table(typed, cutoffs_on(con, cutoffs), settings, labels, ("complaints",)),
                                settings)

    duck = tone(connect(threads=2))
    assert duck["negative_complaints_90d"].sum() > 0 and duck["mean_complaint_sentiment_90d"].notna().any()
    pd.testing.assert_frame_equal(tone(spark), duck, check_exact=True)


@pytest.mark.parametrize("definition", DEFINITIONS)
def test_postgres_gives_duckdbs_tables(bank, duckdb_frames, postgres, definition: str) -> None:
    tables, _ = bank
    labels = LabelSettings(definition=definition)
    warehouse = RelationalTables(**{name: postgres.table(name) for name in TABLE_NAMES})
    got = tables_frames(postgres, warehouse, training_cutoffs(tables, labels), labels)
    pd.testing.assert_frame_equal(got, duckdb_frames[definition], check_exact=True)

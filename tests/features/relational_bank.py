"""The small bank the relational engine's tests build on every engine, and the comparisons they share
(tests/features/test_relational.py: DuckDB against the pandas engine; test_relational_engines.py:
DuckDB, Spark and PostgreSQL against each other)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.catalogue import catalogue
from features.contract import Tables
from features.relational.engine import PORTED_FAMILIES, feature_table, label_table
from features.settings import FeatureSettings, LabelSettings
from pipelines.relational import TableFile, cutoffs_on, read_tables, to_feature_frame
from tests.features.factories import random_tables

SETTINGS = FeatureSettings(btyd=False)
TABLE_NAMES = ("customers", "transactions", "complaints", "surveys", "contacts")


def write_bank(folder: Path) -> tuple[Tables, dict[str, TableFile]]:
    """A small random bank (60 customers, 4,000 transactions) as Parquet files with small row groups
    (so DuckDB and Spark really scan them in parallel)."""
    tables = random_tables(3, n_customers=60, transactions=4_000)
    files = {}
    for name in TABLE_NAMES:
        path = folder / f"{name}.parquet"
        getattr(tables, name).to_parquet(path, row_group_size=250)
        files[name] = TableFile(path, "parquet", {})
    return tables, files


def frames(con, files: dict[str, TableFile], cutoffs: list[pd.Timestamp], labels: LabelSettings) -> pd.DataFrame:
    """The feature table (ported families) and the label table computed on `con`'s engine, side by side."""
    tables = read_tables(con, files, labels.value_column)
    return tables_frames(con, tables, cutoffs, labels)


def tables_frames(con, tables, cutoffs: list[pd.Timestamp], labels: LabelSettings) -> pd.DataFrame:
    """As `frames`, from tables already on the engine (a warehouse's)."""
    cuts = cutoffs_on(con, cutoffs)
    features = to_feature_frame(con, feature_table(tables, cuts, SETTINGS, labels), SETTINGS)
    target = to_feature_frame(con, label_table(tables, cuts, labels), SETTINGS)
    assert (features[["customer_id", "cutoff"]] == target[["customer_id", "cutoff"]]).all(axis=None)
    return pd.concat([features, target.drop(columns=["customer_id", "cutoff"])], axis=1)


def ported_columns(labels: LabelSettings) -> list[str]:
    """customer_id, cutoff, the ported features in catalogue order, then the labels."""
    ported = [i.name for i in catalogue(SETTINGS) if i.family in PORTED_FAMILIES]
    label_columns = ["churned", "future_value"] + (["days_to_churn"] if labels.definition == "closure" else [])
    return ["customer_id", "cutoff", *ported, *label_columns]


def assert_matches_pandas(got: pd.DataFrame, reference: pd.DataFrame) -> None:
    """`got` equals the pandas engine's table on its columns: same rows and dtypes, every cell equal (sums of
    money, tones and durations too: both engines sum them exactly, features/_grouping.py `decimal_units`)."""
    expected = reference[list(got.columns)]
    assert len(got) == len(expected) and got.dtypes.equals(expected.dtypes)
    for column in got.columns:
        pd.testing.assert_series_equal(got[column], expected[column], check_exact=True, obj=column)

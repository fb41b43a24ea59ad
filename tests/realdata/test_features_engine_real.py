"""`features.engine: duckdb` on the public real datasets, through the CLI as a user runs it: the config
`churn init` writes (the users' column names, CSV files, the churn definition it picks), then
`churn validate` and `churn features` with each engine. The DuckDB tables must be the pandas engine's
(tests/pipelines/test_features_engine.py `assert_same_table`), customers left out included."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from tests.pipelines.test_features_engine import assert_same_table
from tests.realdata.datasets import RealDataset
from tests.realdata.test_end_to_end import churn

OUTPUTS = ("train.parquet", "score.parquet", "excluded.parquet")


RUNS = ("pandas", "duckdb", "duckdb-buckets")
"""The pandas engine, DuckDB, and DuckDB with its customers in buckets (`features.duckdb.rows_per_statement`)."""

ROWS_PER_STATEMENT = 3_000
"""A few buckets of either dataset's customers: 4 for the retailer's 2,469 households at its 4 training cutoffs,
4 per cutoff for the 9,379 subscribers."""


def _both_engines(folder: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """Validate once, run `churn features` per engine into its own folder; the tables written."""
    raw = yaml.safe_load((folder / "mine.yaml").read_text(encoding="utf-8"))
    for engine in RUNS:
        raw["features"]["engine"] = engine.split("-")[0]
        raw["features"].setdefault("duckdb", {})["rows_per_statement"] = ROWS_PER_STATEMENT if engine == "duckdb-buckets" else None
        raw["paths"]["features_dir"] = f"{engine}/features"
        (folder / f"{engine}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    churn("validate", "--config", "pandas.yaml", cwd=folder)
    tables = {}
    for engine in RUNS:
        churn("features", "--config", f"{engine}.yaml", cwd=folder)
        tables[engine] = {name: pd.read_parquet(folder / engine / "features" / name) for name in OUTPUTS}
    return tables


def _assert_engines_agree(tables: dict[str, dict[str, pd.DataFrame]]) -> None:
    assert len(tables["pandas"]["train.parquet"]) > ROWS_PER_STATEMENT  # so the training rows came in buckets
    for name in OUTPUTS:  # the buckets change how DuckDB computes, never what
        pd.testing.assert_frame_equal(tables["duckdb-buckets"][name], tables["duckdb"][name], check_exact=True,
                                      obj=name)
        got, expected = tables["duckdb"][name], tables["pandas"][name]
        if expected.empty:
            assert got.empty and list(got.columns) == list(expected.columns), name
        else:
            assert_same_table(got, expected, name)


def test_retail_purchase_log_on_duckdb_is_the_pandas_engines(retail_data: RealDataset, tmp_path: Path) -> None:
    churn("init", "--customers", str(retail_data.customers), "--transactions", str(retail_data.transactions),
          "--column", "customers.customer_id=household_id", "--column", "transactions.customer_id=household_id",
          "--column", "transactions.timestamp=transaction_timestamp", "--column", "transactions.amount=sales_value",
          "--out", "mine.yaml", cwd=tmp_path)
    tables = _both_engines(tmp_path)
    assert len(tables["pandas"]["excluded.parquet"]) > 0  # the inactivity look-back leaves customers out
    _assert_engines_agree(tables)


def test_subscription_snapshot_on_duckdb_is_the_pandas_engines(snapshot_data: RealDataset, tmp_path: Path) -> None:
    churn("init", "--customers", str(snapshot_data.customers),
          "--column", "customers.signup_date=subscription_start", "--out", "mine.yaml", cwd=tmp_path)
    tables = _both_engines(tmp_path)
    static = yaml.safe_load((tmp_path / "mine.yaml").read_text(encoding="utf-8"))["features"]["static_features"]
    assert len(static) > 10 and set(static) <= set(tables["duckdb"]["train.parquet"].columns)  # customers only
    _assert_engines_agree(tables)

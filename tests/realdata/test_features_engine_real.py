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


def _both_engines(folder: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """Validate once, run `churn features` per engine into its own folder; the tables written."""
    raw = yaml.safe_load((folder / "mine.yaml").read_text(encoding="utf-8"))
    for engine in ("pandas", "duckdb"):
        raw["features"]["engine"] = engine
        raw["paths"]["features_dir"] = f"{engine}/features"
        (folder / f"{engine}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    churn("validate", "--config", "pandas.yaml", cwd=folder)
    tables = {}
    for engine in ("pandas", "duckdb"):
        churn("features", "--config", f"{engine}.yaml", cwd=folder)
        tables[engine] = {name: pd.read_parquet(folder / engine / "features" / name) for name in OUTPUTS}
    return tables


def _assert_engines_agree(tables: dict[str, dict[str, pd.DataFrame]]) -> None:
    for name in OUTPUTS:
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

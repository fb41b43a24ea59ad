"""The score stage's read of the recent transactions on the real purchase log, saved as Parquet as a user
would save it (household ids as whole numbers, times typed): the config `churn init` writes, then the scoring
table from the rows read equals the one from every row (pipelines/tables.py `read_recent_transactions`)."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import yaml

from features.build import prepare_taking, scoring_table_of, transactions_read_from
from pipelines.config import load_config
from pipelines.score import scoring_read_from
from pipelines.tables import load_tables
from tests.realdata.datasets import RealDataset
from tests.realdata.test_end_to_end import churn


def test_retail_log_as_parquet_scores_the_same_from_the_rows_it_reads(retail_data: RealDataset, tmp_path: Path) -> None:
    churn("init", "--customers", str(retail_data.customers), "--transactions", str(retail_data.transactions),
          "--column", "customers.customer_id=household_id", "--column", "transactions.customer_id=household_id",
          "--column", "transactions.timestamp=transaction_timestamp", "--column", "transactions.amount=sales_value",
          "--out", "mine.yaml", cwd=tmp_path)
    raw = yaml.safe_load((tmp_path / "mine.yaml").read_text(encoding="utf-8"))
    customers = pd.read_csv(retail_data.customers, parse_dates=["first_purchase_date"])
    transactions = pd.read_csv(retail_data.transactions, parse_dates=["transaction_timestamp"])
    assert transactions["household_id"].dtype == "int64"  # ids as numbers: the read keeps their text form
    customers.to_parquet(tmp_path / "customers.parquet", index=False)
    transactions.to_parquet(tmp_path / "transactions.parquet", index=False, row_group_size=200_000)
    for name in ("customers", "transactions"):
        raw["data"]["tables"][name]["path"] = str(tmp_path / f"{name}.parquet")
    (tmp_path / "parquet.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    cfg = load_config(tmp_path / "parquet.yaml")

    whole = load_tables(cfg)
    recent = load_tables(cfg, transactions_from=functools.partial(scoring_read_from, as_of=None, cfg=cfg))
    assert recent.as_of == whole.as_of
    earlier = recent.earlier_transactions
    assert earlier is not None  # the recent read was taken: Parquet, typed times, whole-number ids
    assert earlier.since == transactions_read_from(whole.as_of, cfg.features, cfg.labels)
    # one year of purchases: every row is within the features' look-back, so every row is read
    first = whole.transactions["timestamp"].min()
    assert first >= earlier.since and earlier.rows == 0 and len(recent.transactions) == len(whole.transactions)
    tables = []
    for loaded in (whole, recent):
        prepared = prepare_taking([loaded], cfg.features, cfg.labels.value_column)
        tables.append(scoring_table_of(prepared, whole.as_of, cfg.features, cfg.labels))
    pd.testing.assert_frame_equal(tables[1], tables[0], check_exact=True)
    assert len(tables[0]) > 1_000

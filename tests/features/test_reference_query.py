"""The hand-written DuckDB reference query of the benchmarks (benchmarks/reference_query.py) computes the
relational engine's table cell for cell, so it stays a reference of the same work when a definition changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.reference_query import TABLES, cross_check, differences
from tests.features.factories import random_tables


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random bank as Parquet files, with the ties the definitions break: survey answers at the
    same time as the customer's previous one (the later file row wins) and outflows repeated a day later
    (the most recent of equal largest outflows)."""
    tables = random_tables(3, n_customers=60, transactions=4_000)
    surveys = tables.surveys.sort_values(["customer_id", "answered_at"], kind="stable", ignore_index=True)
    same_customer = surveys["customer_id"].eq(surveys["customer_id"].shift())
    tie = same_customer & (np.arange(len(surveys)) % 3 == 0)
    surveys.loc[tie, "answered_at"] = surveys["answered_at"].shift()[tie]
    tx = tables.transactions
    outflows = tx[tx["amount"] < 0].iloc[::4].copy()
    outflows["timestamp"] = outflows["timestamp"] + pd.Timedelta(days=1)
    tables.transactions = pd.concat([tx, outflows], ignore_index=True)
    tables.surveys = surveys
    out = tmp_path_factory.mktemp("reference")
    for name in TABLES:
        getattr(tables, name).to_parquet(out / f"{name}.parquet", row_group_size=250)
    return out


@pytest.mark.parametrize(("definition", "cutoff"), [("closure", "2024-09-17 13:05:07.250000"),
                                                     ("inactivity", "2024-06-01")])
def test_the_reference_query_equals_the_engine_cell_for_cell(folder: Path, definition: str, cutoff: str) -> None:
    result = cross_check(str(folder), cutoff, threads=2, labels={"definition": definition})
    assert result["equal"] and not result["differing_cells_exact"], result  # money summed exactly by both
    assert result["rows"][0] > 20


def test_a_differing_cell_is_counted_in_its_column() -> None:
    frame = pd.DataFrame({"customer_id": ["a", "b"], "cutoff": pd.to_datetime(["2024-01-01"] * 2),
                          "x": [1.0, np.nan], "n": [1, 2]})
    other = frame.copy()
    other.loc[1, "x"], other.loc[0, "n"] = 2.0, 3
    result = differences(frame, other)
    assert result["differing_cells_exact"] == {"x": 1, "n": 1} and not result["equal"]
    assert differences(frame, frame.copy())["equal"]

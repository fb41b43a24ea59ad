"""The score stage's scoring rows: spooled to a file and read back as the in-memory table reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipelines.scoring_rows import InMemoryRows, SpooledRows


def table(rows: int, seed: int = 0) -> pd.DataFrame:
    """A scoring-like table: text ids, ints, floats with gaps, a categorical with fixed levels, a date."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(size=rows)
    amount[rng.random(rows) < 0.2] = np.nan
    return pd.DataFrame({
        "customer_id": pd.Series([f"C{i:06d}" for i in range(rows)], dtype="str"),
        "cutoff": pd.Series(pd.Timestamp("2025-07-01"), index=range(rows)).astype("datetime64[us]"),
        "transaction_count_90d": rng.integers(0, 50, rows),
        "transaction_amount_90d": amount,
        "lifecycle_stage": pd.Categorical(rng.choice(["new", "growing", "mature", "declining"], rows),
                                          categories=["new", "growing", "mature", "declining", "dormant"]),
    })


def pieces(frame: pd.DataFrame, sizes: list[int]) -> list[pd.DataFrame]:
    bounds = np.cumsum([0, *sizes])
    return [frame.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds[:-1], bounds[1:])]


def same_values(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Equal cell for cell and index for index; categoricals compared by their text."""
    assert list(left.columns) == list(right.columns)
    assert list(left.index) == list(right.index)
    for name in left.columns:
        a, b = left[name], right[name]
        if isinstance(a.dtype, pd.CategoricalDtype):
            a, b = a.astype("str"), b.astype("str")
        else:
            assert a.dtype == b.dtype, name
        pd.testing.assert_series_equal(a, b, check_categorical=False)


def test_spooled_batches_are_the_in_memory_batches_whatever_the_pieces(tmp_path: Path) -> None:
    frame = table(1_000)
    spooled = SpooledRows(pieces(frame, [7, 300, 1, 0, 692]), tmp_path)
    memory = InMemoryRows(frame)
    try:
        assert len(spooled) == len(memory) == 1_000
        for size in (1, 64, 333, 1_000, 5_000):
            ours, theirs = list(spooled.batches(size)), list(memory.batches(size))
            assert [len(b) for b in ours] == [len(b) for b in theirs]
            assert all(len(b) == size for b in ours[:-1])
            for a, b in zip(ours, theirs):
                same_values(a, b)
        assert list(spooled.head.columns) == list(frame.columns) and spooled.head.empty
        positions = [999, 3, 500, 3, 7, 0]  # any order, repeats, across the file's row groups
        same_values(spooled.take(positions), memory.take(positions))
        assert spooled.take([]).empty
        with pytest.raises(IndexError):
            spooled.take([1_000])
    finally:
        spooled.close()
    assert not spooled.folder.exists() and not list(tmp_path.iterdir())


def test_an_empty_table_has_its_columns_and_no_batches(tmp_path: Path) -> None:
    spooled = SpooledRows([table(0)], tmp_path)
    assert len(spooled) == 0 and list(spooled.batches(10)) == []
    assert list(spooled.head.columns) == list(table(0).columns)
    spooled.close()


def test_pieces_that_cannot_take_the_first_pieces_types_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    first, second = pieces(table(20), [10, 10])
    second = second.assign(transaction_count_90d=second["transaction_count_90d"].astype("str") + " purchases")
    with pytest.raises(pa.ArrowInvalid):
        SpooledRows([first, second], tmp_path)
    assert not list(tmp_path.iterdir())


def test_an_engine_failure_midway_leaves_no_spool(tmp_path: Path) -> None:
    def failing():
        yield table(10)
        raise RuntimeError("the engine stopped")

    with pytest.raises(RuntimeError, match="the engine stopped"):
        SpooledRows(failing(), tmp_path)
    assert not list(tmp_path.iterdir())

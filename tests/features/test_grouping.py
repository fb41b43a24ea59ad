"""The vectorised helpers: id lookup against a plain dict, exact sequential sums."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features._grouping import (IdLookup, add_counts, add_sums, add_units, cutoff_us, decimal_units, distinct_sorted,
                               row_chunks)


def _reference(values: list[str | None], vocabulary: list[str]) -> np.ndarray:
    where = {v: i for i, v in enumerate(vocabulary)}
    return np.array([where.get(v, -1) if v is not None else -1 for v in values], dtype=np.int32)


@pytest.mark.parametrize(("make_id", "hashed_here"), [
    (lambda i: f"C{i:07d}", True),      # 8 bytes: one machine word
    (lambda i: f"CUST{i:06d}", True),   # 10 bytes: two overlapping words
    (lambda i: f"{i:016d}", True),      # 16 bytes
    (lambda i: f"{i:05d}", True),       # under 8 bytes
    (lambda i: f"客户{i:05d}", True),    # multi-byte UTF-8, fixed byte width (11 bytes)
    (lambda i: f"id-{i}", False),       # variable width: Arrow's lookup
    (lambda i: f"{i:020d}", False),     # above 16 bytes: Arrow's lookup
])
def test_id_lookup_matches_a_dictionary(make_id, hashed_here: bool) -> None:
    rng = np.random.default_rng(0)
    vocabulary = sorted({make_id(int(i)) for i in rng.choice(90_000, 30_000, replace=False)})
    strangers = [make_id(int(i)) for i in range(90_000, 90_050)]
    values = [vocabulary[int(i)] for i in rng.integers(0, len(vocabulary), 5_000)] + strangers
    values = [values[int(i)] for i in rng.permutation(len(values))]
    lookup = IdLookup(pa.array(vocabulary))
    assert (lookup._fixed is not None) == hashed_here
    found = lookup.positions(pd.Series(values, dtype="str"))
    np.testing.assert_array_equal(found, _reference(values, vocabulary))
    with_missing = pd.Series(values[:100] + [None, "x"], dtype="str")
    np.testing.assert_array_equal(lookup.positions(with_missing), _reference(values[:100] + [None, "x"], vocabulary))
    sliced = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(values[:7]), pa.array(values[7:40])])))
    np.testing.assert_array_equal(lookup.positions(sliced), _reference(values[:40], vocabulary))


@pytest.mark.parametrize("span", [50, 5_000_000])  # keys in a narrow range (bincount) or scattered (np.add.at)
def test_money_units_and_counts_add_exactly_however_the_rows_are_chunked_or_ordered(span: int) -> None:
    """`add_units` adds whole millionths in bulk, in no particular order: the totals must still equal adding the
    rows one at a time, exactly, whatever the chunks, the order and the path (including totals far beyond 2^31)."""
    rng = np.random.default_rng(3)
    key = rng.integers(0, span, 20_000)
    units = decimal_units(np.round(rng.normal(0, 1e6, 20_000) * rng.random(20_000) ** 6, 2))
    expected_sums = np.zeros(span)
    expected_counts = np.zeros(span, dtype=np.int64)
    for k, u in zip(key.tolist(), units.tolist()):
        expected_sums[k] += u
        expected_counts[k] += 1
    order = rng.permutation(len(key))
    for rows_at_a_time, shuffled in ((len(key), False), (997, False), (1, False), (3_001, True)):
        k, u = (key[order], units[order]) if shuffled else (key, units)
        sums, counts = np.zeros(span), np.zeros(span, dtype=np.int64)
        for rows in row_chunks(len(k), size=rows_at_a_time):
            add_units(sums, k[rows], u[rows])
            add_counts(counts, k[rows])
        np.testing.assert_array_equal(sums, expected_sums)
        np.testing.assert_array_equal(counts, expected_counts)
    assert np.abs(expected_sums).max() > 2**31  # millionths: totals beyond 32 bits, still exact


def test_add_sums_is_the_same_however_the_rows_are_chunked() -> None:
    rng = np.random.default_rng(1)
    key = rng.integers(0, 50, 10_000)
    weights = rng.normal(0, 1e6, 10_000) * rng.random(10_000) ** 8
    whole = np.zeros(50)
    add_sums(whole, key, weights)
    chunked = np.zeros(50)
    for rows in row_chunks(len(key), size=333):
        add_sums(chunked, key[rows], weights[rows])
    one_by_one = np.zeros(50)
    for k, w in zip(key, weights):
        one_by_one[k] += w
    np.testing.assert_array_equal(whole, chunked)
    np.testing.assert_array_equal(whole, one_by_one)


@pytest.mark.parametrize("size", [0, 1, 2, 5_000])
def test_distinct_sorted_matches_numpys_unique(size: int) -> None:
    rng = np.random.default_rng(size)
    values = (rng.integers(0, 300, size).astype(np.int64) << 32) | rng.integers(0, 40, size)
    distinct = distinct_sorted(values)
    np.testing.assert_array_equal(distinct, np.unique(values))
    assert distinct.dtype == values.dtype


def test_cutoffs_must_be_naive_and_whole_microseconds() -> None:
    assert cutoff_us(pd.Timestamp("1970-01-02")) == 86_400_000_000
    with pytest.raises(ValueError, match="time zone"):
        cutoff_us(pd.Timestamp("2024-01-01", tz="UTC"))
    with pytest.raises(ValueError, match="sub-microsecond"):
        cutoff_us(pd.Timestamp("2024-01-01 00:00:00.000000001"))


def test_time_blocks_keep_rows_and_find_every_row_of_a_time_range() -> None:
    from features._grouping import US_PER_DAY, Events

    rng = np.random.default_rng(2)
    n = 5_000
    time = rng.integers(0, 400 * US_PER_DAY, n) + 1_700_000_000_000_000
    events = Events(np.arange(n, dtype=np.int32), time, {"amount": rng.normal(size=n)})
    blocked = events.in_time_blocks()
    assert sorted(blocked.code.tolist()) == list(range(n))
    np.testing.assert_array_equal(blocked.time, time[blocked.code])
    np.testing.assert_array_equal(blocked.columns["amount"], events.columns["amount"][blocked.code])
    weeks = (blocked.time - blocked.block_origin) // (7 * US_PER_DAY)
    assert np.all(np.diff(weeks) >= 0)
    for week in np.unique(weeks):  # input order kept within a block
        assert np.all(np.diff(blocked.code[weeks == week]) > 0)
    for _ in range(200):
        start, end = np.sort(rng.integers(time.min() - 30 * US_PER_DAY, time.max() + 30 * US_PER_DAY, 2))
        rows = blocked.rows_between(int(start), int(end))
        inside = (blocked.time >= start) & (blocked.time < end)
        assert inside[rows].sum() == inside.sum()
    nothing = blocked.rows_between(0, blocked.block_origin)
    assert nothing.stop == nothing.start


def test_blocked_rows_are_the_same_whether_reordered_or_indexed() -> None:
    from features._grouping import US_PER_DAY, Events

    rng = np.random.default_rng(3)
    n = 9_000
    time = rng.integers(0, 300 * US_PER_DAY, n) + 1_700_000_000_000_000
    events = Events(rng.integers(0, 50, n).astype(np.int32), time, {"amount": rng.normal(size=n)})
    reordered, indexed = events.in_time_blocks(materialise=True), events.in_time_blocks(materialise=False)
    assert reordered.order is None and indexed.order is not None
    for _ in range(50):
        start, end = np.sort(rng.integers(time.min(), time.max(), 2))
        one = list(reordered.chunks_between(int(start), int(end), ("amount",)))
        two = list(indexed.chunks_between(int(start), int(end), ("amount",)))
        for (c1, t1, (a1,)), (c2, t2, (a2,)) in zip(one, two, strict=True):
            np.testing.assert_array_equal(c1, c2)
            np.testing.assert_array_equal(t1, t2)
            np.testing.assert_array_equal(a1, a2)
        older = [np.sort(np.concatenate([t for _, t in e.chunks_before_block_of(int(start))]))
                 for e in (reordered, indexed)]
        np.testing.assert_array_equal(*older)
        assert older[0].max(initial=0) < start


@pytest.mark.parametrize("materialise", [True, False])
def test_events_loaded_from_a_time_answer_as_the_whole_table_and_refuse_to_look_earlier(materialise: bool) -> None:
    """Rows from a block boundary on plus each customer's latest earlier time (`Events.with_earlier`): the
    latest time before any later block and the rows of any later window are those of all the rows; a window
    or a latest time reaching before the loaded rows raises instead of coming out short."""
    from features._grouping import BLOCK_DAYS, US_PER_DAY, Events

    rng = np.random.default_rng(9)
    n, customers, width = 5_000, 30, BLOCK_DAYS * US_PER_DAY
    time = rng.integers(0, 300 * US_PER_DAY, n) + 1_700_000_000_000_000
    code = rng.integers(0, customers, n).astype(np.int32)
    loaded_from = (int(time.min()) + 120 * US_PER_DAY) // width * width
    old = time < loaded_from
    earlier = np.full(customers, np.iinfo(np.int64).min)
    np.maximum.at(earlier, code[old], time[old])
    whole = Events(code, time).in_time_blocks(materialise)
    part = Events(code[~old], time[~old]).with_earlier(loaded_from, earlier).in_time_blocks(materialise)
    assert part.loaded_from == loaded_from
    for moment in sorted(rng.integers(loaded_from, int(time.max()), 8)):
        np.testing.assert_array_equal(part.latest_before_block_of(int(moment), customers),
                                      whole.latest_before_block_of(int(moment), customers))
        rows = [np.sort(np.concatenate([t[(t >= loaded_from) & (t < moment)] for _, t, _ in e.chunks_between(
            loaded_from, int(moment))])) for e in (part, whole)]
        np.testing.assert_array_equal(rows[0], rows[1])
    with pytest.raises(ValueError, match="were not loaded"):
        part.rows_between(loaded_from - US_PER_DAY, loaded_from + width)
    with pytest.raises(ValueError, match="were not loaded"):
        part.latest_before_block_of(loaded_from - 1, customers)
    with pytest.raises(ValueError, match="time-block grid"):
        Events(code, time).with_earlier(loaded_from + 1, earlier)


def test_latest_time_before_a_block_is_the_same_with_or_without_the_running_cache() -> None:
    from features._grouping import US_PER_DAY, Events

    rng = np.random.default_rng(4)
    n, customers = 6_000, 40
    time = rng.integers(0, 200 * US_PER_DAY, n) + 1_700_000_000_000_000
    code = rng.integers(0, customers, n).astype(np.int32)
    reordered = Events(code, time).in_time_blocks(materialise=True)
    moments = list(np.sort(rng.integers(time.min(), time.max(), 12)))
    for moment in moments + moments[::-1]:  # ascending (cache extended), then descending (recomputed)
        got = reordered.latest_before_block_of(int(moment), customers)
        fresh = Events(code, time).in_time_blocks(materialise=False).latest_before_block_of(int(moment), customers)
        boundary = reordered.block_origin + (int(moment) - reordered.block_origin) // (7 * US_PER_DAY) * 7 * US_PER_DAY
        expected = np.full(customers, np.iinfo(np.int64).min)
        np.maximum.at(expected, code[time < boundary], time[time < boundary])
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(fresh, expected)


@pytest.mark.parametrize("chunk_rows", [None, 1, 37, 1_000])
def test_purchase_history_counts_distinct_purchase_days_however_the_rows_are_chunked(chunk_rows, monkeypatch) -> None:
    """Frequency, recency, age and mean spend against a per-customer set of purchase days, for rows in
    time blocks read whole or a few at a time (the open day groups carried across chunks), kept in
    blocked order or by an index, with baskets (several rows a day), cutoffs at and after midnight."""
    from features import _grouping
    from features._grouping import US_PER_DAY, Events
    from features.btyd import purchase_history

    if chunk_rows is not None:
        monkeypatch.setattr(_grouping.row_chunks, "__defaults__", (chunk_rows,))
    rng = np.random.default_rng(chunk_rows or 0)
    n, rows = 60, 4_000
    start = cutoff_us(pd.Timestamp("2023-01-01"))
    day = rng.integers(0, 500, rows)
    time = start + day * US_PER_DAY + rng.integers(0, US_PER_DAY, rows) * (rng.random(rows) < 0.5)
    code = rng.integers(0, n - 5, rows).astype(np.int32)  # the last 5 customers never buy
    value = np.round(rng.gamma(2.0, 30.0, rows), 2)  # money: its sums are exact (features._grouping.decimal_units)
    events = Events(code, time, {"label_value": value})
    for cutoff in (start + 300 * US_PER_DAY, start + 300 * US_PER_DAY + 7 * 3_600_000_000, start + 10**15, start):
        expected = {"frequency": np.full(n, np.nan), "recency": np.full(n, np.nan), "age": np.full(n, np.nan),
                    "mean_spend": np.full(n, np.nan)}
        for customer in range(n):
            mine = (code == customer) & (time < cutoff)
            if not mine.any():
                continue
            back = (cutoff - time[mine] - 1) // US_PER_DAY
            purchase_days = np.unique(back)
            expected["frequency"][customer] = len(purchase_days) - 1
            expected["recency"][customer] = back.max() - back.min()
            expected["age"][customer] = back.max() + 1
            spend = float(sum((Decimal(repr(float(v))) for v in value[mine]), Decimal(0)))  # exact, rounded once
            expected["mean_spend"][customer] = spend / len(purchase_days)
        for materialise in (True, False):
            history = purchase_history(events.in_time_blocks(materialise=materialise), n, cutoff)
            for name, values in expected.items():
                np.testing.assert_array_equal(getattr(history, name), values, err_msg=name)
        assert np.isnan(history.frequency[-5:]).all()


def test_purchase_history_memory_does_not_grow_with_a_long_sparse_history() -> None:
    """A few purchases spread over twenty years for many customers (an insurer's claims, say): the day groups
    are closed as the blocks go by, so the flags held stay a few bytes per customer (one chunk of these rows
    spans ~900 eight-day groups: held at once they would be 1.4 GB here)."""
    import tracemalloc

    from features._grouping import US_PER_DAY, Events
    from features.btyd import purchase_history

    rng = np.random.default_rng(5)
    n, rows = 200_000, 2_000
    start = cutoff_us(pd.Timestamp("2000-01-01"))
    time = np.sort(start + rng.integers(0, 20 * 365, rows) * US_PER_DAY)
    events = Events(rng.integers(0, n, rows).astype(np.int32), time, {"label_value": np.ones(rows)}).in_time_blocks()
    tracemalloc.start()
    try:
        history = purchase_history(events, n, start + 20 * 365 * US_PER_DAY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.nansum(history.frequency + 1) == len(np.unique(events.code.astype(np.int64) * 10**6 + (time - start) // US_PER_DAY))
    assert peak < 60 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_indexed_time_blocks_order_the_rows_as_a_stable_sort_by_block() -> None:
    """The row order of indexed blocks, built chunk by chunk in two halves without a range of positions as
    input, is numpy's stable sort by block (rows enough for several chunks per half)."""
    from features._grouping import BLOCK_DAYS, SORT_CHUNK_ROWS, US_PER_DAY, Events

    rng = np.random.default_rng(8)
    n = 5 * SORT_CHUNK_ROWS + 17
    time = rng.integers(0, 400 * US_PER_DAY, n) + 1_700_000_000_000_000
    indexed = Events(rng.integers(0, 1_000, n).astype(np.int32), time, {}).in_time_blocks(materialise=False)
    width = BLOCK_DAYS * US_PER_DAY
    block = (time - indexed.block_origin) // width
    assert indexed.order.dtype == np.int32
    np.testing.assert_array_equal(indexed.order, np.argsort(block, kind="stable"))


@pytest.mark.parametrize("materialise", [True, False])
def test_transaction_summary_is_the_same_however_the_rows_are_chunked(materialise: bool, monkeypatch) -> None:
    """`summarise_transactions` bins a million rows at a time to bound its temporaries; every total must be the
    same with any chunk size (exact sums of millionths, counts, latest days, the largest outflow)."""
    import dataclasses

    import features.rfm
    from features._grouping import US_PER_DAY, Events
    from features.settings import FeatureSettings

    rng = np.random.default_rng(11)
    n, rows = 300, 40_000
    start = cutoff_us(pd.Timestamp("2023-01-01"))
    time = start + rng.integers(0, 500 * US_PER_DAY, rows)
    amount = np.round(rng.normal(40, 90, rows), 2)  # outflows too, some equal: the largest-outflow ties
    events = Events(rng.integers(0, n, rows).astype(np.int32), time, {"amount": amount}).in_time_blocks(materialise)
    cutoff = start + 400 * US_PER_DAY + 6 * 3600 * 10**6
    summaries = []
    for chunk_rows in (features.rfm.SUMMARY_CHUNK_ROWS, 1, 97, 4_099):
        monkeypatch.setattr(features.rfm, "SUMMARY_CHUNK_ROWS", chunk_rows)
        summaries.append(features.rfm.summarise_transactions(events, n, cutoff, FeatureSettings()))
    for other in summaries[1:]:
        for field in dataclasses.fields(other):
            np.testing.assert_array_equal(getattr(other, field.name), getattr(summaries[0], field.name), err_msg=field.name)


def test_a_column_memo_computes_once_per_column_and_forgets_changed_or_dropped_columns() -> None:
    import gc

    from features._grouping import ColumnMemo

    memo = ColumnMemo()
    calls: list[int] = []

    def compute(frame: pd.DataFrame) -> int:
        calls.append(1)
        return int(frame["customer_id"].str.len().sum())

    frame = pd.DataFrame({"customer_id": pd.array(["C1", "C22", "C333"], dtype="str")})
    assert memo.get(frame["customer_id"], lambda: compute(frame)) == 9
    assert memo.get(frame["customer_id"], lambda: compute(frame)) == 9 and len(calls) == 1  # the same column
    frame["customer_id"].array[0] = "C4444"  # written in place (bypassing pandas' copy on write): seen
    assert memo.get(frame["customer_id"], lambda: compute(frame)) == 12 and len(calls) == 2
    other = frame.assign(customer_id=pd.array(["X"], dtype="str").repeat(3))  # another column: computed
    assert memo.get(other["customer_id"], lambda: compute(other)) == 3 and len(calls) == 3
    del frame, other
    gc.collect()
    assert memo._entries == {}  # nothing kept for columns that are gone
    numbers = pd.Series([1.0, 2.0])  # not Arrow-backed: never kept
    memo.get(numbers, lambda: calls.append(1))
    memo.get(numbers, lambda: calls.append(1))
    assert len(calls) == 5


def test_validating_and_preparing_loaded_tables_look_each_event_table_up_once(monkeypatch) -> None:
    """`load_tables` validates, the feature build prepares the same frames: the customers are sorted and each
    event table's customer positions found once (on the 1M bank that was 2.5 s of every pandas stage), and the
    features are those of tables looked up afresh."""
    import features._grouping as grouping
    from features.build import build_scoring_table, prepare
    from features.contract import TABLES
    from features.settings import FeatureSettings, LabelSettings
    from features.validation import validate_tables
    from tests.features.factories import random_tables

    made = random_tables(6)
    arrow = {name: getattr(made, name).assign(customer_id=getattr(made, name)["customer_id"].astype("str"))
             for name in made.present()}
    assert all(isinstance(frame["customer_id"].array, pd.arrays.ArrowStringArray) for frame in arrow.values())
    looked_up: list[tuple[int, int]] = []  # (vocabulary, values): the category levels have lookups of their own
    sorted_: list[int] = []
    positions, sort = grouping.IdLookup.arrow_positions, grouping._sorted_ids
    monkeypatch.setattr(grouping.IdLookup, "arrow_positions",
                        lambda self, a: looked_up.append((len(self.vocabulary), len(a))) or positions(self, a))
    monkeypatch.setattr(grouping, "_sorted_ids", lambda ids: sorted_.append(len(ids)) or sort(ids))
    assert [p for p in validate_tables(arrow, made.as_of) if p.severity == "error"] == []
    from features.contract import Tables

    tables = Tables(**arrow, as_of=made.as_of)
    prepared = prepare(tables, FeatureSettings())
    events = [name for name in arrow if name != "customers" and TABLES[name].event_time]
    assert sorted_ == [len(arrow["customers"])]
    by_customer = sorted(rows for vocabulary, rows in looked_up if vocabulary == len(arrow["customers"]))
    assert by_customer == sorted(len(arrow[name]) for name in events)
    assert not prepared.transactions.code.flags.writeable  # shared with the validation's: never written
    monkeypatch.undo()
    fresh = Tables(**{name: frame.copy(deep=True) for name, frame in arrow.items()}, as_of=made.as_of)
    settings, labels = FeatureSettings(), LabelSettings()
    pd.testing.assert_frame_equal(build_scoring_table(tables, settings, labels), build_scoring_table(fresh, settings, labels),
                                  check_exact=True)


def test_a_dropped_memo_frees_its_values_at_once() -> None:
    """An IdLookup dropped while the column it looked up lives: its positions must go with it, not wait for
    the cycle collector (they are 4 bytes an event row)."""
    import gc
    import weakref

    from features._grouping import ColumnMemo

    gc.disable()
    try:
        frame = pd.DataFrame({"customer_id": pd.array(["C1", "C2"], dtype="str")})
        memo = ColumnMemo()
        value = np.arange(3)
        memo.get(frame["customer_id"], lambda: value)
        watched = weakref.ref(value)
        del memo, value
        assert watched() is None
    finally:
        gc.enable()

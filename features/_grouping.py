"""Vectorised building blocks shared by the feature families.

The builders never group with pandas per window. Instead every input table is turned
once into flat numpy arrays (`prepare`): each event row gets the integer position of its
customer in the id-sorted customers table (`code`) and its time in integer microseconds.
Per cutoff, every per-customer reduction is then a masked `np.bincount` or `ufunc.at`
over those arrays, which is linear in the number of rows and needs no sort.

Rows keep their input order, and every float reduction adds a customer's rows in that
order, so the result for one customer depends only on that customer's own rows: building
on a partition of the customers gives bit-identical values to building on all of them.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


US_PER_SECOND = 1_000_000
US_PER_HOUR = 3_600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR
NEVER = np.iinfo(np.int64).max
"""Time of something that has not happened (missing end times, open accounts)."""
WORKERS = min(2, os.cpu_count() or 1)
"""Threads for independent bulk work (id lookups, reordering, feature families)."""
T = TypeVar("T")
R = TypeVar("R")


def parallel_map(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`function` over `items` in up to two threads (numpy and Arrow release the GIL in bulk work).

    Only for independent pieces of work whose results do not depend on the order they run in.
    """
    workers = min(WORKERS, len(items))
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def window_day(cutoff: int, time: np.ndarray | int) -> np.ndarray:
    """Which day before the cutoff an event falls on: 0 for [cutoff - 1 day, cutoff), 1 for the day
    before, and so on. "In the last w days" is `window_day < w`, i.e. the half-open window
    [cutoff - w days, cutoff): an event exactly w days back is in it (with date-only data, the
    w calendar days before the cutoff day), one at the cutoff is not (it is after the cutoff).
    """
    return (cutoff - np.asarray(time) - 1) // US_PER_DAY


def cutoff_us(cutoff: pd.Timestamp) -> int:
    """A cutoff as integer microseconds since the epoch (naive, like the data)."""
    stamp = pd.Timestamp(cutoff)
    if stamp.tzinfo is not None:
        raise ValueError(f"cutoff {stamp} has a time zone; the data's times are naive (UTC)")
    nanoseconds = int(stamp.as_unit("ns").value)
    if nanoseconds % 1_000:
        raise ValueError(f"cutoff {stamp} has sub-microsecond precision; use whole microseconds")
    return nanoseconds // 1_000


def as_timestamp(value_us: int) -> pd.Timestamp:
    """Integer microseconds back to a Timestamp with microsecond resolution."""
    return pd.Timestamp(np.datetime64(int(value_us), "us"))


def datetimes_us(values: pd.Series, missing: int = NEVER) -> np.ndarray:
    """A datetime column as int64 microseconds; NaT becomes `missing` (default: never)."""
    if not pd.api.types.is_datetime64_dtype(values.dtype):
        raise TypeError(f"column {values.name!r} must be datetime64, not {values.dtype}")
    array = values.to_numpy(dtype="datetime64[us]").view(np.int64)
    nat = array == np.iinfo(np.int64).min
    if nat.any():
        array = np.where(nat, missing, array)
    return array


def floats(values: pd.Series) -> np.ndarray:
    """A numeric column as float64 with NaN for missing values.

    A plain float64 column already holds NaN for missing values, so it is returned as a
    read-only view instead of a copy (on 46M transactions: 370 MB less for the whole build).
    """
    if values.dtype == np.dtype(np.float64):
        return values.to_numpy()
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


class ColumnMemo:
    """Values computed from Arrow-backed pandas columns, each kept while its column's array lives unchanged.

    pandas hands out the same array object for a frame's column every time it is asked, and the Arrow data
    behind it is immutable (writing to the column replaces that data, which is checked), so a value computed
    once from it stays true: validating the loaded tables and preparing them share their id lookups (46M
    transactions on the 1M bank: 1.5 s each). Other columns (numpy-backed) are computed every time.
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ReferenceType, weakref.ReferenceType, object]] = {}

    def get(self, values: pd.Series, compute: Callable[[], T]) -> T:
        """`compute()`'s value for `values`, computed once per column."""
        array = values.array
        data = getattr(array, "_pa_array", None)
        if data is None:
            return compute()
        key = id(array)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is array and entry[1]() is data:
            return entry[2]  # type: ignore[return-value]
        value = compute()
        memo = weakref.ref(self)  # not `self`: a strong cycle would keep dropped memos' values until a GC pass

        def forget(ref: weakref.ReferenceType, key: int = key) -> None:
            alive = memo()
            if alive is not None and alive._entries.get(key, (None,))[0] is ref:
                del alive._entries[key]

        self._entries[key] = (weakref.ref(array, forget), weakref.ref(data), value)
        return value


def _as_arrow_strings(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """Text values as an Arrow string array, zero-copy when the column is already Arrow-backed."""
    array = values.array
    if hasattr(array, "__arrow_array__"):
        arrow = pa.array(array)
    else:
        arrow = pa.array(values.astype("str").where(values.notna()).to_numpy(dtype=object), type=pa.string(),
                         from_pandas=True)
    if pa.types.is_dictionary(arrow.type):
        arrow = arrow.cast(arrow.type.value_type)
    if not (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)
            or pa.types.is_string_view(arrow.type)):
        arrow = arrow.cast(pa.string())
    return arrow


class IdLookup:
    """Finds the position of text values in a fixed vocabulary (customer ids, category levels).

    Values of one fixed byte width up to 16 (the usual case: zero-padded ids) go through a
    vectorised hash table on their raw bytes (`FixedWidthIndex`), built once per
    vocabulary; anything else through Arrow's hash lookup. Both work on the Arrow buffers,
    never on Python strings.
    """

    def __init__(self, vocabulary: pa.Array):
        if isinstance(vocabulary, pa.ChunkedArray):
            vocabulary = vocabulary.combine_chunks()
        self.vocabulary = vocabulary
        self._fixed = FixedWidthIndex.build(vocabulary)
        self._found = ColumnMemo()

    def positions(self, values: pd.Series) -> np.ndarray:
        """Position of each value (int32), -1 where absent or missing; read-only when `values` is an
        Arrow-backed column, whose positions are looked up once (`ColumnMemo`) and shared by every caller."""
        if isinstance(values.dtype, pd.CategoricalDtype):
            # Look up each category once, then spread by the codes (no per-row strings).
            found = self.positions(pd.Series(values.cat.categories))
            return np.append(found, np.int32(-1)).astype(np.int32)[values.cat.codes.to_numpy()]
        return self._found.get(values, lambda: _read_only(self.arrow_positions(_as_arrow_strings(values))))

    def arrow_positions(self, arrow: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """`positions` of an Arrow string array."""
        if len(arrow) == 0:
            return np.empty(0, dtype=np.int32)
        if self._fixed is not None:
            chunks = arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]
            pieces = [chunk.slice(rows.start, rows.stop - rows.start) for chunk in chunks
                      for rows in row_chunks(len(chunk), size=1 << 20)]
            found = parallel_map(self._fixed.lookup, pieces)
            if all(part is not None for part in found):
                return np.concatenate(found) if len(found) != 1 else found[0]
        vocab = self.vocabulary
        if vocab.type != arrow.type:
            vocab = vocab.cast(arrow.type)
        return _filled_int32(pc.index_in(arrow, value_set=vocab))


def _read_only(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


def lookup_positions(values: pd.Series, vocabulary: pa.Array) -> np.ndarray:
    """Position of each value in `vocabulary` (int32), -1 where absent or missing."""
    return IdLookup(vocabulary).positions(values)


def _filled_int32(found: pa.Array | pa.ChunkedArray) -> np.ndarray:
    filled = pc.fill_null(found, -1)
    if isinstance(filled, pa.ChunkedArray):
        parts = [chunk.to_numpy(zero_copy_only=False) for chunk in filled.chunks]
        return np.concatenate(parts).astype(np.int32, copy=False) if parts else np.empty(0, np.int32)
    return filled.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)


def _fixed_width_words(array: pa.Array) -> tuple[int, np.ndarray, np.ndarray] | None:
    """Width and raw bytes of a string array whose values all have one byte width, as two uint64 words.

    Returns None if the widths differ, there are nulls or no rows, or the width is 0 or
    above 16. For widths 8-16 the words are bytes [0, 8) and [width-8, width): together
    every byte. For shorter widths the first word holds the bytes and the second is 0.
    """
    n = len(array)
    if n == 0 or array.null_count or not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return None
    offset_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type, count=n + 1,
                            offset=array.offset * np.dtype(offset_type).itemsize)
    size = int(offsets[1] - offsets[0])
    if not 0 < size <= 16 or int(offsets[-1] - offsets[0]) != size * n:
        return None
    if n > 1 and not np.all(np.diff(offsets) == size):
        return None
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[int(offsets[0]): int(offsets[-1])]
    if size >= 8:
        first = np.ndarray((n,), dtype="<u8", buffer=data, offset=0, strides=(size,))
        second = np.ndarray((n,), dtype="<u8", buffer=data, offset=size - 8, strides=(size,))
        return size, first, second
    matrix = data.reshape(n, size)
    word = np.zeros(n, dtype=np.uint64)
    for position in range(size):
        word |= matrix[:, position].astype(np.uint64) << np.uint64(8 * position)
    return size, word, np.zeros(n, dtype=np.uint64)


def _mix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A well-spread 64-bit hash of two words (splitmix64 finaliser on a combination)."""
    with np.errstate(over="ignore"):
        x = first * np.uint64(0x9E3779B97F4A7C15) ^ second * np.uint64(0xC2B2AE3D27D4EB4F)
        x ^= x >> np.uint64(31)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(29)
    return x


@dataclass(frozen=True)
class FixedWidthIndex:
    """Open-addressing hash table (linear probing) from fixed-width ids to their positions.

    Each slot stores the position and the key's words, so a probe reads one slot's entries
    (no dependent lookup). Built and probed in vectorised rounds: a round handles every key
    still looking, so the Python loop runs only as often as the longest probe chain. A hit
    compares the raw bytes, so the result is exact. At most a quarter of the slots are used,
    so almost every key is found in the first round.
    """

    width: int
    slots: np.ndarray
    slot_first: np.ndarray
    slot_second: np.ndarray
    bits: int

    @property
    def two_words(self) -> bool:
        return self.width > 8

    @classmethod
    def build(cls, vocabulary: pa.Array) -> "FixedWidthIndex | None":
        if isinstance(vocabulary, pa.ChunkedArray):
            vocabulary = vocabulary.combine_chunks()
        words = _fixed_width_words(vocabulary)
        if words is None:
            return None
        width, first, second = words
        first, second = np.ascontiguousarray(first), np.ascontiguousarray(second)
        n = len(first)
        bits = max(10, int(np.ceil(np.log2(4 * n))))
        mask = np.int64((1 << bits) - 1)
        slots = np.full(1 << bits, -1, dtype=np.int32)
        pending = np.arange(n, dtype=np.int64)
        position = (_mix(first, second) >> np.uint64(64 - bits)).astype(np.int64)
        while len(pending):
            free = slots[position] == -1
            _, winners = np.unique(position[free], return_index=True)
            chosen = np.flatnonzero(free)[winners]
            slots[position[chosen]] = pending[chosen].astype(np.int32)
            placed = np.zeros(len(pending), dtype=bool)
            placed[chosen] = True
            pending = pending[~placed]
            position = (position[~placed] + 1) & mask
        occupied = slots >= 0
        slot_first = np.zeros(len(slots), dtype=np.uint64)
        slot_second = np.zeros(len(slots), dtype=np.uint64)
        slot_first[occupied] = first[slots[occupied]]
        slot_second[occupied] = second[slots[occupied]]
        return cls(width, slots, slot_first, slot_second, bits)

    def lookup(self, array: pa.Array) -> np.ndarray | None:
        """Positions (int32, -1 if absent) of the values of `array`, or None if it is not fixed-width."""
        if len(array) == 0:
            return np.empty(0, dtype=np.int32)
        words = _fixed_width_words(array)
        if words is None:
            return None
        width, all_first, all_second = words
        if width != self.width:
            return np.full(len(array), -1, dtype=np.int32)
        return self._probe(np.ascontiguousarray(all_first), np.ascontiguousarray(all_second))

    def _probe(self, first: np.ndarray, both: np.ndarray) -> np.ndarray:
        """Positions of keys given as words; the second word is compared only for ids over 8 bytes."""
        mask = np.int64((1 << self.bits) - 1)
        position = (_mix(first, both) >> np.uint64(64 - self.bits)).astype(np.int64)
        second = both if self.two_words else None
        slot = self.slots[position]
        match = self.slot_first[position] == first
        if second is not None:
            match &= self.slot_second[position] == second
        match &= slot >= 0
        result = np.where(match, slot, -1).astype(np.int32)
        active = np.flatnonzero((slot >= 0) & ~match)
        position = (position[active] + 1) & mask
        while len(active):
            slot = self.slots[position]
            match = (slot >= 0) & (self.slot_first[position] == first[active])
            if second is not None:
                match &= self.slot_second[position] == second[active]
            result[active[match]] = slot[match]
            going_on = (slot >= 0) & ~match
            active = active[going_on]
            position = (position[going_on] + 1) & mask
        return result


def category_codes(values: pd.Series, levels: Sequence[str], other: bool) -> np.ndarray:
    """Codes of a text column against fixed `levels` (int16).

    Unknown and missing values get code len(levels) when `other` is true (pooled as
    'other'), else -1.
    """
    vocabulary = pa.array(list(levels), type=pa.string())
    codes = lookup_positions(values, vocabulary)
    fallback = len(levels) if other else -1
    return np.where(codes < 0, fallback, codes).astype(np.int16)


# ---------------------------------------------------------------- per-customer reductions

CHUNK_ROWS = 4_000_000
"""Rows per pass of the big event tables: bounds the temporaries at a few tens of MB each."""


def row_chunks(n_rows: int, size: int = CHUNK_ROWS) -> Iterator[slice]:
    """Consecutive row slices covering 0..n_rows (at least one, possibly empty)."""
    if n_rows == 0:
        yield slice(0, 0)
        return
    for start in range(0, n_rows, size):
        yield slice(start, min(start + size, n_rows))


def distinct_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (what `np.unique(values)` returns).

    By sorting: numpy 2.4's `np.unique` hashes integers instead, about 15 times slower on
    millions of (customer, day) keys whose low bits vary little.
    """
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def add_counts(total: np.ndarray, key: np.ndarray) -> None:
    """total[k] += number of rows with key k (integer counts: order does not matter).

    Rows spanning a narrow key range (e.g. a chunk of customer-ordered data) are counted
    with a local `bincount`; rows scattered over the whole range with `np.add.at`, which
    needs no full-size temporary per chunk.
    """
    _accumulate(total, key, None)


def add_units(total: np.ndarray, key: np.ndarray, units: np.ndarray) -> None:
    """total[k] += the `units` of the rows with key k, for money in whole units (`decimal_units`).

    Sums of whole units are exact in any order (below 2^53), so the rows are added in bulk as
    `add_counts` counts them: a local `bincount` over a narrow key range, several times faster than
    `np.add.at`, which also holds the GIL the other family's thread needs (`features.build`).
    """
    _accumulate(total, key, units)


def _accumulate(total: np.ndarray, key: np.ndarray, weights: np.ndarray | None) -> None:
    if not len(key):
        return
    low = int(key.min())
    high = int(key.max()) + 1
    if high - low <= 4 * len(key):
        total[low:high] += np.bincount(key - low if low else key, weights, minlength=high - low)
    else:
        np.add.at(total, key, 1 if weights is None else weights)


def add_sums(total: np.ndarray, key: np.ndarray, weights: np.ndarray) -> None:
    """total[k] += weights of the rows with key k, added one row at a time in row order.

    Sequential accumulation (`np.add.at`) makes a customer's sum depend only on that
    customer's rows and their order, however the rows are chunked or partitioned (money in
    whole units needs no order: `add_units`).
    """
    if len(key):
        np.add.at(total, key, weights)


MONEY_DECIMALS = 6
"""Decimal places money is summed to, on every engine: the relational engine reads it as DECIMAL(38, 6)
(pipelines/relational.py `MONEY`), the pandas engine sums it in millionths (`decimal_units`)."""


def decimal_units(amount: np.ndarray, decimals: int = MONEY_DECIMALS) -> np.ndarray:
    """Amounts as whole millionths (float64 holding integers; `decimals`: other units), rounded half away
    from zero as DuckDB casts a double to DECIMAL(38, 6). Sums of them are exact in any order while a total
    stays below 2^53 units (about 9 billion in the currency), so the pandas engine's money features equal
    the relational engine's exact decimal sums bit for bit: a total is `from_units(units)`, one correctly
    rounded division, as the engine's cast of the decimal to a double."""
    scaled = np.asarray(amount, dtype=np.float64) * 10.0 ** decimals
    return np.trunc(scaled + np.copysign(0.5, scaled))


def from_units(units: np.ndarray, decimals: int = MONEY_DECIMALS) -> np.ndarray:
    """Totals in millionths (`decimal_units`; `decimals`: its other units) back in the currency, as float64."""
    return units / 10.0 ** decimals


def count_by(code: np.ndarray, n: int) -> np.ndarray:
    """Number of rows per customer (int64, length n)."""
    return np.bincount(code, minlength=n)


def sum_by(code: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Sum of `weights` per customer, adding each customer's rows in row order."""
    total = np.zeros(n, dtype=np.float64)
    add_sums(total, code, weights)
    return total


def max_by(code: np.ndarray, values: np.ndarray, n: int, empty: int | float) -> np.ndarray:
    """Largest value per customer; `empty` (in the values' dtype) where a customer has no rows."""
    out = np.full(n, empty, dtype=values.dtype)
    np.maximum.at(out, code, values)
    return out


def min_by(code: np.ndarray, values: np.ndarray, n: int, empty: int | float) -> np.ndarray:
    """Smallest value per customer; `empty` (in the values' dtype) where a customer has no rows."""
    out = np.full(n, empty, dtype=values.dtype)
    np.minimum.at(out, code, values)
    return out


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator as float, NaN where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def whole_days(elapsed_us: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Elapsed microseconds as whole days (floor), NaN where not `known`."""
    return np.where(known, np.floor_divide(elapsed_us, US_PER_DAY), np.nan).astype(np.float64)


# ---------------------------------------------------------------- prepared tables

BLOCK_DAYS = 7
"""Width of the time blocks the transactions are grouped into (see `Events.in_time_blocks`)."""


@dataclass(frozen=True)
class Events:
    """One event table as flat arrays, unknown customers dropped.

    `code` is the customer's position in `Prepared.customer_ids`; `time` the event time in
    microseconds; `columns` holds the other columns a family needs, as numpy arrays.

    Rows are in input order until `in_time_blocks` groups them into consecutive BLOCK_DAYS
    time blocks (input order kept within a block): `block_rows[b]` is then the first row
    of block b in that blocked order, so the rows of any time range are one slice of it.
    The blocked order is either materialised (the arrays reordered once: best for many
    cutoffs) or kept as a row index `order` into the input-ordered arrays (less memory:
    best for one cutoff). Either way rows are visited in the same order, so every result,
    floating-point sums included, is identical.

    `loaded_from` (a block boundary): the rows hold only the events from this time on (a stage that reads
    the recent rows alone: `with_earlier`); `earlier_latest` is then each customer's latest event time
    before it (int64 minimum where none). Asking for rows before `loaded_from` raises, so a feature that
    looks back further than the stage read cannot come out silently wrong.
    """

    code: np.ndarray
    time: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    block_origin: int = 0
    block_rows: np.ndarray | None = None
    order: np.ndarray | None = None
    loaded_from: int | None = None
    earlier_latest: np.ndarray | None = None
    _latest: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.code)

    def before(self, cutoff: int) -> np.ndarray:
        """Mask of rows strictly before the cutoff (the only rows a feature may see)."""
        return self.time < cutoff

    def with_earlier(self, loaded_from: int, earlier_latest: np.ndarray) -> "Events":
        """These rows, known to be every event from `loaded_from` (a multiple of the block width) on, and
        each customer's latest event time before it (`earlier_latest`, by customer code)."""
        if loaded_from % (BLOCK_DAYS * US_PER_DAY):
            raise ValueError("loaded_from must lie on the time-block grid")
        return replace(self, loaded_from=loaded_from, earlier_latest=earlier_latest, _latest={})

    def _check_loaded(self, start: int) -> None:
        if self.loaded_from is not None and start < self.loaded_from:
            raise ValueError(f"the events before {pd.Timestamp(self.loaded_from, unit='us')} were not loaded "
                             f"(asked from {pd.Timestamp(start, unit='us')}): read the table from earlier")

    def rows_between(self, start: int, end: int) -> slice:
        """Blocked-order rows containing every row with start <= time < end (and maybe a few more)."""
        self._check_loaded(start)
        if self.block_rows is None:
            return slice(0, len(self))
        width = BLOCK_DAYS * US_PER_DAY
        n_blocks = len(self.block_rows) - 1
        first = min(max((start - self.block_origin) // width, 0), n_blocks)
        last = min(max((end - 1 - self.block_origin) // width + 1, 0), n_blocks) if end < NEVER else n_blocks
        return slice(int(self.block_rows[first]), int(self.block_rows[max(last, first)]))

    def chunks_between(self, start: int, end: int, names: tuple[str, ...] = (), chunk_rows: int = CHUNK_ROWS
                       ) -> Iterator[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]:
        """(code, time, [columns]) of every row with start <= time < end, and maybe a few more
        of the boundary blocks, in blocked order, `chunk_rows` at a time."""
        span = self.rows_between(start, end)
        for chunk in row_chunks(span.stop - span.start, chunk_rows):
            rows = slice(span.start + chunk.start, span.start + chunk.stop)
            index = rows if self.order is None else self.order[rows]
            yield self.code[index], self.time[index], [self.columns[name][index] for name in names]

    def latest_before_block_of(self, moment: int, n_customers: int) -> np.ndarray:
        """Each customer's latest event time in the blocks before the one holding `moment`
        (int64 minimum where none).

        With reordered rows the result is kept and extended for the next, later moment, so
        a run over ascending cutoffs reads every old row once instead of once per cutoff.
        """
        empty = np.iinfo(np.int64).min
        if self.loaded_from is not None:  # the loaded rows before the moment's block, then the earlier ones
            width = BLOCK_DAYS * US_PER_DAY
            self._check_loaded(moment // width * width)
            loaded = replace(self, loaded_from=None, earlier_latest=None, _latest=self._latest)
            return np.maximum(loaded.latest_before_block_of(moment, n_customers), self.earlier_latest)
        first = self.rows_between(moment, NEVER).start
        cached = self._latest.get("rows") if self.order is None else None
        if cached is not None and cached[0] <= first:
            done, latest = cached[0], cached[1].copy()
            for rows in row_chunks(first - done):
                span = slice(done + rows.start, done + rows.stop)
                np.maximum.at(latest, self.code[span], self.time[span])
        else:
            latest = np.full(n_customers, empty, dtype=np.int64)
            for code, time in self.chunks_before_block_of(moment):
                np.maximum.at(latest, code, time)
        if self.order is None and self.block_rows is not None:
            self._latest["rows"] = (first, latest)
        return latest

    def chunks_before_block_of(self, moment: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(code, time) of every row in the blocks before the one holding `moment`, in any order."""
        first = self.rows_between(moment, NEVER).start
        if self.order is None:
            for rows in row_chunks(first):
                yield self.code[rows], self.time[rows]
            return
        width = BLOCK_DAYS * US_PER_DAY
        boundary = self.block_origin + max((moment - self.block_origin) // width, 0) * width
        for rows in row_chunks(len(self)):
            time = self.time[rows]
            older = time < boundary
            yield self.code[rows][older], time[older]

    def in_time_blocks(self, materialise: bool = True) -> "Events":
        """The same rows grouped by BLOCK_DAYS-wide time block, input order kept within each block.

        Blocks lie on a fixed grid (not starting at this table's first event), so any subset
        of the rows is grouped the same way. Sums over a customer's rows then add them block
        by block, identically for every cutoff, partition and run. Rows already in time
        order stay where they are.
        """
        if self.loaded_from is not None:
            return self.in_time_blocks_loaded(materialise)
        if not len(self):
            return Events(self.code, self.time, self.columns, 0, np.zeros(1, dtype=np.int64))
        width = BLOCK_DAYS * US_PER_DAY
        origin = int(self.time.min()) // width * width
        n_blocks = int((int(self.time.max()) - origin) // width) + 1
        block = np.empty(len(self), dtype=np.uint16 if n_blocks <= 2**16 else np.int64)
        counts = np.zeros(n_blocks, dtype=np.int64)
        in_order = True
        for rows in row_chunks(len(self)):  # chunked: no full-size int64 temporaries
            chunk = (self.time[rows] - origin) // width
            block[rows] = chunk
            counts += np.bincount(chunk, minlength=n_blocks)
            in_order = in_order and bool(np.all(chunk[1:] >= chunk[:-1])) and (
                rows.start == 0 or chunk[0] >= block[rows.start - 1])
        block_rows = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if in_order:
            return Events(self.code, self.time, dict(self.columns), origin, block_rows)
        if not materialise:
            index_type = np.int32 if len(self) < 2**31 else np.int64
            (order,) = _counting_sort(block, block_rows, [], row_numbers=np.dtype(index_type))
            return Events(self.code, self.time, dict(self.columns), origin, block_rows, order)
        distinct = list({id(values): values for values in (self.code, self.time, *self.columns.values())}.values())
        moved = dict(zip((id(values) for values in distinct), _counting_sort(block, block_rows, distinct)))
        columns = {name: moved[id(values)] for name, values in self.columns.items()}
        return Events(moved[id(self.code)], moved[id(self.time)], columns, origin, block_rows)

    def in_time_blocks_loaded(self, materialise: bool) -> "Events":
        """`in_time_blocks` of events that hold the rows from `loaded_from` on: the same, keeping that."""
        plain = replace(self, loaded_from=None, earlier_latest=None, _latest={}).in_time_blocks(materialise)
        return plain.with_earlier(self.loaded_from, self.earlier_latest)  # type: ignore[arg-type]


SORT_CHUNK_ROWS = 1 << 18
"""Rows reordered at a time by `_counting_sort`: small enough to stay in the CPU caches."""


def _counting_sort(block: np.ndarray, block_rows: np.ndarray, arrays: list[np.ndarray],
                   row_numbers: np.dtype | None = None) -> list[np.ndarray]:
    """The arrays reordered by block number, input order kept within a block (a stable sort).

    `row_numbers`: first in the result, the rows' positions so reordered, of this integer type (the order
    itself, without a full-size range of positions as input: 0.18 GB at the peak of preparing 46M rows).
    Chunk by chunk: each small chunk is sorted by block (a radix sort) and each block's run
    is copied to the next free place of that block's region in the output, so reads and
    writes stay sequential instead of one random gather over the whole table. The two
    halves of the rows run in two threads, writing to disjoint places.
    """
    n_blocks = len(block_rows) - 1
    out = [np.empty_like(values) for values in arrays]
    if row_numbers is not None:
        out.insert(0, np.empty(len(block), dtype=row_numbers))
    halves = [slice(0, len(block) // 2), slice(len(block) // 2, len(block))]
    first_half = np.bincount(block[halves[0]], minlength=n_blocks)
    starts = [block_rows[:-1].copy(), block_rows[:-1] + first_half]

    def move(part: int) -> None:
        fill = starts[part]
        half = halves[part]
        for chunk in row_chunks(half.stop - half.start, size=SORT_CHUNK_ROWS):
            rows = slice(half.start + chunk.start, half.start + chunk.stop)
            chunk_block = block[rows]
            order = np.argsort(chunk_block, kind="stable")
            sizes = np.bincount(chunk_block, minlength=n_blocks)
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            present = np.flatnonzero(sizes).tolist()
            for values, target in zip([None, *arrays] if row_numbers is not None else arrays, out):
                ordered = (order + rows.start).astype(row_numbers) if values is None else values[rows][order]
                for b in present:
                    target[fill[b]: fill[b] + sizes[b]] = ordered[bounds[b]: bounds[b + 1]]
            fill += sizes

    parallel_map(move, [0, 1])
    return out


@dataclass(frozen=True)
class Prepared:
    """The input tables, factorised once and reused for every cutoff.

    Customers are ordered by `customer_id`; every per-customer array has that order.
    """

    customer_ids: pd.Series
    signup: np.ndarray
    closed: np.ndarray
    static: dict[str, np.ndarray | pd.Categorical]
    transactions: Events | None
    complaints: Events | None
    surveys: Events | None
    contacts: Events | None
    customer_value: np.ndarray | None = None
    """Each customer's value per month from a customers column (`labels.customer_value_column`), if set."""

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)


_SORTED_IDS = ColumnMemo()


def sorted_ids(ids: pd.Series) -> tuple[np.ndarray, IdLookup]:
    """The order that sorts unique, non-empty customer ids, and a lookup of positions in that order
    (ValueError for empty or duplicate ids). Once per column (`ColumnMemo`): the validation and the
    feature build of the same loaded table share the lookup and so every event table's positions."""
    return _SORTED_IDS.get(ids, lambda: _sorted_ids(ids))


def _sorted_ids(values: pd.Series) -> tuple[np.ndarray, IdLookup]:
    ids = _as_arrow_strings(values)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if ids.null_count:
        raise ValueError("the customers table has empty customer_id values")
    order = pc.array_sort_indices(ids).to_numpy()
    ordered_ids = ids.take(pa.array(order))
    if len(ordered_ids) > 1 and pc.any(pc.equal(ordered_ids[1:], ordered_ids[:-1])).as_py():
        raise ValueError("the customers table has duplicate customer_id values")
    return _read_only(order), IdLookup(ordered_ids)


def event_codes(frame: pd.DataFrame, customers: IdLookup) -> tuple[np.ndarray, np.ndarray]:
    """Customer codes of an event table's rows and the mask of rows whose customer is known."""
    codes = customers.positions(frame["customer_id"])
    known = codes >= 0
    return codes, known

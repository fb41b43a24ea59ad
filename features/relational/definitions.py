"""The two kinds of relational feature definition, and the shared building blocks.

A feature's definition sits in its catalogue entry (`FeatureInfo.define`, features/catalogue.py),
beside its description and reason template, so one place says what a feature means and how it is
computed. A definition is one of:

- `Reduction`: an aggregate over the event rows of one (customer, cutoff), e.g. "transactions in
  the last 30 days". The family module (features/relational/<family>.py) says which rows: the
  events of the family's table strictly before the cutoff, joined to every cutoff at once with
  inequality conditions (as Feast's Ibis offline store does), each row carrying
  `elapsed_us` (cutoff - event time, > 0), `back` (the day before the cutoff it falls on: 0 for
  [cutoff - 1 day, cutoff)) and `days` (whole days since the event).
- `Derived`: a function of other columns of the same (customer, cutoff) row, e.g. an average
  from a sum and a count, referring to them by their catalogue names.

This module imports no Ibis at import time (the catalogue is imported by every stage; Ibis takes
about a second to import): the functions below import it when a definition is built into a query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import ibis.expr.types as ir

US_PER_DAY = 86_400_000_000
"""Microseconds per day (the same constant as features/_grouping.py)."""

Output = Literal["int64", "float64", "category"]
History = Literal["window", "all", "last"]


@dataclass(frozen=True)
class Reduction:
    """An aggregate over the event rows of one (customer, cutoff).

    `reduce(rows)` returns the aggregate; `empty` is its value for a customer without rows
    (0 for counts and sums, None for "not defined"); `history` says whether the rows are the
    family's longest window (`window`) or all of the history before the cutoff (`all`, e.g.
    days since the last event); `output` the column type of the feature table.
    """

    reduce: Callable[[ir.Table], ir.Value]
    output: Output = "float64"
    empty: float | int | None = None
    history: History = "window"
    """`window`: the family's longest window (a windowed definition filters on `back` or reads the
    events' columns: the rows also carry, for `last` definitions, rows with only `time`,
    `elapsed_us` and `days`); `all`: every event before the cutoff; `last`: rows among which is the
    latest event before the cutoff, read through `time`, `elapsed_us` or `days` only (min/max),
    found without joining every event to every cutoff (features/relational/engine.py `period_rows`)."""
    needs: tuple[str, ...] = ()
    """Optional columns of the family's table it reads (left out, as by the pandas engine, without them)."""
    rows: Callable[[ir.Table], ir.Table] | None = None
    """Narrows and extends the rows first (aggregated separately; the same function: one query), e.g. to
    the few rows a window function is needed on: a window over all rows of many cutoffs is slow."""
    events: Callable[[ir.Table], ir.BooleanValue] | None = None
    """With `rows`: the events it needs at all, filtered before the join to the cutoffs. Also keeps
    that join apart from the shared one: Ibis writes a join used twice as a CTE, which DuckDB
    materialises (every event x cutoff row, slow)."""
    columns: tuple[str, ...] | None = None
    """With `rows`: the only event columns (besides customer_id and time) its rows read; the events
    are cut to them before their own join to the cutoffs (no family row columns are added)."""
    extend: Callable[[ir.Table], ir.Table] | None = None
    """Adds per-event columns before the join to the cutoffs, e.g. the customer's previous event
    time (a window function over the events once, instead of one over every event x cutoff row)."""
    shared: Callable[[ir.Table], ir.Value] | None = None
    """The same aggregate over the shared pass's rows (no `rows`, `events` or `columns` of its own),
    used on a backend that compiles every Ibis operation named in `shared_ops` (e.g. DuckDB and
    PostgreSQL compile `BitOr`, Ibis's Spark compiler does not); the cross-engine test checks that
    both give the same table."""
    shared_ops: tuple[str, ...] = ()


@dataclass(frozen=True)
class Derived:
    """A function of other columns (catalogue names, or a family's `_` intermediates) of the same row."""

    derive: Callable[[ir.Table], ir.Value]
    output: Output = "float64"
    levels: tuple[str, ...] = ()
    """The categories of a `category` output (the pandas categorical's levels, in order)."""
    ranks: tuple[str, ...] = ()
    """Columns whose population count and rank per cutoff it reads (`rank_columns`): window
    functions, which SQL does not nest in an expression, so the engine adds them to the rows first,
    those of every definition in one step (features/relational/engine.py `add_ranks`)."""
    needs: tuple[str, ...] = ()
    """The columns it reads; it is left out when one of them is (a feature of an absent table)."""


Definition = Reduction | Derived


def ibis_module() -> Any:
    """Ibis, imported on first use."""
    import ibis

    return ibis


def within(rows: ir.Table, days: int) -> ir.BooleanValue:
    """The row falls in the half-open window [cutoff - days, cutoff) (`back < days`)."""
    return rows.back < days


def within_time(rows: ir.Table, time: ir.TimestampValue, days: int) -> ir.BooleanValue:
    """`time` (before the row's cutoff) falls in the half-open window [cutoff - days, cutoff) of the row."""
    return whole_days(rows.cutoff.delta(time, unit="microsecond") - 1) < days


def count_within(days: int) -> Reduction:
    """Number of rows in the last `days` days (0 without rows)."""
    return Reduction(lambda rows: rows.back.count(where=within(rows, days)), "int64", 0)


def sum_within(column: str, days: int) -> Reduction:
    """Exact sum of a money column (decimal) over the last `days` days (0 without rows)."""
    return Reduction(lambda rows: rows[column].sum(where=within(rows, days)), "float64", 0)


def days_since_last() -> Reduction:
    """Whole days from the latest row before the cutoff to the cutoff; empty without rows."""
    return Reduction(lambda rows: rows.days.min(), "float64", None, "last")


BITS_PER_MASK = 63
"""Days per bit mask of `distinct_days_within` (bits 0-62 of a BIGINT: no sign bit, no overflow)."""


def _popcount32(value: ir.IntegerValue) -> ir.IntegerValue:
    """Set bits of a value below 2^32, in integer arithmetic every SQL engine has (no overflow in int64)."""
    value = value - ((value >> 1) & 0x55555555)
    value = (value & 0x33333333) + ((value >> 2) & 0x33333333)
    value = (value + (value >> 4)) & 0x0F0F0F0F
    return ((value * 0x01010101) & 0xFFFFFFFF) >> 24


def distinct_days_within(days: int) -> Reduction:
    """Distinct days (counted back from the cutoff in 24-hour steps) with a row in the last `days` days.

    Where the backend compiles `BitOr` (DuckDB, PostgreSQL): in the shared pass, each day of the
    window one bit of ceil(days / 63) masks OR-ed per (customer, cutoff), then the set bits counted.
    Elsewhere (Spark) in two steps: the distinct (customer, cutoff, day) of the rows in the window,
    then their number, on a join of the event times alone. On the 1M-customer bank (one cutoff,
    18.8M rows) the two steps cost about 12 s of the 42 s query in DuckDB's profile (two hash
    aggregates, 17.4M groups, and their own scan and join: benchmarks/profile_reference.py); a row's "first of its day" mark by the customer's previous event
    (a window function over the events) took 10.7 s, COUNT(DISTINCT) in the shared pass more.
    """
    def days_with_rows(rows: ir.Table) -> ir.Table:
        return rows.filter(within(rows, days)).select("customer_id", "cutoff", "back").distinct()

    def by_masks(rows: ir.Table) -> ir.IntegerValue:
        ibis = ibis_module()
        # 2^bit as a double, exact, then BIGINT: PostgreSQL has no `integer << bigint`, and an int4 1 would overflow
        bit = (ibis.literal(2.0, "float64") ** (rows.back % BITS_PER_MASK)).cast("int64")
        counted: ir.IntegerValue = ibis.literal(0, "int64")
        for k in range(-(-days // BITS_PER_MASK)):
            mask = bit.bit_or(where=within(rows, days) & (rows.back // BITS_PER_MASK == k)).coalesce(0)
            counted = counted + _popcount32(mask & 0xFFFFFFFF) + _popcount32(mask >> 32)
        return counted

    return Reduction(lambda rows: rows.count(), "int64", 0, rows=days_with_rows, columns=(),
                     shared=by_masks, shared_ops=("BitOr", "BitwiseRightShift", "BitwiseAnd"))


def rank_columns(column: str) -> tuple[str, str]:
    """The helper columns `Derived.ranks` adds for `column`: the number of non-empty values at the
    row's cutoff, and the row's 0-based minimum rank among them (empty values rank last)."""
    return f"_n_{column}", f"_rank_{column}"


def ratio(numerator: ir.NumericValue, denominator: ir.NumericValue) -> ir.FloatingValue:
    """numerator / denominator as a double, empty where the denominator is 0 (like `_grouping.ratio`)."""
    ibis = ibis_module()
    num, den = numerator.cast("float64"), denominator.cast("float64")
    return ibis.ifelse(den == 0, ibis.null("float64"), num / den)


def ratio_of(numerator: str, denominator: str) -> Derived:
    """One column divided by another, empty where the denominator is 0."""
    return Derived(lambda row: ratio(row[numerator], row[denominator]), needs=(numerator, denominator))


def whole_days(elapsed_us: ir.IntegerValue) -> ir.IntegerValue:
    """Elapsed microseconds (>= 0) as whole days.

    Integer division: Ibis compiles `//` to FLOOR(a / b) over doubles, exact while the quotient
    stays below ~50,000 days (2^53 / US_PER_DAY); Ibis has no portable integer division.
    """
    return elapsed_us // US_PER_DAY

"""Transaction (RFM) definitions: the rows they aggregate and the definitions that are more than
a plain count or sum (trends, outflows). Names, meanings and reasons are in features/catalogue.py.

Rows: the transactions within the family's window, the longest look-back any transaction feature
needs (`window_days`); recency reads the latest transaction before the cutoff (`history="last"`).
Money is summed as DECIMAL (`amount` is read as decimal, see pipelines/relational.py), so sums are
exact and the same with any number of threads; a ratio of money is formed as a double at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.relational.definitions import Derived, Reduction, ibis_module, rank_columns, ratio, within

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from features.settings import FeatureSettings


def window_days(settings: FeatureSettings) -> int:
    """The longest look-back of any transaction feature (the same bin edges as the pandas engine)."""
    from features.rfm import bin_edges

    return int(bin_edges(settings)[-1])


def row_columns(rows: ir.Table, outflow_days: int) -> ir.Table:
    """Per-row column the outflow definitions use: the row's outflow (a negative amount in the last
    `outflow_days` days, as a positive amount; else empty)."""
    ibis = ibis_module()
    return rows.mutate(outflow=ibis.ifelse((rows.amount < 0) & within(rows, outflow_days), -rows.amount, ibis.null()))


def outflow_rows(rows: ir.Table) -> ir.Table:
    """The outflow rows only, each with the largest outflow of its (customer, cutoff)."""
    outflows = rows.filter(rows.outflow.notnull())
    return outflows.mutate(largest_outflow=outflows.outflow.max().over(group_by=["customer_id", "cutoff"]))


def total(rows: ir.Table, column: str, where: ir.BooleanValue) -> ir.NumericValue:
    """Exact sum of `column` over the rows where `where` holds; 0 (not empty) when there are none."""
    return rows[column].sum(where=where).coalesce(0)


def trend(days: int) -> Reduction:
    """(count of the last `days` + 1) / (count of the `days` before + 1); empty when both are 0."""
    def reduce(rows: ir.Table) -> ir.Value:
        ibis = ibis_module()
        latest = rows.back.count(where=within(rows, days))
        previous = rows.back.count(where=(rows.back >= days) & within(rows, 2 * days))
        value = (latest.cast("float64") + 1.0) / (previous.cast("float64") + 1.0)
        return ibis.ifelse((latest == 0) & (previous == 0), ibis.null("float64"), value)
    return Reduction(reduce)


def outflow_share(days: int) -> Reduction:
    """|outflows| / (absolute value) of the last `days` days; empty without money moved."""
    def reduce(rows: ir.Table) -> ir.Value:
        outflows = total(rows, "amount", (rows.amount < 0) & within(rows, days))  # <= 0
        net = total(rows, "amount", within(rows, days))
        return ratio(outflows.abs(), net - 2 * outflows)
    return Reduction(reduce)


def largest_outflow() -> Reduction:
    """The largest single outflow of the outflow window (positive); 0 when nothing flowed out."""
    return Reduction(lambda rows: rows.outflow.max().coalesce(0).cast("float64"), "float64", 0)


def days_since_largest_outflow() -> Reduction:
    """Whole days since the largest outflow (the most recent of equal ones); empty without one."""
    return Reduction(lambda rows: rows.days.min(where=rows.outflow == rows.largest_outflow), rows=outflow_rows,
                     events=lambda events: events.amount < 0)


def largest_outflow_vs_typical(longest_days: int) -> Reduction:
    """Largest outflow / (absolute amount / count) over the longest window; empty without money."""
    def reduce(rows: ir.Table) -> ir.Value:
        absolute = total(rows, "amount", within(rows, longest_days) & (rows.amount >= 0)) - total(
            rows, "amount", within(rows, longest_days) & (rows.amount < 0))
        typical = ratio(absolute, rows.back.count(where=within(rows, longest_days)))
        return ratio(rows.outflow.max().coalesce(0), typical)
    return Reduction(reduce)


def average(amount_column: str, count_column: str) -> Derived:
    """Average amount per transaction: a sum over a count, empty without transactions."""
    return Derived(lambda row: ratio(row[amount_column], row[count_column]), needs=(amount_column, count_column))


QUINTILES = (0.2, 0.4, 0.6, 0.8)


def quintile_score(column: str, higher_is_better: bool) -> Derived:
    """1-5 score of `column` within the population at each cutoff; 1 where the value is empty.

    Edges as numpy's `quantile(method="inverted_cdf")` (features/rfm.py): the value at 0-based
    position p = ceil(q * n) - 1 of the sorted non-empty values, q * n in double precision as numpy
    computes it; the score counts the edges strictly below the value (searchsorted, side left).
    An edge v[p] is below the value exactly when p < the number of values below it, the value's
    rank: so two window functions (rank and count per cutoff, `Derived.ranks`, added by the engine
    for every score at once: features/relational/engine.py `add_ranks`) give the score without the
    edges themselves.
    """
    helper_n, helper_rank = rank_columns(column)

    def derive(row: ir.Table) -> ir.Value:
        ibis = ibis_module()
        value = row[column].cast("float64")
        n, below_value = row[helper_n], row[helper_rank]  # rank: how many values are smaller (0-based min rank)
        below = 0
        for q in QUINTILES:
            position = (ibis.literal(q, "float64") * n.cast("float64")).ceil().cast("int64") - 1
            below = below + ibis.ifelse(position < below_value, 1, 0)
        score = 1 + below if higher_is_better else 5 - below
        return ibis.ifelse(value.isnull(), 1, score)
    return Derived(derive, "int64", ranks=(column,), needs=(column,))


def segment(recency: str, frequency: str, monetary: str, rules: tuple[tuple[str, str], ...],
            levels: tuple[str, ...]) -> Derived:
    """The named RFM segment of the three scores, first matching rule wins (features/rfm.py:rfm_segment)."""
    def derive(row: ir.Table) -> ir.Value:
        ibis = ibis_module()
        r, f, m = row[recency], row[frequency], row[monetary]
        conditions = {
            "champions": (r >= 4) & (f >= 4) & (m >= 4), "loyal": (r >= 3) & (f >= 4),
            "cannot_lose_them": (r <= 2) & (f >= 4) & (m >= 4), "at_risk": (r <= 2) & (f >= 3),
            "promising": (r >= 4) & (f <= 2), "potential_loyalist": (r >= 3) & (f == 3),
            "hibernating": (r <= 2) & (f <= 2),
        }
        return ibis.cases(*[(conditions[name], name) for name, _ in rules if name in conditions],
                          else_="needs_attention")
    return Derived(derive, "category", levels, needs=(recency, frequency, monetary))

"""Lifecycle definitions: tenure, stage and the shape of monthly activity over the last year.

Months are 30-day periods counted back from the cutoff (month k: `back` in [30k, 30(k+1))). The
monthly counts are intermediates (`_month_k`, not features) aggregated with the transaction
features; the slope repeats the pandas engine's float operations in the same order
(features/lifecycle.py), so the two agree bit for bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.relational.definitions import US_PER_DAY, Derived, Reduction, ibis_module, whole_days

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from features.settings import LifecycleSettings

MIN_SLOPE_MONTHS = 3


def month(k: int) -> str:
    """Name of the intermediate holding the transaction count of month k (0 = the latest)."""
    return f"_month_{k}"


def monthly_counts(months: int, month_days: int) -> dict[str, Reduction]:
    """Transactions per 30-day month, for the last `months` months (intermediates)."""
    def count(k: int) -> Reduction:
        return Reduction(lambda rows: rows.back.count(
            where=(rows.back >= k * month_days) & (rows.back < (k + 1) * month_days)), "int64", 0)
    return {month(k): count(k) for k in range(months)}


def tenure() -> Derived:
    """Whole days from signup to the cutoff."""
    return Derived(lambda row: whole_days(row.cutoff.delta(row._signup_date, unit="microsecond")).cast("float64"),
                   needs=("_signup_date",))


def stage(settings: LifecycleSettings, levels: tuple[str, ...]) -> Derived:
    """new, dormant, declining, growing or established: the first rule that holds, in that order."""
    def derive(row: ir.Table) -> ir.Value:
        ibis = ibis_module()
        days, trend = row.days_since_last_transaction, row.transaction_trend_90d
        return ibis.cases(
            (row.tenure_days <= settings.new_max_tenure_days, "new"),
            (days.isnull() | (days >= settings.dormant_min_days_inactive), "dormant"),
            (trend <= settings.declining_max_trend_ratio, "declining"),
            (trend >= settings.growing_min_trend_ratio, "growing"),
            else_="established")
    return Derived(derive, "category", levels,
                   needs=("tenure_days", "days_since_last_transaction", "transaction_trend_90d"))


def months_active(months: int) -> Derived:
    """How many of the last `months` months had a transaction."""
    def derive(row: ir.Table) -> ir.Value:
        ibis = ibis_module()
        total = ibis.literal(0, "int64")
        for k in range(months):
            total = total + ibis.ifelse(row[month(k)] > 0, 1, 0)
        return total
    return Derived(derive, "int64", needs=tuple(month(k) for k in range(months)))


def _sum(terms: list[ir.FloatingValue]) -> ir.FloatingValue:
    """t0 + t1 + ... left to right (numpy's order for fewer than 8 terms)."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def slope(months: int, month_days: int) -> Derived:
    """Least-squares slope of the last `months` monthly counts over their mean, months after signup only."""
    def derive(row: ir.Table) -> ir.Value:
        ibis = ibis_module()
        after = row.cutoff.delta(row._signup_date, unit="microsecond") // (month_days * US_PER_DAY)
        usable = ibis.greatest(ibis.least(after, months), 0)
        x = [ibis.literal(float(j), "float64") for j in range(months)]
        counts = [row[month(months - 1 - j)].cast("float64") for j in range(months)]  # oldest first
        weight = [ibis.ifelse(j >= months - usable, 1.0, 0.0) for j in range(months)]
        n = _sum(weight)
        mean_x = _sum([w * xj for w, xj in zip(weight, x)]) / n
        mean_y = _sum([w * c for w, c in zip(weight, counts)]) / n
        dx = [xj - mean_x for xj in x]
        value = (_sum([w * d * (c - mean_y) for w, d, c in zip(weight, dx, counts)])
                 / _sum([w * d * d for w, d in zip(weight, dx)])) / mean_y
        return ibis.ifelse((n >= MIN_SLOPE_MONTHS) & (mean_y > 0), value, ibis.null("float64"))
    return Derived(derive, needs=("_signup_date", *(month(k) for k in range(months))))


def months_since_peak(months: int) -> Derived:
    """Months since the busiest month (the latest on ties); empty without transactions in them."""
    def derive(row: ir.Table) -> ir.Value:
        ibis = ibis_module()
        counts = [row[month(k)] for k in range(months)]
        busiest = ibis.greatest(*counts)
        peak = ibis.cases(*[(c == busiest, float(k)) for k, c in enumerate(counts)])
        return ibis.ifelse(busiest > 0, peak, ibis.null("float64"))
    return Derived(derive, needs=tuple(month(k) for k in range(months)))

"""Complaint definitions: volumes, categories, service levels and satisfaction, as known at the cutoff.

As features/complaints.py: a complaint counts from `opened_at`; a reply or resolution at or after
the cutoff (or never) has not happened yet, so the complaint is open and its resolution time and
satisfaction are unknown. Rows are complaints opened before the cutoff, each with `elapsed_us`
(its age). Service-level targets are microseconds per priority tier; a tier without a target, or
an unknown tier, is never late. Durations are summed in integer microseconds (exact, any order),
then turned into hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from features.complaint_text import TONE_DECIMALS
from features.relational.definitions import US_PER_DAY, Reduction, ibis_module, ratio, within, within_time

if TYPE_CHECKING:
    import ibis.expr.types as ir

US_PER_HOUR = 3_600_000_000

Targets = Mapping[str, int]
"""Priority tier -> target in microseconds (tiers without a target left out)."""


def _level_is(rows: ir.Table, column: str, level: str, levels: tuple[str, ...]) -> ir.BooleanValue:
    """The row's value is `level`; "other" pools every value not in `levels`, missing included."""
    if level == "other":
        return rows[column].isnull() | ~rows[column].isin(levels)
    return rows[column] == level


def count_of_level(column: str, level: str, levels: tuple[str, ...], days: int, optional: bool) -> Reduction:
    """Complaints of one category/channel (or pooled `other`) opened in the last `days` days."""
    return Reduction(lambda rows: rows.back.count(where=within(rows, days) & _level_is(rows, column, level, levels)),
                     "int64", 0, needs=(column,) if optional else ())


def count_of_tier(tier: str, days: int) -> Reduction:
    """Complaints of one priority tier opened in the last `days` days."""
    return Reduction(lambda rows: rows.back.count(where=within(rows, days) & (rows.priority == tier)),
                     "int64", 0, needs=("priority",))


def _known(rows: ir.Table, column: str) -> ir.BooleanValue:
    """The milestone happened before the cutoff."""
    return rows[column].notnull() & (rows[column] < rows.cutoff)


def _open(rows: ir.Table) -> ir.BooleanValue:
    return ~_known(rows, "resolved_at")


def _duration_us(rows: ir.Table, column: str) -> ir.IntegerValue:
    return rows[column].delta(rows.time, unit="microsecond")


def _target(rows: ir.Table, targets: Targets) -> ir.Value:
    """The row's target in microseconds by its priority tier; empty (never late) without one."""
    ibis = ibis_module()
    if not targets:
        return ibis.null("int64")
    return ibis.cases(*[(rows.priority == tier, ibis.literal(us, "int64")) for tier, us in targets.items()],
                      else_=ibis.null("int64"))


def open_complaints() -> Reduction:
    """Complaints opened before the cutoff and not resolved before it."""
    return Reduction(lambda rows: rows.back.count(where=_open(rows)), "int64", 0, "all", needs=("resolved_at",))


def oldest_open_age_days() -> Reduction:
    """Age in whole days of the oldest open complaint; empty if none."""
    return Reduction(lambda rows: (rows.elapsed_us.max(where=_open(rows)) // US_PER_DAY).cast("float64"),
                     history="all", needs=("resolved_at",))


def mean_hours(milestone: str, days: int) -> Reduction:
    """Mean hours from opening to `milestone`, over complaints opened in the last `days` days and
    resolved before the cutoff (with the milestone before it); empty if none."""
    def reduce(rows: ir.Table) -> ir.Value:
        done = within(rows, days) & _known(rows, "resolved_at") & _known(rows, milestone)
        total_us = _duration_us(rows, milestone).sum(where=done)
        return ratio(total_us.cast("float64") / US_PER_HOUR, rows.back.count(where=done))
    return Reduction(reduce, needs=tuple(dict.fromkeys(("resolved_at", milestone))))


def late(milestone: str, targets: Targets, days: int) -> Reduction:
    """Complaints opened in the last `days` days whose `milestone` (before the cutoff) came later than
    the tier's target."""
    return Reduction(lambda rows: rows.back.count(
        where=within(rows, days) & _known(rows, milestone) & (_duration_us(rows, milestone) > _target(rows, targets))),
        "int64", 0, needs=("priority", milestone))


def unanswered_past_target(targets: Targets) -> Reduction:
    """Open complaints without a reply at the cutoff already older than the tier's response target."""
    return Reduction(lambda rows: rows.back.count(
        where=_open(rows) & ~_known(rows, "first_response_at") & (rows.elapsed_us > _target(rows, targets))),
        "int64", 0, "all", needs=("priority", "resolved_at", "first_response_at"))


def open_past_target(targets: Targets) -> Reduction:
    """Open complaints already older than the tier's resolution target."""
    return Reduction(lambda rows: rows.back.count(where=_open(rows) & (rows.elapsed_us > _target(rows, targets))),
                     "int64", 0, "all", needs=("priority", "resolved_at"))


def _rated(rows: ir.Table, days: int) -> ir.BooleanValue:
    return within(rows, days) & _known(rows, "resolved_at") & rows.satisfaction.notnull()


def mean_satisfaction(days: int) -> Reduction:
    """Mean satisfaction of the complaints opened in the last `days` days and resolved before the cutoff."""
    return Reduction(lambda rows: ratio(rows.satisfaction.sum(where=_rated(rows, days)),
                                        rows.back.count(where=_rated(rows, days))),
                     needs=("satisfaction", "resolved_at"))


def low_satisfaction_share(days: int) -> Reduction:
    """Share of those rated complaints scored below 3."""
    return Reduction(lambda rows: ratio(rows.back.count(where=_rated(rows, days) & (rows.satisfaction < 3)),
                                        rows.back.count(where=_rated(rows, days))),
                     needs=("satisfaction", "resolved_at"))


def _previous_of_category(events: ir.Table) -> ir.Table:
    """Each complaint with the time of the customer's previous complaint of the same category
    (a missing category is a category of its own; empty for the first)."""
    ibis = ibis_module()
    window = ibis.window(group_by=["customer_id", "category"], order_by="time")
    return events.mutate(previous_of_category=events.time.lag().over(window))


def repeats(days: int) -> Reduction:
    """Complaints in the last `days` days minus their distinct categories (a missing category is one).

    A category counts once, at its earliest complaint in the window: the one whose previous
    complaint of that category (`previous_of_category`) is older than the window, or absent. A
    filtered count beside the other aggregates (a COUNT(DISTINCT) makes the engine keep every
    joined row apart).
    """
    def reduce(rows: ir.Table) -> ir.Value:
        recent = within(rows, days)
        previous = rows.previous_of_category
        first = previous.isnull() | ~within_time(rows, previous, days)
        return rows.back.count(where=recent) - rows.back.count(where=recent & first)
    return Reduction(reduce, "int64", 0, extend=_previous_of_category)


TONE = f"decimal(9, {TONE_DECIMALS})"
"""A complaint's tone (VADER compound, -1..1, rounded by VADER to 4 decimals) as summed: exactly, in any order."""


def negative_tone(days: int, below: float) -> Reduction:
    """Complaints opened in the last `days` days whose text's tone is below `below` (features.complaint_negative_below).

    `sentiment`: the tone of each complaint's text, scored in Python (VADER has no SQL form) and joined
    to the complaints by the stage (pipelines/relational.py `with_complaint_tone`); empty for no text."""
    return Reduction(lambda rows: rows.back.count(where=within(rows, days) & (rows.sentiment < below)),
                     "int64", 0, needs=("sentiment",))


def mean_tone(days: int) -> Reduction:
    """Mean tone of the texts of complaints opened in the last `days` days; empty if none has a text."""
    def reduce(rows: ir.Table) -> ir.Value:
        scored = within(rows, days) & rows.sentiment.notnull()
        return ratio(rows.sentiment.cast(TONE).sum(where=scored), rows.back.count(where=scored))
    return Reduction(reduce, needs=("sentiment",))


def targets_us(targets: Mapping[str, object], field: str, tiers: tuple[str, ...]) -> dict[str, int]:
    """Tier -> target in microseconds, from `features.complaint_targets` (hours), as features/complaints.py."""
    out = {}
    for tier in tiers:
        target = targets.get(tier)
        hours = getattr(target, field) if target is not None else None
        if hours is not None:
            out[tier] = int(round(hours * US_PER_HOUR))
    return out

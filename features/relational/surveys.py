"""Survey definitions: the latest NPS and CSAT answers before the cutoff and their change.

The latest answer is the one with the latest time, the later row of the input on equal times (as
features/surveys.py), so the survey rows carry their input position `row`. Per score, the
answered rows of each (customer, cutoff) are ranked newest first (`_rank_<score>`: 0 latest,
1 the one before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.relational.definitions import Reduction, ibis_module

if TYPE_CHECKING:
    import ibis.expr.types as ir

SCORES = ("nps", "csat")
DETRACTOR_MAX_NPS = 6


def row_columns(rows: ir.Table) -> ir.Table:
    """Rank of each answered row among the customer's answers before the cutoff, per score."""
    ibis = ibis_module()
    ranks = {}
    for score in SCORES:
        if score in rows.columns:
            ranks[f"_rank_{score}"] = ibis.row_number().over(
                group_by=["customer_id", "cutoff", rows[score].isnull()],
                order_by=[ibis.desc(rows.time), ibis.desc(rows.row)])
    return rows.mutate(**ranks) if ranks else rows


def _answer(rows: ir.Table, score: str, rank: int) -> ir.Value:
    return rows[score].max(where=(rows[f"_rank_{score}"] == rank) & rows[score].notnull())


def latest(score: str) -> Reduction:
    """The latest answer before the cutoff; empty without one."""
    return Reduction(lambda rows: _answer(rows, score, 0), history="all", needs=(score,))


def change(score: str) -> Reduction:
    """The latest answer minus the one before; empty with fewer than two."""
    return Reduction(lambda rows: _answer(rows, score, 0) - _answer(rows, score, 1), history="all", needs=(score,))


def detractor() -> Reduction:
    """1.0 if the latest NPS answer is 6 or less, else 0.0; empty without an answer."""
    def reduce(rows: ir.Table) -> ir.Value:
        ibis = ibis_module()
        last = _answer(rows, "nps", 0)
        return ibis.ifelse(last.isnull(), ibis.null("float64"), ibis.ifelse(last <= DETRACTOR_MAX_NPS, 1.0, 0.0))
    return Reduction(reduce, history="all", needs=("nps",))

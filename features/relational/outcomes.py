"""What happened to a past contact's customer over its label window: repurchase and satisfaction (Ibis).

`churn effects` (pipelines/effects.py) compares contacted and randomised control customers on outcomes
measured over each uplift row's label window [cutoff, cutoff + labels.horizon_days) (half-open, as
every window of the project; models/uplift/effects.py compares them):
- repurchase: 1.0 when the customer made a transaction with a positive amount in the window, else 0.0
  (left out when there is no transactions table);
- satisfaction: the mean CSAT of the customer's survey answers in the window, answers without a CSAT
  left out; empty without one (left out when there is no surveys table or it has no `csat`).

One definition for every engine: the stage runs it on DuckDB or Spark over the input files, and with
`features.engine: pandas` on an in-memory DuckDB over the loaded tables. Nothing is executed here.
The event tables are those of pipelines/relational.py `open_inputs`: the contract's column names,
times naive TIMESTAMP (microseconds), `amount` DECIMAL. CSAT is averaged as an exact DECIMAL sum
divided by the count (each answer rounded to 9 decimals; scores are whole numbers or nearly), so a
mean is the same with any number of threads and on every engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from features.relational.definitions import ibis_module

if TYPE_CHECKING:
    import ibis.expr.types as ir

CSAT_SUM = "decimal(38, 9)"
"""The type CSAT answers are summed in: exact, so the mean does not depend on the order of the sum."""


def contact_rows(rows: pd.DataFrame) -> ir.Table:
    """The uplift rows' keys as an in-memory table: `position` (0, 1, ... in the order of `rows`),
    customer_id (text) and cutoff (timestamp, microseconds)."""
    ibis = ibis_module()
    keys = pa.table({"position": pa.array(range(len(rows)), pa.int64()),
                     "customer_id": pa.array(rows["customer_id"].astype("str").to_numpy(), pa.string()),
                     "cutoff": pa.array(pd.to_datetime(rows["cutoff"]).to_numpy().astype("datetime64[us]"),
                                        pa.timestamp("us"))})
    return ibis.memtable(keys)


def _in_window(rows: ir.Table, events: ir.Table, time: str, horizon_days: int) -> ir.Table:
    """Each event of a row's customer in the row's window [cutoff, cutoff + horizon_days), with the
    row's `position`. The events are first cut to the span any window covers (the engine skips the
    rest of the file by its statistics)."""
    ibis = ibis_module()
    horizon = ibis.interval(days=horizon_days)
    events = events.filter(events[time] >= rows.cutoff.min(), events[time] < rows.cutoff.max() + horizon)
    return rows.join(events, [rows.customer_id == events.customer_id, events[time] >= rows.cutoff,
                              events[time] < rows.cutoff + horizon])


def window_outcome_table(rows: ir.Table, transactions: ir.Table | None, surveys: ir.Table | None,
                         horizon_days: int) -> ir.Table:
    """`position` of every row of `rows` (`contact_rows`), with `repurchase` (when there are
    transactions) and `satisfaction` (when the surveys have a `csat` column) over its label window
    (see the module docstring), sorted by position."""
    ibis = ibis_module()
    out = rows.select("position")
    if transactions is not None:
        bought = _in_window(rows, transactions.filter(transactions.amount > 0), "timestamp", horizon_days)
        buyers = bought.group_by("position").aggregate(_purchases=bought.position.count())
        joined = out.left_join(buyers, "position")
        out = joined.select(*[joined[c] for c in out.columns],
                            repurchase=ibis.ifelse(joined._purchases.notnull(), 1.0, 0.0).cast("float64"))
    if surveys is not None and "csat" in surveys.columns:
        given = surveys.filter(surveys.csat.notnull() & ~surveys.csat.isnan())  # NaN: no answer, as pandas reads it
        answered = _in_window(rows, given, "answered_at", horizon_days)
        answers = answered.group_by("position").aggregate(_csat_sum=answered.csat.cast(CSAT_SUM).sum(),
                                                          _answers=answered.csat.count())
        joined = out.left_join(answers, "position")
        mean = joined._csat_sum.cast("float64") / joined._answers.cast("float64")  # empty without an answer
        out = joined.select(*[joined[c] for c in out.columns], satisfaction=mean)
    return out.order_by("position")


__all__ = ["CSAT_SUM", "contact_rows", "window_outcome_table"]

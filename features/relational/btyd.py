"""Buy-till-you-die features on the relational engine: the purchase history as a query, the models
fitted in Python on its result.

The history of each (customer, cutoff) is one query over every transaction before the cutoff of a
customer in the customers table (as features/btyd.py: a purchase is a day counted back from the
cutoff in 24-hour steps, `back`; several transactions on one day are one purchase): its purchase
days, the oldest and the latest of them and the value bought (`labels.value_column`, an exact
decimal sum). The BG/NBD and Gamma-Gamma models (models/btyd) are then fitted per cutoff on that
summary, one row per customer who bought, and give the feature columns with the very functions the
pandas engine uses (`features.btyd.btyd_features`). A model is a fit, not a relational expression:
so this family has no `define=` in the catalogue; pipelines/relational.py runs the query, then
`btyd_frame`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.btyd import BtydFit, PurchaseHistory, btyd_features, fit_btyd
from features.relational.definitions import ibis_module, whole_days

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from features.relational.engine import RelationalTables

SUMMARY_COLUMNS: tuple[str, ...] = ("customer_id", "cutoff", "purchase_days", "oldest_day", "latest_day", "value")


def purchase_summary(tables: RelationalTables, cutoffs: Sequence[pd.Timestamp] | ir.Table,
                     value_column: str = "amount") -> ir.Table:
    """Per (customer who bought, cutoff): purchase days before the cutoff, the oldest and the latest
    of them (days back from the cutoff, 0 = the last 24 hours) and the exact sum of `value_column`.

    Two aggregates (the distinct days, then per customer), as `distinct_days_within`; every
    transaction is joined to every cutoff it precedes (the whole history counts). The days are
    grouped by an integer code of the customer (its position in id order; the join to it
    also drops the transactions of unknown customers, as the pandas engine does): on the 1M-customer
    bank, one cutoff, 43M (customer, day) groups by string id took 51 s and 8.1 GB, by code 23-30 s
    and 2.6 GB (DuckDB, 2 threads, a loaded machine).
    """
    from features.relational.engine import cutoff_table

    ibis = ibis_module()
    t = tables.transactions
    if t is None:
        raise ValueError("the BTYD features need a transactions table")
    if value_column not in t.columns:
        raise ValueError(f"labels.value_column {value_column!r} is not a column of the transactions table")
    # ordered, so that the code is the same each time the engine evaluates it (it is read twice)
    ids = tables.customers.select("customer_id", code=ibis.row_number().over(order_by="customer_id"))
    known = t.join(ids, "customer_id")
    cuts = cutoff_table(cutoffs)
    events = known.select("code", time=known.timestamp, value=known[value_column])
    events = events.filter(events.time < cuts.cutoff.max())
    joined = events.join(cuts, events.time < cuts.cutoff)
    back = whole_days(joined.cutoff.delta(joined.time, unit="microsecond") - 1)
    daily = joined.group_by(["code", "cutoff", back.name("back")]).aggregate(value=joined.value.sum())
    summary = daily.group_by(["code", "cutoff"]).aggregate(
        purchase_days=daily.count(), oldest_day=daily.back.max(), latest_day=daily.back.min(),
        value=daily.value.sum().cast("float64"))
    named = summary.join(ids, "code")
    return named.select("customer_id", "cutoff", "purchase_days", "oldest_day", "latest_day", "value")


def btyd_frame(summary: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """customer_id, cutoff and the BTYD feature columns of every customer in `summary` (the result of
    `purchase_summary`), the models fitted per cutoff on every customer who bought before it.

    Rows sorted by (cutoff, customer_id); the fit sees the customers in id order, as the pandas
    engine's (its arrays are in id order), so both fit the same numbers in the same order.
    """
    parts = []
    ordered = summary.sort_values(["cutoff", "customer_id"], kind="stable", ignore_index=True)
    for cutoff, part in ordered.groupby("cutoff", sort=True):
        days = part["purchase_days"].to_numpy(dtype=np.float64)
        oldest = part["oldest_day"].to_numpy(dtype=np.float64)
        history = PurchaseHistory(frequency=days - 1, recency=oldest - part["latest_day"].to_numpy(dtype=np.float64),
                                  age=oldest + 1, mean_spend=part["value"].to_numpy(dtype=np.float64) / days)
        columns = btyd_features(history, fit_btyd(history), horizon_days)
        parts.append(pd.DataFrame({"customer_id": part["customer_id"].to_numpy(), "cutoff": cutoff, **columns}))
    if not parts:  # nobody bought before any cutoff: the columns, empty
        nothing = np.zeros(0)
        columns = btyd_features(PurchaseHistory(nothing, nothing, nothing, nothing), BtydFit(None, None), horizon_days)
        return pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "cutoff": pd.Series([], dtype="datetime64[us]"),
                             **columns})
    out = pd.concat(parts, ignore_index=True)
    out["customer_id"] = out["customer_id"].astype("str")
    out["cutoff"] = out["cutoff"].astype("datetime64[us]")
    return out

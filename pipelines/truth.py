"""Read the generator's truth (`evaluation.truth_dir`) for the (customer, cutoff) rows a report needs.

Generated banks only: a user's bank has no truth folder and every caller skips it. The truth's
monthly hazard holds every open customer at every month start (237M rows at 10M customers), so
it is never read whole: rows are filtered while the file is scanned, batch by batch, to the
cutoffs and customers asked for, and memory grows with the keys, not with the bank.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

HAZARD_FILE = "monthly_hazard.parquet"
CUSTOMERS_FILE = "customers.parquet"


def _keys(keys: pd.DataFrame) -> tuple[pa.Array, pa.Array]:
    """The keys' customer ids as strings and their cutoffs as millisecond timestamps (the truth's types)."""
    ids = pa.array(keys["customer_id"].astype("str").to_numpy(dtype=object), type=pa.large_string())
    cutoffs = pa.array(pd.to_datetime(keys["cutoff"]).to_numpy().astype("datetime64[ms]"), type=pa.timestamp("ms"))
    return ids, cutoffs


def _filtered(path: Path, columns: list[str], condition: pc.Expression) -> pd.DataFrame:
    """The file's `columns` of the rows meeting `condition`, filtered batch by batch while it is scanned."""
    found = ds.dataset(path, format="parquet").to_table(columns=columns, filter=condition).to_pandas()
    return found.assign(customer_id=found["customer_id"].astype("str"))


def hazard_at(keys: pd.DataFrame, truth_dir: Path, columns: list[str]) -> pd.DataFrame | None:
    """The truth's monthly-hazard `columns` at each row of `keys` (customer_id, cutoff), aligned with `keys`.

    Rows without a hazard row (a customer closed before that month) are empty. None without the file.
    """
    path = truth_dir / HAZARD_FILE
    if not path.is_file():
        return None
    ids, cutoffs = _keys(keys)
    wanted_ids, wanted_cutoffs = pc.unique(ids), pc.unique(cutoffs)
    condition = pc.field("month_start").isin(wanted_cutoffs) & pc.field("customer_id").isin(wanted_ids)
    found = _filtered(path, ["customer_id", "month_start", *columns], condition)
    left = pd.DataFrame({"customer_id": ids.to_pandas().astype("str"), "month_start": cutoffs.to_pandas()})
    found["month_start"] = found["month_start"].astype(left["month_start"].dtype)
    merged = left.merge(found, on=["customer_id", "month_start"], how="left", validate="many_to_one")
    return merged[columns].set_axis(keys.index)


def customer_truth(customer_ids: pd.Series, truth_dir: Path, columns: list[str]) -> pd.DataFrame | None:
    """The truth's per-customer `columns` for each id of `customer_ids`, aligned with it. None without the file."""
    path = truth_dir / CUSTOMERS_FILE
    if not path.is_file():
        return None
    ids = pa.array(customer_ids.astype("str").to_numpy(dtype=object), type=pa.large_string())
    found = _filtered(path, ["customer_id", *columns], pc.field("customer_id").isin(pc.unique(ids)))
    left = pd.DataFrame({"customer_id": ids.to_pandas().astype("str")})
    merged = left.merge(found, on="customer_id", how="left", validate="many_to_one")
    return merged[columns].set_axis(customer_ids.index)

"""Read the generator's truth (`evaluation.truth_dir`) for the (customer, cutoff) rows a report needs.

Generated banks only: a user's bank has no truth folder and every caller skips it. The truth's
monthly hazard holds every open customer at every month start (237M rows at 10M customers), so
it is never read whole: rows are filtered while the file is scanned, batch by batch, to the
cutoffs and customers asked for, and memory grows with the keys, not with the bank.
"""
from __future__ import annotations

from functools import reduce
from operator import and_
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

HAZARD_FILE = "monthly_hazard.parquet"
CUSTOMERS_FILE = "customers.parquet"


def _aligned(path: Path, left: pd.DataFrame, columns: list[str]) -> pd.DataFrame | None:
    """The file's `columns` at each row of `left` (its columns are the key), aligned with `left`,
    empty where the file has no row; None without the file. Only the rows whose every key is
    among `left`'s are read, filtered batch by batch while the file is scanned."""
    if not path.is_file():
        return None
    dataset = ds.dataset(path, format="parquet")
    keys = list(left.columns)
    condition = reduce(and_, (pc.field(key).isin(pa.array(left[key].unique()).cast(dataset.schema.field(key).type))
                              for key in keys))
    found = dataset.to_table(columns=[*keys, *columns], filter=condition).to_pandas()
    found = found.astype({key: left[key].dtype for key in keys})
    merged = left.merge(found, on=keys, how="left", validate="many_to_one")
    return merged[columns].set_axis(left.index)


def hazard_at(keys: pd.DataFrame, truth_dir: Path, columns: list[str]) -> pd.DataFrame | None:
    """The truth's monthly-hazard `columns` at each row of `keys` (customer_id, cutoff), aligned with `keys`.

    Rows without a hazard row (a customer closed before that month) are empty. None without the file.
    """
    left = pd.DataFrame({"customer_id": keys["customer_id"].astype("str"),
                         "month_start": pd.to_datetime(keys["cutoff"]).astype("datetime64[ms]")}, index=keys.index)
    return _aligned(truth_dir / HAZARD_FILE, left, columns)


def customer_truth(customer_ids: pd.Series, truth_dir: Path, columns: list[str]) -> pd.DataFrame | None:
    """The truth's per-customer `columns` for each id of `customer_ids`, aligned with it. None without the file."""
    return _aligned(truth_dir / CUSTOMERS_FILE, customer_ids.astype("str").to_frame("customer_id"), columns)

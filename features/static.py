"""Static customer attributes copied from the customers table (`features.static_features`).

Text attributes become categoricals whose levels are the sorted values present, so a
training and a scoring table built from the same customers table agree; numbers and
flags become floats. These are the values as supplied (usually the current ones), not as
of the cutoff: attributes that change after a cutoff can leak into training rows, so list
only attributes that are stable or known at the time.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features.contract import CUSTOMERS

log = logging.getLogger("features")

RESERVED = {c.name for c in CUSTOMERS.columns} | {"cutoff", "churned", "future_value"}


def static_attributes(customers: pd.DataFrame, names: tuple[str, ...]) -> dict[str, np.ndarray | pd.Categorical]:
    """The listed attributes, one array per name, in the row order of `customers`."""
    out: dict[str, np.ndarray | pd.Categorical] = {}
    reserved = sorted(set(names) & RESERVED)
    if reserved:
        raise ValueError(f"features.static_features lists {reserved}, which are not attributes "
                         "(they are keys, dates or labels)")
    missing = [name for name in names if name not in customers.columns]
    if missing:
        log.warning("static features not in the customers table, left out: %s", ", ".join(missing))
    for name in names:
        if name not in customers.columns:
            continue
        column = customers[name]
        if pd.api.types.is_bool_dtype(column) or (pd.api.types.is_numeric_dtype(column)
                                                  and not isinstance(column.dtype, pd.CategoricalDtype)):
            out[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        elif pd.api.types.is_datetime64_any_dtype(column):
            log.warning("static feature %s is a date; left out (derive a number such as an age instead)", name)
        else:
            text = column.astype("str").where(column.notna())
            levels = sorted(text.dropna().unique())
            out[name] = pd.Categorical(text, categories=levels)
    return out

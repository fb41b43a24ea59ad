"""Static customer attributes copied from the customers table (`features.static_features`).

Each attribute is typed from its content, the same way for CSV and Parquet: a column whose
non-empty values are all numbers (text "29.85" included, as CSV files deliver them) becomes
a float feature; anything else becomes a categorical whose levels are the sorted values
present. `features.static_types` declares a type instead. Text attributes that look like
identifiers or free text (most values unique) are refused unless listed in
`features.allow_identifier_like`: names, e-mail addresses and notes must never become
model features or reach MLflow.

These are the values as supplied (usually the current ones), not as of the cutoff:
attributes that change after a cutoff can leak into training rows, so list only attributes
that are stable or known at the time.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features.contract import CUSTOMERS
from features.settings import FeatureSettings, SettingsProblem

log = logging.getLogger("features")

RESERVED = {c.name for c in CUSTOMERS.columns} | {"cutoff", "churned", "future_value", "days_to_churn"}
IDENTIFIER_MIN_DISTINCT = 50
"""A text attribute with at least this many distinct values ..."""
IDENTIFIER_MIN_DISTINCT_SHARE = 0.5
"""... that are at least this share of its non-empty values looks like an identifier or free text."""


def _distinct_text(column: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Each row's code into the column's distinct values (-1 where missing) and those values as text,
    so the parsing below looks at each distinct value once: a text or categorical column is
    factorised (a million rows of a few segment names parse in milliseconds, not seconds); any other
    dtype keeps one value per present row (an object column can mix 1 and True, which hashing merges)."""
    if pd.api.types.is_string_dtype(column) or isinstance(column.dtype, pd.CategoricalDtype):
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        return codes, pd.Series(np.asarray(uniques, dtype=object)).astype("str")
    present = column.notna().to_numpy()
    codes = np.full(len(column), -1, dtype=np.int64)
    codes[present] = np.arange(int(present.sum()))
    return codes, column[present].astype("str").reset_index(drop=True)


def numeric_values(column: pd.Series) -> pd.Series | None:
    """The column as float64 if every non-empty value is a number (blank text counts as empty), else None."""
    if pd.api.types.is_bool_dtype(column) or (pd.api.types.is_numeric_dtype(column)
                                              and not isinstance(column.dtype, pd.CategoricalDtype)):
        return pd.Series(column.to_numpy(dtype=np.float64, na_value=np.nan), index=column.index)
    if pd.api.types.is_datetime64_any_dtype(column):
        return None
    codes, text = _distinct_text(column)
    text = text.str.strip()
    text = text.where(text != "")
    numbers = pd.to_numeric(text, errors="coerce")
    if (numbers.isna() & text.notna()).any():
        return None
    values = np.append(numbers.to_numpy(dtype=np.float64, na_value=np.nan), np.nan)  # code -1: missing
    return pd.Series(values[codes], index=column.index)


def looks_like_identifier(values: pd.Categorical) -> bool:
    """Near-unique text values: an identifier, a name or free text rather than a category."""
    distinct = len(values.categories)
    return distinct >= IDENTIFIER_MIN_DISTINCT and distinct >= IDENTIFIER_MIN_DISTINCT_SHARE * int((values.codes >= 0).sum())


def categorical_values(column: pd.Series) -> pd.Categorical:
    """The column as text categories whose levels are the sorted distinct values present."""
    codes, text = _distinct_text(column)
    levels, position = np.unique(text.to_numpy(dtype=object), return_inverse=True)
    return pd.Categorical.from_codes(np.where(codes >= 0, position[np.maximum(codes, 0)], -1),
                                     categories=pd.Index(list(levels), dtype="str"))


def static_attributes(customers: pd.DataFrame, settings: FeatureSettings) -> dict[str, np.ndarray | pd.Categorical]:
    """The listed attributes, one array per name, in the row order of `customers`."""
    names = settings.static_features
    out: dict[str, np.ndarray | pd.Categorical] = {}
    reserved = sorted(set(names) & RESERVED)
    if reserved:
        raise SettingsProblem("features.static_features",
                              f"lists {reserved}, which are not attributes (they are keys, dates or labels); "
                              "remove them")
    missing = [name for name in names if name not in customers.columns]
    if missing:
        raise SettingsProblem("features.static_features",
                              f"lists {missing}, not columns of the customers table (its columns: "
                              f"{sorted(map(str, customers.columns))[:20]}); fix the names or remove them")
    refused: list[str] = []
    for name in names:
        column = customers[name]
        declared = settings.static_types.get(name)
        if pd.api.types.is_datetime64_any_dtype(column):
            log.warning("static feature %s is a date; left out (derive a number such as an age instead)", name)
            continue
        numbers = numeric_values(column) if declared != "categorical" else None
        if declared == "numeric" and numbers is None:
            bad = column.astype("str")[pd.to_numeric(column.astype("str").str.strip(), errors="coerce").isna()
                                       & column.notna() & (column.astype("str").str.strip() != "")]
            raise SettingsProblem(f"features.static_types.{name}",
                                  f"declares numeric, but {len(bad):,} value(s) are not numbers (e.g. "
                                  f"{list(bad.unique()[:3])}); fix the data or declare it categorical")
        if numbers is not None:
            out[name] = numbers.to_numpy()
            continue
        category = categorical_values(column)
        if looks_like_identifier(category) and name not in settings.allow_identifier_like:
            refused.append(f"{name} ({len(category.categories):,} distinct values in "
                           f"{int((category.codes >= 0).sum()):,} rows)")
            continue
        out[name] = category
    if refused:
        raise SettingsProblem(
            "features.static_features",
            f"{', '.join(refused)} look like identifiers or free text (most values unique), which could put "
            "personal data into the models and MLflow; remove them, or list them in "
            "features.allow_identifier_like if they really are categories")
    return out


DAYS_PER_MONTH = 30.4375


def customer_value_per_month(customers: pd.DataFrame, column: str) -> np.ndarray:
    """`labels.customer_value_column` as numbers (value per month), in the row order of `customers`."""
    if column not in customers.columns:
        raise SettingsProblem("labels.customer_value_column",
                              f"{column!r} is not a column of the customers table (its columns: "
                              f"{sorted(map(str, customers.columns))[:20]})")
    numbers = numeric_values(customers[column])
    if numbers is None:
        raise SettingsProblem("labels.customer_value_column",
                              f"customers.{column} holds values that are not numbers; name a numeric column "
                              "(a value per month, such as a monthly charge)")
    return numbers.to_numpy()


def customer_value_per_horizon(customers: pd.DataFrame, column: str, ids: pd.Series, horizon_days: int) -> np.ndarray:
    """The known value per label horizon of the customers `ids` (in that order): the customers column
    `column` (`labels.customer_value_column`, a value per month) times the horizon in months, as the
    labels take it on snapshot data; NaN for an id not in `customers` or a value that is not a number."""
    per_month = pd.Series(customer_value_per_month(customers, column),
                          index=customers["customer_id"].astype("str").to_numpy())
    return per_month.reindex(ids.astype("str").to_numpy()).to_numpy(dtype=float) * (horizon_days / DAYS_PER_MONTH)

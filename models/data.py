"""From a training table to model inputs: the feature schema and the train/calibration/test split."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

KEY_COLUMNS: tuple[str, ...] = ("customer_id", "cutoff")
LABEL_COLUMNS: tuple[str, ...] = ("churned", "future_value", "days_to_churn")


@dataclass(frozen=True)
class FeatureSchema:
    """The model's inputs: feature names in order, and the fixed levels of each categorical.

    Fixing the levels at training time means a category seen only at scoring time becomes
    missing instead of silently shifting every other level's code.
    """

    features: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"features": list(self.features),
                           "categorical": {k: list(v) for k, v in self.categorical.items()}},
                          indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureSchema":
        data = json.loads(text)
        return cls(tuple(data["features"]), {k: tuple(v) for k, v in data["categorical"].items()})

    def problems(self, frame: pd.DataFrame) -> list[str]:
        """Why `frame` cannot be scored by a model with this schema ([] if it can)."""
        problems = []
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            problems.append(f"missing feature column(s): {', '.join(missing[:10])}"
                            + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        for name in self.features:
            if name not in frame.columns:
                continue
            column = frame[name]
            if name in self.categorical:
                if pd.api.types.is_numeric_dtype(column) and not isinstance(column.dtype, pd.CategoricalDtype):
                    problems.append(f"{name} should be categorical text but is {column.dtype}")
            elif not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
                problems.append(f"{name} should be numeric but is {column.dtype}")
        return problems

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model input: features in schema order, numerics as float, categoricals with fixed levels."""
        columns: dict[str, pd.Series] = {}
        for name in self.features:
            column = frame[name]
            if name in self.categorical:
                levels = list(self.categorical[name])
                text = column.astype("str").where(column.notna())
                text = text.where(text.isin(levels))  # unseen levels become missing
                columns[name] = pd.Series(pd.Categorical(text, categories=levels), index=frame.index)
            else:
                columns[name] = column.astype("float64")
        return pd.DataFrame(columns, index=frame.index)


def infer_schema(frame: pd.DataFrame, features: list[str]) -> FeatureSchema:
    """Schema from a training table: text or category columns are categorical, levels sorted."""
    categorical: dict[str, tuple[str, ...]] = {}
    for name in features:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(column) \
                or column.dtype == object:
            levels = sorted({str(v) for v in column.dropna().unique()})
            categorical[name] = tuple(levels)
    return FeatureSchema(tuple(features), categorical)


def model_feature_columns(frame: pd.DataFrame) -> list[str]:
    """Every column of a training or scoring table that is not a key or a label."""
    return [c for c in frame.columns if c not in KEY_COLUMNS and c not in LABEL_COLUMNS]


def customer_hash_share(customer_ids: pd.Series, seed: int) -> np.ndarray:
    """A stable number in [0, 1) per customer id, the same in every run and on every machine."""
    key = f"{seed:016d}"[-16:]
    hashed = pd.util.hash_pandas_object(customer_ids.astype("str"), index=False, hash_key=key)
    return (hashed.to_numpy(dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class Split:
    """Row masks of a training table: fit the trees, early-stop and calibrate, and test."""

    fit: np.ndarray
    calibration: np.ndarray
    test: np.ndarray
    kind: str
    test_cutoffs: tuple[str, ...]
    train_cutoffs: tuple[str, ...]

    def describe(self) -> dict[str, object]:
        return {"split": self.kind, "rows_fit": int(self.fit.sum()),
                "rows_calibration": int(self.calibration.sum()), "rows_test": int(self.test.sum()),
                "test_cutoffs": list(self.test_cutoffs), "train_cutoffs": list(self.train_cutoffs)}


def split_rows(frame: pd.DataFrame, horizon_days: int, calibration_share: float,
               single_cutoff_test_share: float, seed: int) -> Split:
    """Out-of-time split: the latest cutoff is the test set.

    Training cutoffs end one label horizon before it, so no training label looks into the
    test period. Within training cutoffs, a hashed share of customers is held out for early
    stopping and calibration, so no customer is in both. With a single cutoff (snapshot
    data) customers are hashed into fit, calibration and test instead.
    """
    cutoffs = pd.to_datetime(frame["cutoff"])
    unique = sorted(cutoffs.unique())
    share = customer_hash_share(frame["customer_id"], seed)
    if len(unique) >= 2:
        test_cutoff = unique[-1]
        test = (cutoffs == test_cutoff).to_numpy()
        horizon = pd.Timedelta(days=horizon_days)
        train_cut = [c for c in unique[:-1] if c + horizon <= test_cutoff]
        kind = "out_of_time"
        if not train_cut:
            train_cut = list(unique[:-1])
            kind = "out_of_time_overlapping"
        train = cutoffs.isin(train_cut).to_numpy()
        calibration = train & (share < calibration_share)
        fit = train & ~calibration
        return Split(fit, calibration, test, kind, (str(pd.Timestamp(test_cutoff).date()),),
                     tuple(str(pd.Timestamp(c).date()) for c in train_cut))
    test = share < single_cutoff_test_share
    calibration = ~test & (share < single_cutoff_test_share + calibration_share * (1 - single_cutoff_test_share))
    fit = ~test & ~calibration
    only = (str(pd.Timestamp(unique[0]).date()),) if unique else ()
    return Split(fit, calibration, test, "hashed_customers", only, only)

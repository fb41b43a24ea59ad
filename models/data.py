"""From a training table to model inputs: the feature schema and the train/calibration/test split."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.ids import customer_hash_share

KEY_COLUMNS: tuple[str, ...] = ("customer_id", "cutoff")
LABEL_COLUMNS: tuple[str, ...] = ("churned", "future_value", "days_to_churn")
WEIGHT_COLUMN = "sample_weight"
"""Row weight of a training table whose non-churners were sampled (`pipelines.train`): 1 / sampling rate."""
REFIT_WEIGHT_COLUMN = "refit_sample_weight"
"""Weight of a row in the refit on every labelled cutoff of a sampled table; 0: not in the refit."""


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
        """The model input: features in schema order, numerics as float32, categoricals with fixed levels.

        float32 halves the memory of float64 and is what LightGBM bins on anyway; a column that
        is already float32 is not copied.
        """
        columns: dict[str, pd.Series] = {}
        for name in self.features:
            column = frame[name]
            if name in self.categorical:
                levels = list(self.categorical[name])  # unseen levels become missing (code -1)
                columns[name] = pd.Series(pd.Categorical.from_codes(level_codes(column, levels), categories=levels),
                                          index=frame.index)
            else:
                columns[name] = column.astype("float32")  # copy-on-write: no copy when already float32
        return pd.DataFrame(columns, index=frame.index)


def level_codes(column: pd.Series, levels: Sequence[str]) -> np.ndarray:
    """Each row's position in `levels` by its text value (`astype("str")`), -1 when missing or not a level.
    A categorical column is looked up once per category, not once per row (834,657 scored customers: a
    tenth of the time)."""
    index = pd.Index(list(levels))
    if isinstance(column.dtype, pd.CategoricalDtype):
        position = index.get_indexer(column.cat.categories.astype("str"))
        codes = column.cat.codes.to_numpy()
        if not len(position):
            return np.full(len(codes), -1, dtype=np.int64)
        return np.where(codes >= 0, position[codes], -1)
    return index.get_indexer(column.astype("str").where(column.notna()))


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
    return [c for c in frame.columns
            if c not in KEY_COLUMNS and c not in LABEL_COLUMNS and c not in (WEIGHT_COLUMN, REFIT_WEIGHT_COLUMN)]


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


@dataclass(frozen=True)
class RowSample:
    """Which rows of a training table to keep, and their weights (`sample_non_churners`)."""

    keep: np.ndarray
    weight: np.ndarray
    rate: float
    calibration_rate: float
    rows: int
    kept: int
    sampleable: int
    refit_weight: np.ndarray
    """Weight of each row in the refit on every labelled cutoff (0: left out). The test cutoff, kept whole
    for the figures, is sampled for the refit like every other cutoff, so the refit costs no more than the fit."""

    @property
    def active(self) -> bool:
        return self.rate < 1.0 or self.calibration_rate < 1.0


def sample_non_churners(keys: pd.DataFrame, split: Split, max_rows: int | None, calibration_share: float,
                        seed: int) -> RowSample:
    """Sample a large training table (`customer_id`, `cutoff`, `churned` of every row) down to about
    `max_rows` rows outside the test cutoff (the rows models are fitted, stopped and calibrated on).

    - test rows: all kept (every reported figure is on the whole test cutoff);
    - calibration rows: a hashed share of the calibration customers, with all their rows, churners
      or not, so that they hold at most `calibration_share` of `max_rows`: an unweighted random
      sample of customers, so early stopping and calibration still see the real churn rate and
      the probabilities stay right;
    - other rows (fit customers, also in the cutoffs only the refit uses): every churner, and the
      non-churners with the same seeded chance r, weighted 1 / r (the boosters and the logistic
      regression fit weighted rows).
    - the refit on every labelled cutoff (`refit_weight`): the rows above outside the test cutoff, and
      the test cutoff's rows sampled by the same rules (its churners, its calibration customers
      thinned by the same hash, its other non-churners at the same rate r, weighted 1 / r).
    With at most `max_rows` rows outside the test cutoff (or None) every row is kept with weight 1.
    """
    rows = len(keys)
    churned = keys["churned"].to_numpy(dtype=int) == 1
    # rows of calibration customers outside the test cutoff: the split's calibration rows, and those of the
    # cutoffs too close to the test cutoff to train on (the refit on every cutoff calibrates on them)
    share = customer_hash_share(keys["customer_id"], seed)
    calibration = ~split.test & (split.calibration | (~split.fit & (share < calibration_share)))
    sampleable_rows = ~split.test & ~calibration & ~churned
    sampleable = int(sampleable_rows.sum())
    if max_rows is None or rows - int(split.test.sum()) <= max_rows:
        return RowSample(np.ones(rows, dtype=bool), np.ones(rows), 1.0, 1.0, rows, rows, sampleable, np.ones(rows))
    calibration_rate = min(1.0, max_rows * calibration_share / max(int(calibration.sum()), 1))
    thinned = customer_hash_share(keys["customer_id"], seed + 5) < calibration_rate
    keep_calibration = calibration & thinned
    others = ~calibration & ~sampleable_rows  # test rows and fit churners
    room = max_rows - int(keep_calibration.sum()) - int((others & ~split.test).sum())
    rate = float(np.clip(room / max(sampleable, 1), 0.01, 1.0))
    drawn = np.random.default_rng(seed).random(rows) < rate
    keep = others | keep_calibration | (sampleable_rows & drawn)
    weight = np.where(sampleable_rows, 1.0 / rate, 1.0)
    refit_weight = np.where(keep & ~split.test, weight, 0.0)
    test_calibration = split.test & (share < calibration_share)
    test_stayers = split.test & ~test_calibration & ~churned
    refit_weight[split.test & ~test_calibration & churned] = 1.0
    refit_weight[test_calibration & thinned] = 1.0
    refit_weight[test_stayers & drawn] = 1.0 / rate
    return RowSample(keep, weight, rate, calibration_rate, rows, int(keep.sum()), sampleable, refit_weight)

"""Logistic regression on the model's features: the reference every LightGBM model must beat,
and a legitimate champion when it does not.

The design is explicit so that the fitted model is plain numbers (JSON, never a pickle)
and its explanations are exact: numeric features are imputed with the training median
(plus a missing-value indicator where the training rows had gaps) and standardised;
categoricals are one-hot over the schema's fixed levels plus `<missing>` (unseen levels
count as missing). A customer's log-odds is the intercept plus one term per design
column, so each feature's contribution is the sum of its columns' terms measured from
the training mean: contributions plus `base_value` equal the log-odds exactly, the same
layout as LightGBM's TreeSHAP output, so the same reason templates render them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.calibration import Calibrator
from models.data import WEIGHT_COLUMN, FeatureSchema, customer_hash_share

MISSING_LEVEL = "<missing>"
ALGORITHM = "logistic_regression"


@dataclass(frozen=True)
class LinearDesign:
    """How features become design columns: medians, indicators, scaling, one-hot levels."""

    numeric: tuple[str, ...]
    medians: tuple[float, ...]
    indicators: tuple[str, ...]
    categorical: dict[str, tuple[str, ...]]
    means: tuple[float, ...]
    scales: tuple[float, ...]

    def columns(self) -> list[tuple[str, str]]:
        """(feature, design column name) of every design column, in order."""
        out = [(name, name) for name in self.numeric]
        out += [(name, f"{name}__missing") for name in self.indicators]
        for name, levels in self.categorical.items():
            out += [(name, f"{name}={level}") for level in (*levels, MISSING_LEVEL)]
        return out

    def raw(self, matrix: pd.DataFrame) -> np.ndarray:
        """Unscaled design matrix (imputed numerics, indicators, one-hot) of a schema matrix."""
        parts: list[np.ndarray] = []
        if self.numeric:
            values = matrix[list(self.numeric)].to_numpy(dtype=np.float64, na_value=np.nan)
            missing = ~np.isfinite(values)
            parts.append(np.where(missing, np.asarray(self.medians), values))
        for name in self.indicators:
            values = matrix[name].to_numpy(dtype=np.float64, na_value=np.nan)
            parts.append((~np.isfinite(values)).astype(np.float64)[:, None])
        for name, levels in self.categorical.items():
            codes = pd.Categorical(matrix[name], categories=list(levels)).codes.astype(np.int64)
            codes = np.where(codes < 0, len(levels), codes)
            one_hot = np.zeros((len(matrix), len(levels) + 1), dtype=np.float64)
            one_hot[np.arange(len(matrix)), codes] = 1.0
            parts.append(one_hot)
        if not parts:
            return np.zeros((len(matrix), 0))
        return np.hstack(parts)

    def standardised(self, matrix: pd.DataFrame) -> np.ndarray:
        return (self.raw(matrix) - np.asarray(self.means)) / np.asarray(self.scales)

    def to_dict(self) -> dict[str, object]:
        return {"numeric": list(self.numeric), "medians": list(self.medians), "indicators": list(self.indicators),
                "categorical": {k: list(v) for k, v in self.categorical.items()},
                "means": list(self.means), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "LinearDesign":
        return cls(tuple(data["numeric"]), tuple(data["medians"]), tuple(data["indicators"]),  # type: ignore[arg-type]
                   {k: tuple(v) for k, v in data["categorical"].items()},  # type: ignore[union-attr]
                   tuple(data["means"]), tuple(data["scales"]))  # type: ignore[arg-type]


def fit_design(matrix: pd.DataFrame, schema: FeatureSchema) -> LinearDesign:
    """The design of a schema matrix's training rows (medians, gaps, means and scales from them)."""
    numeric = tuple(name for name in schema.features if name not in schema.categorical)
    values = matrix[list(numeric)].to_numpy(dtype=np.float64, na_value=np.nan) if numeric else np.zeros((len(matrix), 0))
    finite = np.isfinite(values)
    medians = np.array([np.median(values[finite[:, i], i]) if finite[:, i].any() else 0.0
                        for i in range(values.shape[1])], dtype=np.float64)
    medians = np.where(np.isfinite(medians), medians, 0.0)
    indicators = tuple(name for i, name in enumerate(numeric) if (~np.isfinite(values[:, i])).any())
    categorical = {name: tuple(schema.categorical[name]) for name in schema.features if name in schema.categorical}
    draft = LinearDesign(numeric, tuple(map(float, medians)), indicators, categorical, (), ())
    raw = draft.raw(matrix)
    means = raw.mean(axis=0) if len(raw) else np.zeros(raw.shape[1])
    scales = raw.std(axis=0) if len(raw) else np.ones(raw.shape[1])
    scales = np.where(scales > 1e-12, scales, 1.0)
    return LinearDesign(numeric, draft.medians, indicators, categorical, tuple(map(float, means)),
                        tuple(map(float, scales)))


DESIGN_BLOCK_ROWS = 100_000
"""Rows of the dense design built at once when scoring (about 100 MB at 150 design columns)."""


@dataclass
class LinearChurnModel:
    """Calibrated logistic regression with the same interface as the LightGBM `ChurnModel`."""

    design: LinearDesign
    coefficients: np.ndarray
    intercept: float
    calibrator: Calibrator
    schema: FeatureSchema
    reference: dict[str, object]
    algorithm: str = ALGORITHM
    penalty_c: float = 1.0
    validation: tuple[np.ndarray, np.ndarray] | None = None
    """(row mask, raw scores) on rows the model never trained on; in memory only, for blending."""

    def log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        return self.log_odds_of_matrix(self.schema.matrix(frame))

    def log_odds_of_matrix(self, matrix: pd.DataFrame) -> np.ndarray:
        """Log-odds per row, in blocks of rows so the dense design of a large table is never whole."""
        out = np.empty(len(matrix), dtype=np.float64)
        for start in range(0, len(matrix), DESIGN_BLOCK_ROWS):
            block = matrix.iloc[start:start + DESIGN_BLOCK_ROWS]
            out[start:start + len(block)] = self.design.standardised(block) @ self.coefficients + self.intercept
        return out

    def raw_score(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probability of the logistic regression."""
        return self.raw_of_matrix(self.schema.matrix(frame))

    def raw_of_matrix(self, matrix: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.log_odds_of_matrix(matrix)))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability per row."""
        return self.calibrator.transform(self.raw_score(frame))

    def predict_matrix(self, matrix: pd.DataFrame) -> np.ndarray:
        return self.calibrator.transform(self.raw_of_matrix(matrix))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each feature's exact contribution to the log-odds, from the training mean (last column: base value)."""
        return self.contributions_of_matrix(self.schema.matrix(frame)).set_axis(frame.index)

    def contributions_of_matrix(self, matrix: pd.DataFrame) -> pd.DataFrame:
        terms = self.design.standardised(matrix) * self.coefficients  # standardised: training mean 0
        columns = self.design.columns()
        features = list(self.schema.features)
        position = {name: i for i, name in enumerate(features)}
        owner = np.array([position[feature] for feature, _ in columns], dtype=np.int64)
        out = np.zeros((len(matrix), len(features)))
        for j in range(terms.shape[1]):
            out[:, owner[j]] += terms[:, j]
        frame = pd.DataFrame(out, index=matrix.index, columns=features)
        return frame.assign(base_value=self.intercept)

    fast_contributions = contributions_of_matrix
    """Exact contributions are already cheap for a linear model."""

    def importance(self) -> pd.Series:
        """Mean absolute contribution scale per feature (|coefficient| summed over its design columns)."""
        totals = pd.Series(0.0, index=list(self.schema.features))
        for (feature, _), coef in zip(self.design.columns(), self.coefficients):
            totals[feature] += abs(float(coef))
        return totals

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        payload = {"algorithm": self.algorithm, "design": self.design.to_dict(), "penalty_c": self.penalty_c,
                   "coefficients": [float(c) for c in self.coefficients], "intercept": float(self.intercept)}
        (folder / "linear.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
        (folder / "schema.json").write_text(self.schema.to_json())
        (folder / "calibration.json").write_text(json.dumps(self.calibrator.to_dict(), indent=2))
        (folder / "reference.json").write_text(json.dumps(self.reference, indent=2, sort_keys=True))
        (folder / "kind.txt").write_text("churn-risk\n")

    @classmethod
    def load(cls, folder: Path) -> "LinearChurnModel":
        payload = json.loads((folder / "linear.json").read_text())
        return cls(LinearDesign.from_dict(payload["design"]), np.asarray(payload["coefficients"], dtype=float),
                   float(payload["intercept"]),
                   Calibrator.from_dict(json.loads((folder / "calibration.json").read_text())),
                   FeatureSchema.from_json((folder / "schema.json").read_text()),
                   json.loads((folder / "reference.json").read_text()), str(payload.get("algorithm", ALGORITHM)),
                   float(payload.get("penalty_c", 1.0)))


def linear_fit_rows(frame: pd.DataFrame, fit: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """The fit rows the logistic regression uses: all of them, or with more than `max_rows` a
    hashed share of the customers (the same every run) holding about `max_rows` rows.

    About 150 coefficients are estimated long before a million rows; the dense float64 design
    of every row of a large table would be the largest object of the whole training run.
    """
    count = int(fit.sum())
    if max_rows is None or count <= max_rows:
        return fit
    return fit & (customer_hash_share(frame["customer_id"], seed + 3) < max_rows / count)


def fit_linear_churn_model(frame: pd.DataFrame, fit: np.ndarray, schema: FeatureSchema, seed: int,
                           calibration: np.ndarray | None = None, calibration_method: str = "auto",
                           penalty_c: float = 1.0, max_rows: int | None = None) -> LinearChurnModel:
    """L2-regularised logistic regression on the `fit` rows (at most about `max_rows` of them,
    `linear_fit_rows`; weighted when the table's non-churners were sampled); calibrated on
    `calibration` rows if given."""
    from sklearn.linear_model import LogisticRegression

    from models.boosting import profile_rows
    from models.calibration import fit_calibrator

    fit = linear_fit_rows(frame, fit, max_rows, seed)
    y = frame["churned"].to_numpy(dtype=int)
    fit_matrix = schema.matrix(frame[fit])
    design = fit_design(fit_matrix, schema)
    x_fit = design.standardised(fit_matrix)
    weight = frame[WEIGHT_COLUMN].to_numpy(dtype=np.float64)[fit] if WEIGHT_COLUMN in frame.columns else None
    model = LogisticRegression(C=penalty_c, max_iter=2000, random_state=seed).fit(x_fit, y[fit], sample_weight=weight)
    del x_fit
    linear = LinearChurnModel(design, model.coef_[0].astype(float), float(model.intercept_[0]),
                              Calibrator("none"), schema, profile_rows(fit_matrix),
                              penalty_c=penalty_c)
    if calibration is not None and calibration.any():
        held_out = linear.raw_of_matrix(schema.matrix(frame[calibration]))
        calibrator, _ = fit_calibrator(held_out, y[calibration], calibration_method, seed)
        linear.calibrator = calibrator
        linear.validation = (calibration, held_out)
    return linear


PENALTY_GRID: tuple[float, ...] = (1.0, 0.1, 0.01, 0.001)
"""Inverse L2 strengths tried by cross-validation (small tables need stronger regularisation)."""


def fit_linear_churn_model_cv(frame: pd.DataFrame, rows: np.ndarray, schema: FeatureSchema, seed: int,
                              calibration_method: str = "auto") -> LinearChurnModel:
    """The logistic regression on every row in `rows`: its L2 strength chosen by 5-fold
    cross-validated log loss (customers hashed into folds), calibrated on the out-of-fold scores."""
    from sklearn.metrics import log_loss

    from models.boosting import customer_folds
    from models.calibration import fit_calibrator

    y = frame["churned"].to_numpy(dtype=int)
    positions = np.flatnonzero(rows)
    folds = customer_folds(frame["customer_id"], rows, seed)
    best: tuple[float, float, np.ndarray] | None = None
    for penalty in PENALTY_GRID:
        out_of_fold = np.zeros(len(positions))
        for fit_idx, held_idx in folds:
            fit_mask = np.zeros(len(frame), dtype=bool)
            fit_mask[positions[fit_idx]] = True
            fold_model = fit_linear_churn_model(frame, fit_mask, schema, seed, penalty_c=penalty)
            out_of_fold[held_idx] = fold_model.raw_score(frame.iloc[positions[held_idx]])
        loss = float(log_loss(y[positions], np.clip(out_of_fold, 1e-6, 1 - 1e-6), labels=[0, 1]))
        if best is None or loss < best[0]:
            best = (loss, penalty, out_of_fold)
    assert best is not None
    model = fit_linear_churn_model(frame, rows, schema, seed, penalty_c=best[1])
    model.calibrator, _ = fit_calibrator(best[2], y[positions], calibration_method, seed)
    model.validation = (rows, best[2])
    return model

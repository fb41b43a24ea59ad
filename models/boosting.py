"""The two LightGBM models: churn risk (calibrated classifier) and customer value (Tweedie regressor).

Both are saved as LightGBM's own text format plus small JSON files, so loading a model
never unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.calibration import Calibrator, fit_calibrator
from models.data import WEIGHT_COLUMN, FeatureSchema
from models.drift import reference_profile
from models.settings import BoosterSettings


def booster_params(settings: BoosterSettings, objective: str, seed: int, **extra: object) -> dict[str, object]:
    """LightGBM parameters with every source of randomness pinned (same data + seed = same model)."""
    return {
        "objective": objective,
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_child_samples": settings.min_child_samples,
        "feature_fraction": settings.feature_fraction,
        "bagging_fraction": settings.bagging_fraction,
        "bagging_freq": 1 if settings.bagging_fraction < 1 else 0,
        "lambda_l2": settings.lambda_l2,
        "num_threads": settings.num_threads,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
        **extra,
    }


def train_booster(fit_x: pd.DataFrame, fit_y: np.ndarray, valid_x: pd.DataFrame, valid_y: np.ndarray,
                  params: dict[str, object], settings: BoosterSettings, rounds: int | None = None,
                  weight: np.ndarray | None = None) -> lgb.Booster:
    """Train with early stopping on the validation rows; categoricals handled natively.

    With `rounds` (a refit with settings already chosen) exactly that many rounds, no early stopping.
    `weight`: per fit row (sampled non-churners count 1 / their sampling rate).
    """
    train_set = lgb.Dataset(fit_x, label=fit_y, weight=weight, categorical_feature="auto", free_raw_data=True)
    if rounds is not None:
        return lgb.train(params, train_set, num_boost_round=max(1, rounds))
    valid_set = lgb.Dataset(valid_x, label=valid_y, reference=train_set)
    return lgb.train(
        params, train_set, num_boost_round=settings.max_rounds, valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(settings.early_stopping_rounds, verbose=False)],
    )


@dataclass
class ChurnModel:
    """Calibrated probability of churning within the label horizon."""

    booster: lgb.Booster
    calibrator: Calibrator
    schema: FeatureSchema
    reference: dict[str, object]
    algorithm: str = "lightgbm"
    validation: tuple[np.ndarray, np.ndarray] | None = None
    """(row mask, raw scores) on rows the booster never trained on (calibration rows, or the
    out-of-fold scores of cross-validation); kept in memory for blending, never saved."""

    def raw_score(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated booster probability (monotone in the calibrated one)."""
        return self.raw_of_matrix(self.schema.matrix(frame))

    def raw_of_matrix(self, matrix: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(matrix, num_threads=self.booster.params.get("num_threads", 2))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability per row."""
        return self.calibrator.transform(self.raw_score(frame))

    def predict_matrix(self, matrix: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability of a ready model matrix (`schema.matrix(frame)`)."""
        return self.calibrator.transform(self.raw_of_matrix(matrix))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """TreeSHAP contribution of each feature to each row's log-odds (last column: base value)."""
        values = self.booster.predict(self.schema.matrix(frame), pred_contrib=True)
        return pd.DataFrame(values, index=frame.index, columns=[*self.schema.features, "base_value"])

    def fast_contributions(self, matrix: pd.DataFrame) -> pd.DataFrame:
        """Path attribution (an approximation of TreeSHAP, 30-50x faster) for long lists."""
        from models.retention import path_contributions

        return path_contributions(self.booster, matrix)

    def importance(self) -> pd.Series:
        """Total gain per feature."""
        return pd.Series(self.booster.feature_importance("gain"), index=list(self.schema.features))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(folder / "booster.txt")
        (folder / "schema.json").write_text(self.schema.to_json())
        (folder / "calibration.json").write_text(json.dumps(self.calibrator.to_dict(), indent=2))
        (folder / "reference.json").write_text(json.dumps(self.reference, indent=2, sort_keys=True))
        (folder / "kind.txt").write_text("churn-risk\n")

    @classmethod
    def load(cls, folder: Path) -> "ChurnModel":
        return cls(
            lgb.Booster(model_file=str(folder / "booster.txt")),
            Calibrator.from_dict(json.loads((folder / "calibration.json").read_text())),
            FeatureSchema.from_json((folder / "schema.json").read_text()),
            json.loads((folder / "reference.json").read_text()),
        )


@dataclass
class ValueModel:
    """Expected transaction value in the next label horizon (never negative)."""

    booster: lgb.Booster
    schema: FeatureSchema

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(self.schema.matrix(frame), num_threads=self.booster.params.get("num_threads", 2))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(folder / "booster.txt")
        (folder / "schema.json").write_text(self.schema.to_json())
        (folder / "kind.txt").write_text("customer-value\n")

    @classmethod
    def load(cls, folder: Path) -> "ValueModel":
        return cls(lgb.Booster(model_file=str(folder / "booster.txt")),
                   FeatureSchema.from_json((folder / "schema.json").read_text()))


def row_weights(frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray | None:
    """Weights of `rows` when the table's non-churners were sampled (`WEIGHT_COLUMN`), else None."""
    if WEIGHT_COLUMN not in frame.columns:
        return None
    return frame[WEIGHT_COLUMN].to_numpy(dtype=np.float64)[rows]


REFERENCE_ROWS = 200_000
"""Rows (evenly spaced) the drift reference of a model is profiled on: quantiles of more rows
change nothing but cost a sort of every column of the whole fit matrix."""


def profile_rows(matrix: pd.DataFrame) -> dict[str, object]:
    """`reference_profile` of at most `REFERENCE_ROWS` evenly spaced rows of the fit matrix."""
    step = max(1, -(-len(matrix) // REFERENCE_ROWS))
    return reference_profile(matrix.iloc[::step])


def fit_churn_model(frame: pd.DataFrame, fit: np.ndarray, calibration: np.ndarray, schema: FeatureSchema,
                    settings: BoosterSettings, calibration_method: str, seed: int,
                    rounds: int | None = None) -> tuple[ChurnModel, dict[str, object]]:
    """Train the churn booster on `fit` rows, early-stop and calibrate on `calibration` rows
    (with `rounds`: exactly that many rounds, calibration rows used for calibration only).

    Only the fit and calibration rows become model matrices (never the whole table). With a
    `WEIGHT_COLUMN` (sampled non-churners) the fit rows are weighted; the calibration rows are
    never sampled, so the calibrated probabilities are those of the whole population.
    """
    y = frame["churned"].to_numpy(dtype=int)
    params = booster_params(settings, "binary", seed, metric="binary_logloss")
    x_fit, x_cal = schema.matrix(frame[fit]), schema.matrix(frame[calibration])
    booster = train_booster(x_fit, y[fit], x_cal, y[calibration], params, settings, rounds, row_weights(frame, fit))
    reference = profile_rows(x_fit)
    del x_fit
    raw = booster.predict(x_cal)
    calibrator, losses = fit_calibrator(raw, y[calibration], calibration_method, seed)
    info = {"best_iteration": int(booster.best_iteration or booster.current_iteration()),
            "calibration_method": calibrator.method,
            **{f"calibration_cv_log_loss_{k}": v for k, v in losses.items()}}
    model = ChurnModel(booster, calibrator, schema, reference, validation=(calibration, raw))
    return model, info


def fit_value_model(frame: pd.DataFrame, fit: np.ndarray, valid: np.ndarray, schema: FeatureSchema,
                    settings: BoosterSettings, variance_power: float, seed: int,
                    rounds: int | None = None) -> tuple[ValueModel, dict[str, object]]:
    """Train the Tweedie value booster: suits many zeros and a heavy tail; negatives clipped to 0."""
    y = np.clip(frame["future_value"].to_numpy(dtype=float), 0, None)
    params = booster_params(settings, "tweedie", seed, tweedie_variance_power=variance_power,
                            metric="tweedie")
    booster = train_booster(schema.matrix(frame[fit]), y[fit], schema.matrix(frame[valid]), y[valid], params,
                            settings, rounds, row_weights(frame, fit))
    return ValueModel(booster, schema), {"best_iteration": int(booster.best_iteration or booster.current_iteration())}


def load_churn_model(folder: Path) -> "ChurnModel | LinearChurnModel | BlendChurnModel":
    """A saved churn-risk bundle, whichever algorithm won: LightGBM, the logistic regression or their blend."""
    from models.blend import BlendChurnModel
    from models.linear import LinearChurnModel

    if (folder / "blend.json").is_file():
        return BlendChurnModel.load(folder)
    if (folder / "linear.json").is_file():
        return LinearChurnModel.load(folder)
    return ChurnModel.load(folder)


if TYPE_CHECKING:
    from models.blend import BlendChurnModel
    from models.linear import LinearChurnModel


CV_FOLDS = 5


def customer_folds(customer_ids: pd.Series, rows: np.ndarray, seed: int, folds: int = CV_FOLDS
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, held-out) positions within `rows` for k folds, customers hashed into folds (a
    customer's rows at several cutoffs stay in one fold, so no fold is judged on a customer it saw)."""
    from models.data import customer_hash_share

    share = customer_hash_share(customer_ids[rows].reset_index(drop=True), seed + 1)
    fold = np.minimum((share * folds).astype(np.int64), folds - 1)
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(folds)]


def fit_churn_model_cv(frame: pd.DataFrame, rows: np.ndarray, schema: FeatureSchema, settings: BoosterSettings,
                       calibration_method: str, seed: int) -> tuple[ChurnModel, dict[str, object]]:
    """The churn booster on every row in `rows`, for small tables where a held-out share is costly.

    Boosting rounds come from 5-fold cross-validation with early stopping (customers hashed
    into folds); the final booster is trained on all rows with the mean best round count of
    the folds, and calibrated on the folds' out-of-fold scores (each score from a booster
    that never saw that customer).
    """
    x = schema.matrix(frame)[rows]
    y = frame["churned"].to_numpy(dtype=int)[rows]
    params = booster_params(settings, "binary", seed, metric="binary_logloss")
    out_of_fold = np.zeros(len(y))
    rounds: list[int] = []
    for fit_idx, held_idx in customer_folds(frame["customer_id"], rows, seed):
        booster = train_booster(x.iloc[fit_idx], y[fit_idx], x.iloc[held_idx], y[held_idx], params, settings)
        best = int(booster.best_iteration or booster.current_iteration())
        rounds.append(best)
        out_of_fold[held_idx] = booster.predict(x.iloc[held_idx], num_iteration=best)
    final_rounds = max(1, int(round(float(np.mean(rounds)))))
    booster = train_booster(x, y, x, y, params, settings, rounds=final_rounds)
    calibrator, losses = fit_calibrator(out_of_fold, y, calibration_method, seed)
    info = {"best_iteration": final_rounds, "cv_best_iterations": rounds, "fit": "cross_validated",
            "calibration_method": calibrator.method,
            **{f"calibration_cv_log_loss_{k}": v for k, v in losses.items()}}
    return ChurnModel(booster, calibrator, schema, profile_rows(x), validation=(rows, out_of_fold)), info

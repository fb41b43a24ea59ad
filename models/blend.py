"""A blend of the LightGBM churn model and the logistic regression: often better than either.

The two models see the data differently (trees find interactions and thresholds, the
linear model extrapolates smoothly and needs little data), so on small or noisy tables a
weighted sum of their log-odds ranks and calibrates better than either alone. The weight
is chosen on validation scores only (calibration rows, or out-of-fold scores in
cross-validation), never on the test rows, and the blend is calibrated on the same scores.

Explanations stay exact: both members' contributions are in log-odds, so the blend's
contribution of a feature is w x its TreeSHAP value + (1 - w) x its linear term, and they
add up to the blended log-odds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from models.boosting import ChurnModel
from models.calibration import Calibrator, fit_calibrator
from models.data import FeatureSchema
from models.linear import LinearChurnModel

ALGORITHM = "blend"
WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
"""LightGBM weights tried on the validation scores (0 = the logistic regression alone)."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@dataclass
class BlendChurnModel:
    """Calibrated w x LightGBM log-odds + (1 - w) x logistic log-odds; the churn-model interface."""

    booster_model: ChurnModel
    linear_model: LinearChurnModel
    weight: float
    calibrator: Calibrator
    algorithm: str = ALGORITHM

    @property
    def schema(self) -> FeatureSchema:
        return self.booster_model.schema

    @property
    def reference(self) -> dict[str, object]:
        return self.booster_model.reference

    def log_odds_of_matrix(self, matrix: pd.DataFrame) -> np.ndarray:
        return (self.weight * _logit(self.booster_model.raw_of_matrix(matrix))
                + (1 - self.weight) * self.linear_model.log_odds_of_matrix(matrix))

    def raw_of_matrix(self, matrix: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.log_odds_of_matrix(matrix)))

    def raw_score(self, frame: pd.DataFrame) -> np.ndarray:
        return self.raw_of_matrix(self.schema.matrix(frame))

    def predict_matrix(self, matrix: pd.DataFrame) -> np.ndarray:
        return self.calibrator.transform(self.raw_of_matrix(matrix))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability per row."""
        return self.predict_matrix(self.schema.matrix(frame))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Exact: w x TreeSHAP + (1 - w) x linear terms (last column: base value)."""
        return (self.weight * self.booster_model.contributions(frame)
                + (1 - self.weight) * self.linear_model.contributions(frame))

    def fast_contributions(self, matrix: pd.DataFrame) -> pd.DataFrame:
        return (self.weight * self.booster_model.fast_contributions(matrix)
                + (1 - self.weight) * self.linear_model.fast_contributions(matrix))

    def importance(self) -> pd.Series:
        return self.booster_model.importance()

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster_model.save(folder / "lightgbm")
        self.linear_model.save(folder / "logistic_regression")
        (folder / "blend.json").write_text(json.dumps({"algorithm": self.algorithm, "weight": self.weight},
                                                      indent=2, sort_keys=True))
        (folder / "calibration.json").write_text(json.dumps(self.calibrator.to_dict(), indent=2))
        (folder / "schema.json").write_text(self.schema.to_json())
        (folder / "kind.txt").write_text("churn-risk\n")

    @classmethod
    def load(cls, folder: Path) -> "BlendChurnModel":
        payload = json.loads((folder / "blend.json").read_text())
        return cls(ChurnModel.load(folder / "lightgbm"), LinearChurnModel.load(folder / "logistic_regression"),
                   float(payload["weight"]), Calibrator.from_dict(json.loads((folder / "calibration.json").read_text())))


def blend_weight(y: np.ndarray, booster_raw: np.ndarray, linear_raw: np.ndarray) -> tuple[float, dict[float, float]]:
    """The LightGBM weight with the lowest log loss of the blended (uncalibrated) scores, and every
    weight's loss. Ties go to the larger LightGBM weight."""
    losses: dict[float, float] = {}
    for weight in WEIGHTS:
        z = weight * _logit(booster_raw) + (1 - weight) * _logit(linear_raw)
        losses[weight] = float(log_loss(y, np.clip(1 / (1 + np.exp(-z)), 1e-7, 1 - 1e-7), labels=[0, 1]))
    best = min(WEIGHTS, key=lambda w: (round(losses[w], 12), -w))
    return best, losses


def fit_blend(frame: pd.DataFrame, booster_model: ChurnModel, linear_model: LinearChurnModel,
              calibration_method: str, seed: int, weight: float | None = None) -> tuple[BlendChurnModel, dict[str, object]]:
    """Blend two fitted models on the validation rows they share; calibrate the blend there.

    `weight` fixes the LightGBM weight (a refit keeps the weight that was evaluated)."""
    if booster_model.validation is None or linear_model.validation is None:
        raise ValueError("both models need validation scores to be blended")
    rows_b, raw_b = booster_model.validation
    rows_l, raw_l = linear_model.validation
    if not np.array_equal(rows_b, rows_l):
        raise ValueError("the two models were validated on different rows")
    y = frame["churned"].to_numpy(dtype=int)[rows_b]
    chosen, losses = blend_weight(y, raw_b, raw_l)
    weight = chosen if weight is None else weight
    z = weight * _logit(raw_b) + (1 - weight) * _logit(raw_l)
    calibrator, _ = fit_calibrator(1 / (1 + np.exp(-z)), y, calibration_method, seed)
    info = {"blend_weight_lightgbm": weight,
            **{f"blend_validation_log_loss_w{w:g}": v for w, v in losses.items()}}
    return BlendChurnModel(booster_model, linear_model, weight, calibrator), info

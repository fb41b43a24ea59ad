"""Probability calibration so that a score of 30% means about 30% of such customers churn.

Isotonic regression and Platt scaling are both fitted on held-out data; `auto` picks the
one with the lower cross-validated log loss on that data. The result is stored as plain
numbers (JSON), never as a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

EPS = 1e-6
TIE_BREAK = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from raw model scores to calibrated probabilities."""

    method: str
    x: tuple[float, ...] = field(default_factory=tuple)
    y: tuple[float, ...] = field(default_factory=tuple)
    slope: float = 1.0
    intercept: float = 0.0

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            # Isotonic steps tie customers the model ranks apart; a vanishing share of the raw
            # score keeps the model's order (same ranking, calibration changed by < 1e-6).
            out = np.interp(raw, np.asarray(self.x), np.asarray(self.y)) + TIE_BREAK * raw
        elif self.method == "platt":
            out = 1.0 / (1.0 + np.exp(-(self.slope * _logit(raw) + self.intercept)))
        else:
            out = raw
        return np.clip(out, EPS, 1 - EPS)

    def to_dict(self) -> dict[str, object]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y),
                "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "Calibrator":
        return cls(str(data["method"]), tuple(data["x"]), tuple(data["y"]),  # type: ignore[arg-type]
                   float(data["slope"]), float(data["intercept"]))  # type: ignore[arg-type]


def _fit_one(method: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return Calibrator("isotonic", tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw).reshape(-1, 1), y)
    return Calibrator("platt", slope=float(platt.coef_[0, 0]), intercept=float(platt.intercept_[0]))


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str = "auto",
                   seed: int = 0) -> tuple[Calibrator, dict[str, float]]:
    """Fit the calibrator on held-out scores; with `auto`, choose by 5-fold CV log loss.

    Calibration must keep the model's order: a Platt fit with a slope <= 0 (scores that do
    not rise with risk on the held-out rows) is replaced by isotonic regression.
    """
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=int)
    if y.min() == y.max():
        return Calibrator("none"), {}
    candidates = ["isotonic", "platt"] if method == "auto" else [method]
    if "platt" in candidates and _fit_one("platt", raw, y).slope <= 0:
        # A falling Platt curve would turn the ranking upside down: never let calibration do that.
        candidates = ["isotonic"]
    losses: dict[str, float] = {}
    if len(candidates) > 1:
        folds = StratifiedKFold(n_splits=min(5, int(np.bincount(y).min())) if np.bincount(y).min() >= 2 else 2,
                                shuffle=True, random_state=seed)
        for name in candidates:
            predicted = np.empty_like(raw)
            for fit_idx, held_idx in folds.split(raw.reshape(-1, 1), y):
                predicted[held_idx] = _fit_one(name, raw[fit_idx], y[fit_idx]).transform(raw[held_idx])
            losses[name] = float(log_loss(y, predicted, labels=[0, 1]))
        chosen = min(losses, key=lambda k: (losses[k], k))
    else:
        chosen = candidates[0]
    return _fit_one(chosen, raw, y), losses

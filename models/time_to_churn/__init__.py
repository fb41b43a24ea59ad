"""Time to churn: the risk of leaving within each of several horizons (30, 60, ... days).

One calibrated LightGBM model per shorter horizon h, trained like the churn model on the
same rows and features, on the label "closed within h days" (`days_to_churn < h`, known for
every training row because h is shorter than the label horizon). The label horizon's own risk
is the served churn model's probability. Risks are then made monotone per customer, from the
longest horizon down (risk_h = min(risk_h, risk_next)), so the risk never falls as the horizon
grows. Only for the `closure` definition: with `inactivity` a churner is silent from the
cutoff on and has no time to churn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.boosting import ChurnModel, fit_churn_model, fit_churn_model_cv
from models.data import FeatureSchema
from models.settings import BoosterSettings

TIME_COLUMN = "days_to_churn"
HORIZONS_FOLDER = "horizons"
"""Sub-folder of the churn-risk bundle holding these models."""
MONTH_DAYS = 30


def horizon_label(table: pd.DataFrame, days: int) -> np.ndarray:
    """1 if the customer churned within `days` days of the cutoff, else 0."""
    return (np.nan_to_num(table[TIME_COLUMN].to_numpy(dtype=float), nan=np.inf) < days).astype(np.int64)


def risk_column(days: int) -> str:
    return f"churn_risk_{days}d"


def monotone_risks(shorter: dict[int, np.ndarray], full: np.ndarray, full_days: int) -> dict[int, np.ndarray]:
    """Every horizon's risk, never falling as the horizon grows (the longest one is kept as is)."""
    out = {full_days: np.asarray(full, dtype=float)}
    ceiling = out[full_days]
    for days in sorted(shorter, reverse=True):
        ceiling = np.minimum(np.asarray(shorter[days], dtype=float), ceiling)
        out[days] = ceiling
    return dict(sorted(out.items()))


def leaving_within(risks: dict[int, np.ndarray]) -> np.ndarray:
    """For a customer who leaves within the longest horizon: the shortest horizon holding at least
    half of that risk, in words ("1 month", "2 months", or "N days" when not whole months)."""
    days = sorted(risks)
    full = risks[days[-1]]
    labels = np.array([_words(d) for d in days], dtype=object)
    share = np.column_stack([risks[d] for d in days]) / np.maximum(full, 1e-12)[:, None]
    return labels[np.argmax(share >= 0.5, axis=1)]


def _words(days: int) -> str:
    if days % MONTH_DAYS == 0:
        months = days // MONTH_DAYS
        return "1 month" if months == 1 else f"{months} months"
    return f"{days} days"


@dataclass
class HorizonRiskModels:
    """The calibrated churn model of each horizon shorter than the label horizon."""

    full_days: int
    models: dict[int, ChurnModel]

    def predict(self, frame: pd.DataFrame, full: np.ndarray) -> dict[int, np.ndarray]:
        """Monotone risk per horizon; `full` is the served churn probability (label horizon)."""
        matrix = next(iter(self.models.values())).schema.matrix(frame)
        return self.predict_matrix(matrix, full)

    def predict_matrix(self, matrix: pd.DataFrame, full: np.ndarray) -> dict[int, np.ndarray]:
        return monotone_risks({d: m.predict_matrix(matrix) for d, m in self.models.items()}, full, self.full_days)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "horizons.json").write_text(json.dumps({"full_days": self.full_days,
                                                          "horizons_days": sorted(self.models)}))
        for days, model in self.models.items():
            model.save(folder / f"{days}d")

    @classmethod
    def load(cls, folder: Path) -> "HorizonRiskModels | None":
        """The models saved in `folder`, None when there are none (a bundle trained without them)."""
        if not (folder / "horizons.json").is_file():
            return None
        meta = json.loads((folder / "horizons.json").read_text())
        return cls(int(meta["full_days"]), {int(d): ChurnModel.load(folder / f"{d}d") for d in meta["horizons_days"]})


def fit_horizon_models(table: pd.DataFrame, horizons: tuple[int, ...], full_days: int, schema: FeatureSchema,
                       settings: BoosterSettings, calibration_method: str, seed: int, *,
                       fit: np.ndarray | None = None, calibration: np.ndarray | None = None,
                       rows: np.ndarray | None = None, rounds: dict[int, int] | None = None
                       ) -> tuple[HorizonRiskModels, dict[int, int]]:
    """One calibrated model per horizon shorter than `full_days` (those not shorter are ignored).

    With `fit`/`calibration`: early stopping and calibration on held-out customers (`rounds`
    fixes the round counts of a refit); with `rows`: cross-validated like `fit_churn_model_cv`.
    Returns the models and each one's boosting rounds.
    """
    models: dict[int, ChurnModel] = {}
    used: dict[int, int] = {}
    for days in sorted(h for h in set(horizons) if h < full_days):
        labelled = table.assign(churned=horizon_label(table, days))  # copy-on-write: no copy of the features
        if rows is not None:
            model, info = fit_churn_model_cv(labelled, rows, schema, settings, calibration_method, seed)
        else:
            assert fit is not None and calibration is not None
            model, info = fit_churn_model(labelled, fit, calibration, schema, settings, calibration_method, seed,
                                          rounds=None if rounds is None else rounds[days])
        model.validation = None
        models[days] = model
        used[days] = int(info["best_iteration"])  # type: ignore[call-overload]
    return HorizonRiskModels(full_days, models), used

"""Meta-learners on LightGBM: the T-learner and the X-learner (Kunzel et al., 2019).

Both start from two churn models fitted on the same point-in-time features: m0 on the
randomised control rows (not contacted) and m1 on the contacted rows.
- T-learner: uplift(x) = m0(x) - m1(x).
- X-learner: imputed effects, D1 = m0(x) - y on contacted rows and D0 = y - m1(x) on control
  rows, each regressed on x (tau1, tau0); uplift(x) = e * tau0(x) + (1 - e) * tau1(x) with e the
  share contacted, a known constant because the control group is randomised.
Boosting rounds are found by early stopping on a hashed share of the training customers and
the boosters refitted on every training row with those rounds. Saved as LightGBM text and
JSON, so loading never unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.boosting import booster_params, train_booster
from models.data import FeatureSchema, customer_hash_share
from models.settings import BoosterSettings

KIND = "contact-uplift"
EARLY_STOPPING_SHARE = 0.2
ONE_THREAD_BELOW_ROWS = 50_000
"""A booster on fewer rows fits on one thread (a second one costs more than it saves there); on more, on
`uplift.booster.num_threads` (200,000 contacted rows of the 1M-customer bank, 150 rounds, alternated runs:
5.4 and 5.6 s on one thread, 3.6 and 3.5 s on two)."""


@dataclass
class UpliftModel:
    """Predicted churn probability without and with a contact, and the uplift between them."""

    learner: str
    boosters: dict[str, lgb.Booster]
    schema: FeatureSchema
    treated_share: float
    rounds: dict[str, int] = field(default_factory=dict)
    evidence: dict[str, float] = field(default_factory=dict)
    """The held-out Qini of the learner ({value, low, high}, 95% bootstrap) that earned this model its
    place; `churn score` ranks by uplift only when its lower bound clears `uplift.min_qini_lower_bound`."""

    def _predict(self, name: str, matrix: pd.DataFrame) -> np.ndarray:
        booster = self.boosters[name]
        return booster.predict(matrix, num_threads=booster.params.get("num_threads", 2))

    def churn_without_contact(self, frame: pd.DataFrame) -> np.ndarray:
        """m0: probability of churning within the horizon if not contacted."""
        return self._predict("control", self.schema.matrix(frame))

    def predict_matrix(self, matrix: pd.DataFrame) -> np.ndarray:
        """Uplift (churn probability a contact takes away) of a ready model matrix."""
        if self.learner == "t_learner":
            return self._predict("control", matrix) - self._predict("treated", matrix)
        e = self.treated_share
        return e * self._predict("tau_control", matrix) + (1 - e) * self._predict("tau_treated", matrix)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Uplift per row: P(churn | not contacted) - P(churn | contacted)."""
        return self.predict_matrix(self.schema.matrix(frame))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, booster in self.boosters.items():
            booster.save_model(folder / f"booster_{name}.txt")
        (folder / "schema.json").write_text(self.schema.to_json())
        (folder / "uplift.json").write_text(json.dumps(
            {"learner": self.learner, "treated_share": self.treated_share, "boosters": sorted(self.boosters),
             "rounds": self.rounds, "evidence": self.evidence}, indent=2, sort_keys=True))
        (folder / "kind.txt").write_text(f"{KIND}\n")

    @classmethod
    def load(cls, folder: Path) -> "UpliftModel":
        meta = json.loads((folder / "uplift.json").read_text())
        boosters = {name: lgb.Booster(model_file=str(folder / f"booster_{name}.txt")) for name in meta["boosters"]}
        return cls(meta["learner"], boosters, FeatureSchema.from_json((folder / "schema.json").read_text()),
                   float(meta["treated_share"]), {k: int(v) for k, v in meta.get("rounds", {}).items()},
                   {k: float(v) for k, v in meta.get("evidence", {}).items()})


def _fit_one(x: pd.DataFrame, y: np.ndarray, customers: pd.Series, objective: str, settings: BoosterSettings,
             seed: int, rounds: int | None) -> tuple[lgb.Booster, int]:
    """One booster: early stopping on a hashed share of customers, then refitted on every row."""
    if len(x) < ONE_THREAD_BELOW_ROWS:
        settings = settings.model_copy(update={"num_threads": 1})
    params = booster_params(settings, objective, seed, metric="binary_logloss" if objective == "binary" else "l2")
    if rounds is None:
        held = customer_hash_share(customers.reset_index(drop=True), seed + 7) < EARLY_STOPPING_SHARE
        if held.all() or not held.any():
            rounds = settings.max_rounds
        else:
            probe = train_booster(x[~held], y[~held], x[held], y[held], params, settings)
            rounds = int(probe.best_iteration or probe.current_iteration())
    return train_booster(x, y, x, y, params, settings, rounds=rounds), rounds


def fit_uplift(frame: pd.DataFrame, schema: FeatureSchema, learner: str, settings: BoosterSettings, seed: int,
               rounds: dict[str, int] | None = None) -> UpliftModel:
    """Fit one meta-learner on uplift rows (features, `treatment` 0/1, `churned` 0/1).

    `rounds` fixes each booster's rounds (a refit of a learner already judged); otherwise early stopping.
    """
    x = schema.matrix(frame)
    y = frame["churned"].to_numpy(dtype=np.float64)
    t = frame["treatment"].to_numpy(dtype=np.int64)
    customers = frame["customer_id"].astype("str")
    if not (t == 0).any() or not (t == 1).any():
        raise ValueError("uplift rows need both contacted (treatment 1) and control (treatment 0) customers")
    fixed = rounds or {}
    boosters: dict[str, lgb.Booster] = {}
    used: dict[str, int] = {}
    arms = {"control": t == 0, "treated": t == 1}
    for name, rows in arms.items():
        boosters[name], used[name] = _fit_one(x[rows], y[rows], customers[rows], "binary", settings, seed,
                                              fixed.get(name))
    treated_share = float(t.mean())
    if learner == "x_learner":
        m0 = boosters["control"].predict(x)
        m1 = boosters["treated"].predict(x)
        imputed = {"tau_treated": (arms["treated"], m0 - y), "tau_control": (arms["control"], y - m1)}
        for name, (rows, target) in imputed.items():
            boosters[name], used[name] = _fit_one(x[rows], target[rows], customers[rows], "regression", settings,
                                                  seed, fixed.get(name))
    elif learner != "t_learner":
        raise ValueError(f"unknown uplift learner {learner!r}; use t_learner or x_learner")
    return UpliftModel(learner, boosters, schema, treated_share, used)

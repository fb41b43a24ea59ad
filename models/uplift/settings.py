"""Settings of the uplift model and the campaign effect report (the `uplift` config section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from features.settings import Strict
from models.settings import BoosterSettings

LEARNERS: tuple[str, ...] = ("t_learner", "x_learner")
"""Meta-learners fitted and compared; the Qini coefficient on validation rows inside the training rows picks one
(models/uplift/training.py `selection_rows`), the held-out rows judge them all."""


class UpliftSettings(Strict):
    """How uplift training rows are built, which learners are fitted and how they are judged."""

    enabled: bool = Field(default=True, description="Fit the uplift model in `churn train` when the contacts "
                          "table has a randomised control group (treatment = 0)")
    treatment_window_days: int = Field(
        default=31, ge=1, le=180,
        description="A customer is a treated (or control) row at a cutoff when their first contact record "
                    "falls in [cutoff, cutoff + this many days): the list made at the cutoff is acted on then",
    )
    cutoff_spacing_months: int = Field(default=1, ge=1, le=12,
                                       description="Uplift rows at every n-th month start")
    test_cutoffs: int = Field(
        default=6, ge=1, le=36,
        description="The latest this-many uplift cutoffs are held out to judge the learners (one cutoff "
                    "holds too few control customers for a stable Qini); training cutoffs end one horizon before",
    )
    learners: tuple[Literal["t_learner", "x_learner"], ...] = Field(default=LEARNERS, min_length=1)
    booster: BoosterSettings = BoosterSettings(learning_rate=0.05, num_leaves=7, min_child_samples=80,
                                               feature_fraction=0.7, bagging_fraction=0.8, lambda_l2=10.0,
                                               max_rounds=300, early_stopping_rounds=30,
                                               num_threads=2)  # below 50,000 rows one (learners.ONE_THREAD_BELOW_ROWS)
    bootstrap: int = Field(default=200, ge=20, le=5000, description="Bootstrap resamples for the intervals")
    top_shares: tuple[float, ...] = Field(default=(0.1, 0.2, 0.3), min_length=1,
                                          description="uplift@k is reported at these top shares by predicted uplift")
    class_threshold: float = Field(
        default=0.002, ge=0, lt=1,
        description="Uplift classes: persuadable above +this, sleeping dog below -this; in between a sure "
                    "thing (churn risk below scoring.segments.churn_warning_probability) or a lost cause",
    )
    min_qini_lower_bound: float | None = Field(
        default=0.0,
        description="`scoring.ranking: uplift` is used only when the chosen learner's held-out Qini 95% lower "
                    "bound is above this (the uplift ranking is shown to beat random targeting); otherwise the "
                    "list is ranked by value at risk, saying so. null: rank by uplift whatever the evidence",
    )
    min_control_rows: int = Field(default=50, ge=1,
                                  description="Fewer control rows than this: no uplift model, ranking falls back")


class BacktestSettings(Strict):
    """`churn backtest`: replay the list at past cutoffs with models trained only on data before each."""

    cutoffs: int = Field(default=6, ge=1, le=36,
                         description="Without --from/--to: the latest this-many month starts whose horizon has ended")
    training_cutoffs: int = Field(default=4, ge=1, le=24,
                                  description="Monthly training cutoffs of the churn and value models at each replay "
                                              "(fewer than labels.cutoffs.count keeps the replay fast)")
    random_seed: int | None = Field(default=None, description="Seed of the random list; null: the top-level seed")

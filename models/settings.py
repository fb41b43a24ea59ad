"""Settings of the churn-risk and customer-value models (the `model` and `economics` config sections)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from features.settings import Strict


class BoosterSettings(Strict):
    """LightGBM settings shared by both models; deterministic by default."""

    learning_rate: float = Field(default=0.05, gt=0, le=1)
    num_leaves: int = Field(default=31, ge=2, le=1024)
    min_child_samples: int = Field(default=50, ge=1)
    feature_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    lambda_l2: float = Field(default=1.0, ge=0)
    max_rounds: int = Field(default=600, ge=1, le=20000)
    early_stopping_rounds: int = Field(default=50, ge=1)
    num_threads: int = Field(default=2, ge=1, description="Threads; fixed so results are reproducible")


class TuningSettings(Strict):
    """Bounded tuning of the churn booster (Optuna TPE, seeded), on by default.

    Judged by log loss on the calibration customers of the training cutoffs (never the test
    cutoff). Trial 0 is the configured `booster`, so tuning can only replace it by settings that
    did better on those rows. Trials fit on a hashed sample of at most `max_rows` training rows
    so the cost stays bounded on large tables; `timeout_seconds` is a safety cap only (a run it
    cuts short says so in its training info, and is then not reproducible).
    """

    enabled: bool = True
    trials: int = Field(default=8, ge=1, le=200)
    timeout_seconds: int = Field(default=600, ge=1)
    max_rows: int = Field(default=60_000, ge=1000,
                          description="Training rows (hashed customers) the trials fit on; the rest are not used")

class SamplingSettings(Strict):
    """Bounds on the rows the models fit on, for very large training tables (off at demo size).

    With more than `max_training_rows` rows outside the test cutoff, `churn train` keeps every
    row of the test cutoff, every churner of the fit customers, a hashed share of the calibration
    customers (`calibration_share` of the budget, whole customers), and a seeded random share of
    the other non-churner rows, each weighted 1 / that share. The boosters fit the weighted
    rows; early stopping, calibration, blending and every reported metric use unsampled rows, so
    the probabilities stay those of the whole population. The console says how many rows were
    sampled and names this key.
    """

    max_training_rows: int | None = Field(
        default=600_000, ge=10_000,
        description="Rows outside the test cutoff that the models train on; with more, non-churners of the "
                    "fit customers are sampled with weights and calibration customers thinned (null: never)",
    )
    logistic_max_rows: int | None = Field(
        default=500_000, ge=10_000,
        description="Fit rows of the logistic regression baseline (hashed customers); its dense design of "
                    "every row of a large table is the largest object of training (null: every row)",
    )


class TimeToChurnSettings(Strict):
    """Risk of leaving within shorter horizons than the label's (closure definition only)."""

    enabled: bool = True
    horizons_days: tuple[int, ...] = Field(
        default=(30, 60),
        description="Horizons (days) shorter than labels.horizon_days that get their own calibrated risk model; "
                    "the label horizon's risk is the churn probability itself",
    )
    learning_rate: float | None = Field(
        default=0.05, gt=0, le=1,
        description="The horizon models take the churn booster's (tuned) settings but learn at least this fast: "
                    "at the tuned rate (0.022 on a 1M bank) they needed 1,005 and 1,201 rounds, 5.6 of the 13 "
                    "minutes of `churn train` there; null: the churn booster's rate",
    )


class ModelSettings(Strict):
    """How the models are split, trained, calibrated and compared with the champion."""

    # Churn: small trees and strong regularisation suit the few churners (a few percent). A learning
    # rate of 0.02 needed 900 rounds at 100k customers and 2,200 at 300k (each round dearer too);
    # 0.05 (tuning still searches 0.02-0.15) cuts the rounds; quality bars: test_quality_on_generated.
    booster: BoosterSettings = BoosterSettings(learning_rate=0.05, num_leaves=15, min_child_samples=100,
                                               feature_fraction=0.5, lambda_l2=5.0, max_rounds=1500,
                                               early_stopping_rounds=100)
    value_booster: BoosterSettings = BoosterSettings(min_child_samples=100)
    tweedie_variance_power: float = Field(default=1.3, gt=1, lt=2)
    calibration: Literal["auto", "isotonic", "platt"] = "auto"
    calibration_share: float = Field(
        default=0.25, gt=0, lt=0.9,
        description="Share of training customers (hashed) held out for early stopping and calibration",
    )
    cross_validate_below_rows: int = Field(
        default=200_000, ge=0,
        description="Training tables with fewer rows than this are fitted on every training row: boosting "
                    "rounds by 5-fold cross-validation (customers hashed into folds) and calibration on the "
                    "out-of-fold scores, instead of holding out calibration_share of the customers",
    )
    single_cutoff_test_share: float = Field(
        default=0.25, gt=0, lt=0.9,
        description="With one cutoff only: share of customers (hashed) held out for testing",
    )
    tuning: TuningSettings = TuningSettings()
    sampling: SamplingSettings = SamplingSettings()
    time_to_churn: TimeToChurnSettings = TimeToChurnSettings()
    champion_metric: Literal["roc_auc", "pr_auc", "best_profit"] = "roc_auc"
    champion_margin: float = Field(
        default=0.002, ge=0, description="The new model must beat the champion by at least this much"
    )
    reasons_per_customer: int = Field(default=3, ge=1, le=10)


class EconomicsSettings(Strict):
    """Money figures for the profit curve and the contact decision; documented defaults."""

    contact_cost: float = Field(default=5.0, ge=0, description="Cost of one contact (agent time, postage)")
    offer_cost: float = Field(default=10.0, ge=0, description="Cost of the retention offer if accepted")
    offer_acceptance_non_churners: float = Field(
        default=1.0, ge=0, le=1,
        description="Share of contacted non-churners who take the offer anyway (EMP assumes all)",
    )
    retention_success_rate: float = Field(
        default=0.3, gt=0, le=1, description="Chance a contacted would-be churner is kept"
    )
    lifetime_horizons: int = Field(
        default=8, ge=1, le=750,  # two years of value at any horizon of a day or more
        description="Label horizons summed for lifetime value (8 x 90 days = about 2 years)",
    )
    annual_discount_rate: float = Field(default=0.08, ge=0, lt=1)
    value_margin: float = Field(
        default=0.05, gt=0, le=1,
        description="Share of transaction value the institution earns (turns spend into profit)",
    )

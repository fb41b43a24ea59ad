"""Train, evaluate and compare: both models and their baselines on one split, in one call.

Pure: a training table in, models, metrics, curves and test-set predictions out. The
pipeline stage (`pipelines/train.py`) adds files, plots and MLflow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from models.baselines import carry_forward_value, fit_logistic_baseline, logistic_scores, recency_scores
from models.boosting import ChurnModel, ValueModel, fit_churn_model, fit_value_model
from models.data import FeatureSchema, Split, infer_schema, model_feature_columns, split_rows
from models.evaluation import (best_profit, churn_metrics, expected_contact_profit, gains_table, lifetime_value,
                               profit_curve, stayer_value_metrics)
from models.settings import BoosterSettings, EconomicsSettings, ModelSettings


@dataclass
class TrainingResult:
    """Everything one training run produces."""

    churn: ChurnModel
    value: ValueModel
    split: Split
    metrics: dict[str, float]
    test: pd.DataFrame
    profit_curves: dict[str, pd.DataFrame]
    gains: dict[str, pd.DataFrame]
    info: dict[str, object] = field(default_factory=dict)


def tune_booster(frame: pd.DataFrame, split: Split, schema: FeatureSchema, settings: ModelSettings,
                 seed: int) -> tuple[BoosterSettings, list[dict[str, float]]]:
    """Bounded, seeded random search of a few LightGBM settings, judged on calibration-set log loss."""
    rng = np.random.default_rng(seed)
    deadline = time.monotonic() + settings.tuning.timeout_seconds
    best, best_loss, trials = settings.booster, float("inf"), []
    y_cal = frame["churned"].to_numpy(dtype=int)[split.calibration]
    for trial in range(settings.tuning.trials):
        if time.monotonic() > deadline:
            break
        candidate = replace_booster(settings.booster, {
            "num_leaves": int(rng.choice([15, 31, 63, 127])),
            "min_child_samples": int(rng.choice([20, 50, 100, 200])),
            "learning_rate": float(rng.choice([0.03, 0.05, 0.1])),
            "feature_fraction": float(rng.choice([0.6, 0.8, 1.0])),
        })
        model, _ = fit_churn_model(frame, split.fit, split.calibration, schema, candidate, "platt", seed)
        loss = float(log_loss(y_cal, np.clip(model.raw_score(frame[split.calibration]), 1e-6, 1 - 1e-6)))
        trials.append({"trial": trial, "log_loss": loss, **candidate.model_dump()})
        if loss < best_loss:
            best, best_loss = candidate, loss
    return best, trials


def replace_booster(settings: BoosterSettings, changes: dict[str, object]) -> BoosterSettings:
    return BoosterSettings.model_validate({**settings.model_dump(), **changes})


def train_models(table: pd.DataFrame, settings: ModelSettings, economics: EconomicsSettings,
                 horizon_days: int, seed: int, true_probability: pd.Series | None = None) -> TrainingResult:
    """Fit churn and value models plus baselines on an out-of-time split; evaluate all on the test set.

    `true_probability` (optional, aligned to `table`'s rows) is the generator's own churn
    probability at each cutoff; its AUC is the ceiling a model can approach.
    """
    table = table.reset_index(drop=True)
    if table["churned"].nunique() < 2:
        raise ValueError("the training table has only one churn class; widen the cutoffs or horizon")
    features = model_feature_columns(table)
    schema = infer_schema(table, features)
    split = split_rows(table, horizon_days, settings.calibration_share, settings.single_cutoff_test_share, seed)
    info: dict[str, object] = {**split.describe(), "features": len(features)}

    booster_settings = settings.booster
    if settings.tuning.enabled:
        booster_settings, trials = tune_booster(table, split, schema, settings, seed)
        info["tuning_trials"] = trials
        info["tuned_booster"] = booster_settings.model_dump()
    churn, churn_info = fit_churn_model(table, split.fit, split.calibration, schema, booster_settings,
                                        settings.calibration, seed)
    # The value model learns what a customer brings *while they stay* (rows that did not churn), so a
    # customer about to leave is not called low-value because they are leaving: churn risk is the other model.
    stayed = table["churned"].to_numpy(dtype=int) == 0
    value, value_info = fit_value_model(table, split.fit & stayed, split.calibration & stayed, schema,
                                        settings.value_booster,
                                        settings.tweedie_variance_power, seed)
    info.update({f"churn_{k}": v for k, v in churn_info.items()})
    info.update({f"value_{k}": v for k, v in value_info.items()})

    test_rows = table[split.test]
    y = test_rows["churned"].to_numpy(dtype=int)
    scores: dict[str, np.ndarray] = {"lightgbm": churn.predict(test_rows)}
    logistic = fit_logistic_baseline(table, split.fit, schema, seed)
    scores["logistic"] = logistic_scores(logistic, test_rows, schema)
    recency = recency_scores(test_rows)
    if recency is not None:
        scores["recency_rule"] = recency

    predicted_value = value.predict(test_rows)
    ltv = lifetime_value(predicted_value, scores["lightgbm"], economics, horizon_days)
    # A churner kept by the campaign is worth their value if they stay.
    retained = lifetime_value(predicted_value, np.zeros(len(y)), economics, horizon_days)
    metrics: dict[str, float] = {}
    curves: dict[str, pd.DataFrame] = {}
    gains: dict[str, pd.DataFrame] = {}
    for name, score in scores.items():
        prefix = "churn" if name == "lightgbm" else f"baseline_{name}"
        for key, number in churn_metrics(y, score).items():
            if name == "recency_rule" and key in ("brier", "log_loss", "expected_calibration_error"):
                continue
            metrics[f"{prefix}.{key}"] = number
        # Models with probabilities rank a campaign by expected profit; the recency rule by its own order.
        ranking = score if name == "recency_rule" else expected_contact_profit(score, retained, economics)
        curves[name] = profit_curve(y, ranking, retained, economics)
        gains[name] = gains_table(y, score)
        metrics.update({f"{prefix}.{k}": v for k, v in best_profit(curves[name]).items()})
    metrics["churn.raw_roc_auc"] = float(roc_auc_score(y, churn.raw_score(test_rows))) if 0 < y.sum() < len(y) else float("nan")
    for baseline in ("logistic", "recency_rule"):
        if f"baseline_{baseline}.roc_auc" in metrics and "churn.roc_auc" in metrics:
            metrics[f"gain_over_{baseline}.roc_auc"] = metrics["churn.roc_auc"] - metrics[f"baseline_{baseline}.roc_auc"]
            metrics[f"gain_over_{baseline}.best_profit"] = (metrics["churn.best_profit"]
                                                            - metrics[f"baseline_{baseline}.best_profit"])
    if true_probability is not None:
        truth = true_probability.reset_index(drop=True)[split.test].to_numpy(dtype=float)
        known = np.isfinite(truth)
        if known.sum() and 0 < y[known].sum() < known.sum():
            ceiling = float(roc_auc_score(y[known], truth[known]))
            metrics["churn.true_hazard_roc_auc"] = ceiling
            metrics["churn.gap_to_true_hazard_roc_auc"] = ceiling - float(roc_auc_score(y[known], scores["lightgbm"][known]))

    actual_value = test_rows["future_value"].to_numpy(dtype=float)
    metrics.update({f"value.{k}": v for k, v in stayer_value_metrics(y, actual_value, predicted_value).items()})
    carried = carry_forward_value(test_rows, horizon_days)
    if carried is not None:
        metrics.update({f"baseline_carry_forward.{k}": v
                        for k, v in stayer_value_metrics(y, actual_value, carried).items()})
        metrics["gain_over_carry_forward.spearman"] = metrics["value.spearman"] - metrics["baseline_carry_forward.spearman"]

    test = pd.DataFrame({
        "customer_id": test_rows["customer_id"].to_numpy(), "cutoff": test_rows["cutoff"].to_numpy(),
        "churned": y, "future_value": actual_value, "churn_probability": scores["lightgbm"],
        "raw_score": churn.raw_score(test_rows), "logistic_score": scores["logistic"],
        "predicted_value": predicted_value, "lifetime_value": ltv, "retained_lifetime_value": retained,
    })
    if recency is not None:
        test["recency_score"] = recency
    return TrainingResult(churn, value, split, metrics, test, curves, gains, info)


def compare_with_champion(new_metric: float, champion_metric: float | None, margin: float) -> tuple[bool, str]:
    """Should the new model become champion? A first model always does."""
    if champion_metric is None or not np.isfinite(champion_metric):
        return True, "no comparable champion: the new model becomes champion"
    if new_metric >= champion_metric + margin:
        return True, f"new {new_metric:.4f} beats champion {champion_metric:.4f} by at least {margin}"
    return False, f"new {new_metric:.4f} does not beat champion {champion_metric:.4f} by {margin}: registered as challenger"


def champion_score(metric: str, y: np.ndarray, probability: np.ndarray, customer_value: np.ndarray,
                   economics: EconomicsSettings) -> float:
    """The comparison metric for champion/challenger on the same test rows."""
    if metric == "best_profit":
        ranking = expected_contact_profit(probability, customer_value, economics)
        return best_profit(profit_curve(y, ranking, customer_value, economics))["best_profit"]
    return churn_metrics(y, probability)[metric]

"""Train, evaluate and compare: both models and their baselines on one split, in one call.

Pure: a training table in, models, metrics, curves and test-set predictions out. The
pipeline stage (`pipelines/train.py`) adds files, plots and MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from models.baselines import btyd_churn_scores, btyd_value, carry_forward_value, recency_scores
from models.boosting import ChurnModel, ValueModel, fit_churn_model, fit_churn_model_cv, fit_value_model
from models.data import REFIT_WEIGHT_COLUMN, WEIGHT_COLUMN, FeatureSchema, Split, customer_hash_share, infer_schema, model_feature_columns, split_rows
from models.blend import BlendChurnModel, fit_blend
from models.linear import LinearChurnModel, fit_linear_churn_model, fit_linear_churn_model_cv, linear_fit_rows
from models.evaluation import (best_profit, churn_metrics, expected_contact_profit, gains_table, lifetime_value,
                               profit_curve, stayer_value_metrics)
from models.settings import BoosterSettings, EconomicsSettings, ModelSettings
from models.time_to_churn import (TIME_COLUMN, HorizonRiskModels, fit_horizon_models, horizon_label, leaving_within,
                                  monotone_risks, risk_column)


CANDIDATES: tuple[str, ...] = ("lightgbm", "logistic_regression")
"""Churn models that can be served: LightGBM first (it wins ties), the logistic regression second."""


@dataclass
class TrainingResult:
    """Everything one training run produces.

    `churn` and `value` are the models fitted on the training cutoffs only and evaluated on
    the held-out test rows (every figure in `metrics` comes from them); `final_churn` and
    `final_value` are the same recipes refitted on every labelled cutoff, test cutoff
    included, with the boosting rounds found by early stopping: those are the models to serve.
    `selected` is the churn algorithm that won on the held-out data (LightGBM, or the
    logistic regression when LightGBM does not beat it). `value` is None when the data has
    no value to learn (no transactions, or no positive value among stayers).
    """

    churn: ChurnModel
    logistic: LinearChurnModel
    value: ValueModel | None
    split: Split
    metrics: dict[str, float]
    test: pd.DataFrame
    profit_curves: dict[str, pd.DataFrame]
    gains: dict[str, pd.DataFrame]
    selected: str = "lightgbm"
    final_churn: ChurnModel | LinearChurnModel | BlendChurnModel | None = None
    final_value: ValueModel | None = None
    info: dict[str, object] = field(default_factory=dict)

    blend: BlendChurnModel | None = None
    horizons: HorizonRiskModels | None = None
    final_horizons: HorizonRiskModels | None = None

    @property
    def selected_model(self) -> ChurnModel | LinearChurnModel | BlendChurnModel:
        """The evaluated model of the selected algorithm."""
        if self.selected == "blend" and self.blend is not None:
            return self.blend
        return self.churn if self.selected == "lightgbm" else self.logistic


def tune_booster(frame: pd.DataFrame, split: Split, schema: FeatureSchema, settings: ModelSettings,
                 seed: int) -> tuple[BoosterSettings, list[dict[str, object]], str]:
    """Bounded, seeded Optuna (TPE) search of the churn booster's settings.

    Linear trees (LightGBM `linear_tree`) are not searched: LightGBM cannot compute TreeSHAP
    contributions for them, and every listed customer's reasons come from those.

    Each trial trains on the fit rows and early-stops on the calibration rows of the training
    cutoffs (at most `tuning.max_rows` of each, hashed customers), and is judged by the log
    loss of its raw scores on those calibration rows: the test cutoff is never seen. Trial 0 is
    the configured booster. Returns the best settings, every trial, and why the search stopped.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuning = settings.tuning
    fit, calibration = split.fit.copy(), split.calibration.copy()
    for rows in (fit, calibration):
        if rows.sum() > tuning.max_rows:  # a hashed share of the customers: the same rows every run
            share = customer_hash_share(frame["customer_id"], seed + 2)
            rows &= share < tuning.max_rows / rows.sum()
    y_cal = frame["churned"].to_numpy(dtype=int)[calibration]
    calibration_rows = frame[calibration]
    configured = settings.booster
    trials: list[dict[str, object]] = []

    def objective(trial: "optuna.Trial") -> float:
        candidate = replace_booster(configured, {
            "num_leaves": trial.suggest_categorical("num_leaves", [7, 15, 31, 63]),
            "min_child_samples": trial.suggest_int("min_child_samples", 20, 400, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.15, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.3, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 0.1, 30.0, log=True),
        })
        model, info = fit_churn_model(frame, fit, calibration, schema, candidate, "platt", seed)
        loss = float(log_loss(y_cal, np.clip(model.raw_score(calibration_rows), 1e-6, 1 - 1e-6), labels=[0, 1]))
        trials.append({"trial": trial.number, "validation_log_loss": loss, "rounds": info["best_iteration"],
                       **{k: v for k, v in candidate.model_dump().items() if k in trial.params}})
        return loss

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({"num_leaves": configured.num_leaves, "min_child_samples": configured.min_child_samples,
                         "learning_rate": configured.learning_rate, "feature_fraction": configured.feature_fraction,
                         "lambda_l2": configured.lambda_l2},
                        skip_if_exists=False)
    study.optimize(objective, n_trials=tuning.trials, timeout=tuning.timeout_seconds)
    stopped = ("trials" if len(study.trials) >= tuning.trials else
               f"timeout: model.tuning.timeout_seconds ({tuning.timeout_seconds} s) cut the search after "
               f"{len(study.trials)} of {tuning.trials} trials; this run is not reproducible")
    best = study.best_trial
    if best.number == 0:
        return configured, trials, stopped
    return replace_booster(configured, dict(best.params)), trials, stopped


def replace_booster(settings: BoosterSettings, changes: dict[str, object]) -> BoosterSettings:
    return BoosterSettings.model_validate({**settings.model_dump(), **changes})


def value_problem(table: pd.DataFrame, stayed: np.ndarray) -> str | None:
    """Why no value model can be fitted on this table (None if one can)."""
    value = table["future_value"].to_numpy(dtype=float)
    if not np.isfinite(value).any():
        return "no value to learn: the data has no transactions table (labels.value_column)"
    if not (np.clip(np.nan_to_num(value[stayed]), 0, None) > 0).any():
        return "no value to learn: no customer who stayed brought a positive value in a horizon"
    return None


def refit_split(table: pd.DataFrame, calibration_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of every labelled cutoff: a hashed share of customers for calibration, the rest to fit."""
    calibration = customer_hash_share(table["customer_id"], seed) < calibration_share
    return ~calibration, calibration


def train_models(table: pd.DataFrame, settings: ModelSettings, economics: EconomicsSettings,
                 horizon_days: int, seed: int, true_probability: pd.Series | None = None,
                 known_value: bool = False) -> TrainingResult:
    """Fit churn and value models plus baselines on an out-of-time split; evaluate all on the test set;
    pick the churn algorithm on validation scores (never the test rows) and refit it on every cutoff.

    `true_probability` (optional, aligned to `table`'s rows) is the generator's own churn
    probability at each cutoff; its AUC is the ceiling a model can approach. `known_value`:
    `future_value` is each customer's known value per horizon (a customers column, snapshot
    data), so no value model is fitted and that value is used as is.
    """
    table = table.reset_index(drop=True)
    if table["churned"].nunique() < 2:
        raise ValueError("the training table has only one churn class: see the label check of `churn features`")
    features = model_feature_columns(table)
    schema = infer_schema(table, features)
    split = split_rows(table, horizon_days, settings.calibration_share, settings.single_cutoff_test_share, seed)
    y_all = table["churned"].to_numpy(dtype=int)
    if not 0 < y_all[split.test].sum() < split.test.sum():
        raise ValueError(f"the test rows (cutoff {', '.join(split.test_cutoffs)}) hold only one churn class: "
                         "nothing to evaluate; add cutoffs (labels.cutoffs.count) or lengthen labels.horizon_days")
    info: dict[str, object] = {**split.describe(), "features": len(features)}

    booster_settings = settings.booster
    if settings.tuning.enabled:
        booster_settings, trials, stopped = tune_booster(table, split, schema, settings, seed)
        info["tuning_trials"] = trials
        info["tuned_booster"] = booster_settings.model_dump()
        info["tuning_stopped_by"] = stopped
        info["tuning_kept_configured_booster"] = booster_settings == settings.booster
    training_rows = split.fit | split.calibration
    sampled = WEIGHT_COLUMN in table.columns  # sampled non-churners: held-out calibration rows (never sampled) only
    small = int(training_rows.sum()) < settings.cross_validate_below_rows and not sampled
    info["fit"] = "cross_validated" if small else "held_out_calibration_share"
    if small:  # every training row counts: rounds by cross-validation, calibration out of fold
        churn, churn_info = fit_churn_model_cv(table, training_rows, schema, booster_settings,
                                               settings.calibration, seed)
        logistic = fit_linear_churn_model_cv(table, training_rows, schema, seed, settings.calibration)
    else:
        churn, churn_info = fit_churn_model(table, split.fit, split.calibration, schema, booster_settings,
                                            settings.calibration, seed)
        logistic = fit_linear_churn_model(table, split.fit, schema, seed, split.calibration, settings.calibration,
                                          max_rows=settings.sampling.logistic_max_rows)
        info["logistic_rows_fit"] = int(linear_fit_rows(table, split.fit, settings.sampling.logistic_max_rows,
                                                        seed).sum())
    # The value model learns what a customer brings *while they stay* (rows that did not churn), so a
    # customer about to leave is not called low-value because they are leaving: churn risk is the other model.
    stayed = y_all == 0
    value: ValueModel | None = None
    no_value = None if known_value else value_problem(table, stayed)
    if no_value is None and not known_value:
        value, value_info = fit_value_model(table, split.fit & stayed, split.calibration & stayed, schema,
                                            settings.value_booster, settings.tweedie_variance_power, seed)
        info.update({f"value_{k}": v for k, v in value_info.items()})
    elif no_value is not None:
        info["value_model"] = no_value
    info.update({f"churn_{k}": v for k, v in churn_info.items()})

    blend, blend_info = fit_blend(table, churn, logistic, settings.calibration, seed)
    info.update(blend_info)

    test_rows = table[split.test]
    y = test_rows["churned"].to_numpy(dtype=int)
    raw_test = churn.raw_score(test_rows)  # once: each pass of the booster over a 1M bank's test cutoff took ~30 s
    scores: dict[str, np.ndarray] = {"lightgbm": churn.calibrator.transform(raw_test),
                                     "logistic": logistic.predict(test_rows)}
    if 0 < blend.weight < 1:
        scores["blend"] = blend.predict(test_rows)
    recency = recency_scores(test_rows)
    if recency is not None:
        scores["recency_rule"] = recency
    btyd = btyd_churn_scores(test_rows)
    if btyd is not None:
        scores["btyd"] = btyd

    actual_value = test_rows["future_value"].to_numpy(dtype=float)
    if value is not None:
        predicted_value = value.predict(test_rows)
    elif known_value:
        predicted_value = np.clip(np.nan_to_num(actual_value), 0, None)
    else:
        predicted_value = np.full(len(y), np.nan)
    has_value = bool(np.isfinite(predicted_value).any())
    ltv = lifetime_value(predicted_value, scores["lightgbm"], economics, horizon_days)
    # A churner kept by the campaign is worth their value if they stay.
    retained = lifetime_value(predicted_value, np.zeros(len(y)), economics, horizon_days)
    metrics: dict[str, float] = {}
    curves: dict[str, pd.DataFrame] = {}
    gains: dict[str, pd.DataFrame] = {}
    for name, score in scores.items():
        prefix = PREFIXES[name]
        for key, number in churn_metrics(y, score).items():
            if name == "recency_rule" and key in ("brier", "log_loss", "expected_calibration_error"):
                continue
            metrics[f"{prefix}.{key}"] = number
        gains[name] = gains_table(y, score)
        if has_value:
            # Models with probabilities rank a campaign by expected profit; the recency rule by its own order.
            ranking = score if name == "recency_rule" else expected_contact_profit(score, retained, economics)
            curves[name] = profit_curve(y, ranking, retained, economics)
            metrics.update({f"{prefix}.{k}": v for k, v in best_profit(curves[name]).items()})
    metrics["churn.raw_roc_auc"] = float(roc_auc_score(y, raw_test))
    for baseline in ("logistic", "recency_rule", "btyd"):
        for key in ("roc_auc", "best_profit"):
            if f"baseline_{baseline}.{key}" in metrics and f"churn.{key}" in metrics:
                metrics[f"gain_over_{baseline}.{key}"] = metrics[f"churn.{key}"] - metrics[f"baseline_{baseline}.{key}"]
    if true_probability is not None:
        truth = true_probability.reset_index(drop=True)[split.test].to_numpy(dtype=float)
        known = np.isfinite(truth)
        if known.sum() and 0 < y[known].sum() < known.sum():
            ceiling = float(roc_auc_score(y[known], truth[known]))
            metrics["churn.true_hazard_roc_auc"] = ceiling
            metrics["churn.gap_to_true_hazard_roc_auc"] = ceiling - float(roc_auc_score(y[known], scores["lightgbm"][known]))

    selected, why = select_churn_algorithm(metrics, settings.champion_metric, blend.weight)
    chosen_prefix = PREFIXES[{"logistic_regression": "logistic"}.get(selected, selected)]
    metrics.update({f"selected.{k.split('.', 1)[1]}": v for k, v in metrics.items() if k.startswith(f"{chosen_prefix}.")})
    info["selected_churn_model"] = selected
    info["selection"] = why

    if value is not None:
        metrics.update({f"value.{k}": v for k, v in stayer_value_metrics(y, actual_value, predicted_value).items()})
        carried = carry_forward_value(test_rows, horizon_days)
        if carried is not None:
            metrics.update({f"baseline_carry_forward.{k}": v
                            for k, v in stayer_value_metrics(y, actual_value, carried).items()})
            metrics["gain_over_carry_forward.spearman"] = metrics["value.spearman"] - metrics["baseline_carry_forward.spearman"]
        btyd_predicted = btyd_value(test_rows)
        if btyd_predicted is not None:
            metrics.update({f"baseline_btyd_value.{k}": v
                            for k, v in stayer_value_metrics(y, actual_value, btyd_predicted).items()})
            metrics["gain_over_btyd_value.spearman"] = metrics["value.spearman"] - metrics["baseline_btyd_value.spearman"]

    selected_probability = scores[{"logistic_regression": "logistic"}.get(selected, selected)]
    test = pd.DataFrame({
        "customer_id": test_rows["customer_id"].to_numpy(), "cutoff": test_rows["cutoff"].to_numpy(),
        "churned": y, "future_value": actual_value, "churn_probability": scores["lightgbm"],
        "raw_score": raw_test, "logistic_score": scores["logistic"],
        "selected_probability": selected_probability,
        "next_horizon_value_if_retained": predicted_value,
        "next_horizon_expected_value": (1.0 - selected_probability) * predicted_value,
        "lifetime_value": ltv, "retained_lifetime_value": retained,
    })
    if recency is not None:
        test["recency_score"] = recency

    horizons = None
    shorter = tuple(sorted(h for h in settings.time_to_churn.horizons_days if h < horizon_days))
    horizon_settings = booster_settings
    if settings.time_to_churn.learning_rate is not None:
        horizon_settings = replace_booster(booster_settings, {
            "learning_rate": max(booster_settings.learning_rate, settings.time_to_churn.learning_rate)})
    if settings.time_to_churn.enabled and shorter and TIME_COLUMN in table.columns:
        fit_args = {"rows": training_rows} if small else {"fit": split.fit, "calibration": split.calibration}
        horizons, horizon_rounds = fit_horizon_models(table, shorter, horizon_days, schema, horizon_settings,
                                                      settings.calibration, seed, **fit_args)
        raw = {d: m.predict(test_rows) for d, m in horizons.models.items()}
        risks = monotone_risks(raw, selected_probability, horizon_days)  # = horizons.predict, without predicting again
        ordered = [raw[d] for d in shorter] + [selected_probability]
        info["horizon_raw_order_violations"] = int(sum((a > b + 1e-12).sum() for a, b in zip(ordered, ordered[1:])))
        info["horizon_rounds"] = {f"{d}d": r for d, r in horizon_rounds.items()}
        info["horizon_learning_rate"] = horizon_settings.learning_rate
        for days, risk in risks.items():
            test[risk_column(days)] = risk
            labels = y if days == horizon_days else horizon_label(test_rows, days)
            metrics.update({f"risk_{days}d.{k}": v for k, v in churn_metrics(labels, risk).items()})
        test["likely_to_leave_within"] = leaving_within(risks)
    elif settings.time_to_churn.enabled and shorter:
        info["time_to_churn"] = ("no time to churn: the training table has no days_to_churn (labels.definition "
                                 "inactivity, a churn flag that says who left but not when (labels.churn_flag), "
                                 "or features built before it existed)")
    if btyd is not None:
        test["btyd_score"] = btyd

    # Serve what was evaluated, refitted on every labelled cutoff (the newest labels included).
    refit_fit, refit_calibration = refit_split(table, settings.calibration_share, seed)
    refit = table
    if REFIT_WEIGHT_COLUMN in table.columns:  # a sampled table: the test cutoff is sampled for the refit too
        refit_weight = table[REFIT_WEIGHT_COLUMN].to_numpy(dtype=np.float64)
        refit = table.assign(**{WEIGHT_COLUMN: refit_weight})
        refit_fit &= refit_weight > 0
        refit_calibration &= refit_weight > 0
    every_row = np.ones(len(table), dtype=bool)
    small_refit = len(table) < settings.cross_validate_below_rows and not sampled
    final_booster: ChurnModel | None = None
    final_linear: LinearChurnModel | None = None
    if selected in ("lightgbm", "blend"):
        if small_refit:
            final_booster, _ = fit_churn_model_cv(table, every_row, schema, booster_settings, settings.calibration, seed)
        else:
            final_booster, _ = fit_churn_model(refit, refit_fit, refit_calibration, schema, booster_settings,
                                               settings.calibration, seed, rounds=int(churn_info["best_iteration"]))
    if selected in ("logistic_regression", "blend"):
        if small_refit:
            final_linear = fit_linear_churn_model_cv(table, every_row, schema, seed, settings.calibration)
        else:
            final_linear = fit_linear_churn_model(refit, refit_fit, schema, seed, refit_calibration,
                                                  settings.calibration, penalty_c=logistic.penalty_c,
                                                  max_rows=settings.sampling.logistic_max_rows)
    final_churn: ChurnModel | LinearChurnModel | BlendChurnModel
    if selected == "blend":
        assert final_booster is not None and final_linear is not None
        final_churn, _ = fit_blend(refit, final_booster, final_linear, settings.calibration, seed, weight=blend.weight)
    else:
        final_churn = final_booster if final_booster is not None else final_linear  # type: ignore[assignment]
    final_horizons = None
    if horizons is not None:
        if small_refit:
            final_horizons, _ = fit_horizon_models(table, shorter, horizon_days, schema, horizon_settings,
                                                   settings.calibration, seed, rows=every_row)
        else:
            final_horizons, _ = fit_horizon_models(refit, shorter, horizon_days, schema, horizon_settings,
                                                   settings.calibration, seed, fit=refit_fit,
                                                   calibration=refit_calibration, rounds=horizon_rounds)
    final_value = None
    if value is not None:
        final_value, _ = fit_value_model(refit, refit_fit & stayed, refit_calibration & stayed, schema,
                                         settings.value_booster, settings.tweedie_variance_power, seed,
                                         rounds=int(info["value_best_iteration"]))  # type: ignore[call-overload]
    # a small table's refit fits every row and calibrates out of fold
    info.update({"refit_rows": int(len(table)) if small_refit else int(refit_fit.sum()),
                 "refit_calibration_rows": 0 if small_refit else int(refit_calibration.sum()),
                 "refit_fit": "cross_validated" if small_refit else "held_out_calibration_share",
                 "refit_cutoffs": sorted({str(pd.Timestamp(c).date()) for c in table["cutoff"].unique()})})
    return TrainingResult(churn, logistic, value, split, metrics, test, curves, gains, selected,
                          final_churn, final_value, info, blend, horizons, final_horizons)


PREFIXES: dict[str, str] = {"lightgbm": "churn", "logistic": "baseline_logistic", "blend": "blend",
                            "recency_rule": "baseline_recency_rule", "btyd": "baseline_btyd"}
"""Metric prefix of each scored candidate in `TrainingResult.metrics`."""


def select_churn_algorithm(metrics: dict[str, float], metric: str, blend_weight: float = 1.0) -> tuple[str, str]:
    """The churn model to serve, chosen on validation scores only, and why.

    The validation scores decide the blend weight (`models.blend.fit_blend`, out-of-fold or
    calibration rows): 1 means LightGBM alone, 0 the logistic regression alone, anything between
    the blend. The test rows never decide: a choice made on them would make their figures
    optimistic. How the choice fares against the logistic regression there is reported, not acted on.
    """
    candidate = "lightgbm" if blend_weight >= 1 else "logistic_regression" if blend_weight <= 0 else "blend"
    label = {"lightgbm": "LightGBM", "blend": f"the blend ({blend_weight:g} LightGBM)",
             "logistic_regression": "the logistic regression"}[candidate]
    if candidate == "logistic_regression":
        return candidate, "the validation scores gave LightGBM no weight: the logistic regression is served"
    ours = metrics.get(f"{PREFIXES[candidate]}.{metric}")
    theirs = metrics.get(f"baseline_logistic.{metric}")
    if ours is None or theirs is None or not np.isfinite(theirs):
        return candidate, f"{label} chosen on validation scores"
    verdict = "at least as good as" if ours >= theirs else "below"
    return candidate, (f"{label} chosen on validation scores; on the held-out data {verdict} the logistic regression "
                       f"({metric} {ours:.4f} vs {theirs:.4f}), reported, not used to choose")


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

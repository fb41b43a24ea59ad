"""Unit behaviour of the model pieces on small synthetic tables with a known signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.boosting import ChurnModel
from models.calibration import Calibrator, fit_calibrator
from models.data import FeatureSchema, customer_hash_share, infer_schema, split_rows
from models.drift import population_stability, reference_profile
from models.evaluation import (best_profit, churn_metrics, expected_calibration_error, lifetime_value,
                               profit_curve, value_metrics)
from models.explain import reason_codes, top_drivers
from models.settings import EconomicsSettings, ModelSettings, TuningSettings
from models.training import compare_with_champion, select_churn_algorithm, train_models


def known_signal_table(customers: int = 3000, cutoffs: int = 8, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Monthly snapshots where churn follows a known logistic law of three features."""
    rng = np.random.default_rng(seed)
    frames = []
    for cutoff in pd.date_range("2024-01-01", periods=cutoffs, freq="MS"):
        frame = pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(customers)], "cutoff": cutoff})
        frame["days_since_last_transaction"] = rng.exponential(30, customers)
        frame["open_complaints"] = rng.poisson(0.3, customers).astype(float)
        frame["transaction_amount_90d"] = rng.lognormal(6, 1, customers)
        frame["segment"] = pd.Categorical(rng.choice(["mass", "affluent", "small_business"], customers))
        logit = -4 + 0.035 * frame["days_since_last_transaction"] + 1.1 * frame["open_complaints"]
        truth = 1 / (1 + np.exp(-logit))
        frame["churned"] = (rng.random(customers) < truth).astype(int)
        frame["future_value"] = frame["transaction_amount_90d"] * rng.lognormal(0, 0.4, customers) * (1 - frame["churned"])
        frame["_truth"] = truth
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    return table.drop(columns="_truth"), table["_truth"]


@pytest.fixture(scope="module")
def trained():
    table, truth = known_signal_table()
    settings = ModelSettings(tuning=TuningSettings(trials=2))  # a tiny tuning budget: fast, still exercised
    return table, truth, train_models(table, settings, EconomicsSettings(), 90, 7, truth)


def test_split_is_out_of_time_and_purged(trained) -> None:
    table, _, result = trained
    split = result.split
    cutoffs = pd.to_datetime(table["cutoff"])
    assert cutoffs[split.test].nunique() == 1 and cutoffs[split.test].iloc[0] == cutoffs.max()
    # No training label window (cutoff + 90 days) reaches into the test cutoff.
    assert (cutoffs[split.fit | split.calibration] + pd.Timedelta(days=90) <= cutoffs.max()).all()
    # Fit and calibration rows never share a customer.
    assert not set(table["customer_id"][split.fit]) & set(table["customer_id"][split.calibration])
    assert not (split.fit & split.test).any() and not (split.calibration & split.test).any()


def test_single_cutoff_uses_hashed_customers() -> None:
    table, _ = known_signal_table(customers=2000, cutoffs=1)
    split = split_rows(table, 90, 0.25, 0.25, seed=3)
    assert split.kind == "hashed_customers"
    assert abs(split.test.mean() - 0.25) < 0.05
    assert (split.fit | split.calibration | split.test).all()
    assert not (split.fit & split.calibration).any()


def test_hash_share_is_stable_and_seed_dependent() -> None:
    ids = pd.Series(["C1", "C2", "C3"])
    assert np.array_equal(customer_hash_share(ids, 1), customer_hash_share(ids.copy(), 1))
    assert not np.array_equal(customer_hash_share(ids, 1), customer_hash_share(ids, 2))


def test_model_recovers_known_signal_and_beats_baselines(trained) -> None:
    _, _, result = trained
    m = result.metrics
    assert m["churn.gap_to_true_hazard_roc_auc"] < 0.03
    assert m["churn.roc_auc"] > m["baseline_recency_rule.roc_auc"] + 0.02
    assert m["churn.expected_calibration_error"] < 0.02
    assert m["churn.captured_top_20pct"] > 0.4


def test_training_is_deterministic(trained) -> None:
    table, truth, result = trained
    again = train_models(table, ModelSettings(tuning=TuningSettings(trials=2)), EconomicsSettings(), 90, 7, truth)
    assert again.churn.booster.model_to_string() == result.churn.booster.model_to_string()
    assert again.metrics == result.metrics


def test_training_does_not_mutate_its_input(trained) -> None:
    table, truth, _ = trained
    before = table.copy(deep=True)
    train_models(table.head(6000), ModelSettings(tuning=TuningSettings(trials=2)), EconomicsSettings(), 30, 7)
    pd.testing.assert_frame_equal(table, before)


def test_bundle_round_trip_gives_same_predictions(tmp_path, trained) -> None:
    table, _, result = trained
    result.churn.save(tmp_path / "bundle")
    loaded = ChurnModel.load(tmp_path / "bundle")
    sample = table.head(500)
    np.testing.assert_allclose(loaded.predict(sample), result.churn.predict(sample))


def test_schema_names_missing_and_mistyped_columns() -> None:
    schema = FeatureSchema(("a", "b", "c"), {"c": ("x", "y")})
    frame = pd.DataFrame({"a": ["text"], "c": [1.0]})
    problems = schema.problems(frame)
    assert any("missing feature column(s): b" in p for p in problems)
    assert any("a should be numeric" in p for p in problems)
    assert any("c should be categorical" in p for p in problems)


def test_unseen_category_becomes_missing_not_another_level() -> None:
    frame = pd.DataFrame({"segment": ["mass", "affluent"]})
    schema = infer_schema(frame, ["segment"])
    matrix = schema.matrix(pd.DataFrame({"segment": ["mass", "private_bank"]}))
    assert matrix["segment"].tolist()[0] == "mass" and pd.isna(matrix["segment"].tolist()[1])


def test_calibration_fixes_a_miscalibrated_score() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.01, 0.4, 20000)
    y = (rng.random(20000) < truth).astype(int)
    raw = np.sqrt(truth)  # monotone but badly calibrated
    calibrator, losses = fit_calibrator(raw, y, "auto", seed=0)
    assert set(losses) == {"isotonic", "platt"}
    assert expected_calibration_error(y, raw) > 0.1
    assert expected_calibration_error(y, calibrator.transform(raw)) < 0.02
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator


def test_profit_curve_matches_hand_computation() -> None:
    economics = EconomicsSettings(contact_cost=5, offer_cost=20, retention_success_rate=0.5,
                                  offer_acceptance_non_churners=1.0)
    y = np.array([1, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.1])
    value = np.array([100.0, 100.0, 300.0, 100.0])
    curve = profit_curve(y, score, value, economics, steps=4)
    # churner: 0.5 * (value - 20) - 5; stayer: -(5 + 20)
    expected = [0, 35, 35 - 25, 35 - 25 + 135, 35 - 25 + 135 - 25]
    np.testing.assert_allclose(curve["expected_profit"], expected)
    assert best_profit(curve) == {"best_share_contacted": 0.75, "best_profit": 145.0, "best_customers_contacted": 3.0}


def test_churn_metrics_on_a_perfect_ranking() -> None:
    y = np.array([0] * 90 + [1] * 10)
    score = np.linspace(0, 1, 100)
    metrics = churn_metrics(y, score)
    assert metrics["roc_auc"] == 1.0 and metrics["captured_top_10pct"] == 1.0
    assert metrics["lift_top_10pct"] == pytest.approx(10.0)


def test_value_metrics_and_lifetime_value() -> None:
    actual = np.array([0.0, 10.0, 20.0, 100.0])
    metrics = value_metrics(actual, actual * 2)
    assert metrics["spearman"] == pytest.approx(1.0) and metrics["total_error_pct"] == pytest.approx(100.0)
    economics = EconomicsSettings(value_margin=0.1, lifetime_horizons=2, annual_discount_rate=0.0)
    ltv = lifetime_value(np.array([100.0]), np.array([0.5]), economics, 90)
    # horizon k counts if the customer is still there at its end: 10 x (0.5 + 0.25)
    assert ltv[0] == pytest.approx(10 * (0.5 + 0.25))
    assert lifetime_value(np.array([100.0]), np.array([0.0]), economics, 90)[0] == pytest.approx(20.0)
    # hand-computed with discounting: margin 0.1, value 100, p = 0.96, 3 horizons of 365 days at 10%:
    # 10 x (0.04 + 0.04^2 / 1.1 + 0.04^3 / 1.21); the coming horizon weighs 0.04, not 1
    discounted = EconomicsSettings(value_margin=0.1, lifetime_horizons=3, annual_discount_rate=0.1)
    expected = 10 * (0.04 + 0.04 ** 2 / 1.1 + 0.04 ** 3 / 1.21)
    assert lifetime_value(np.array([100.0]), np.array([0.96]), discounted, 365)[0] == pytest.approx(expected)


def test_psi_zero_for_same_data_large_for_shifted() -> None:
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"x": rng.normal(size=5000), "s": pd.Categorical(rng.choice(["a", "b"], 5000))})
    reference = reference_profile(base)
    same = population_stability(reference, base).set_index("feature")["psi"]
    assert same.max() < 1e-9
    shifted = base.assign(x=base["x"] + 1.0, s=pd.Categorical(["a"] * 5000))
    moved = population_stability(reference, shifted).set_index("feature")["psi"]
    assert moved["x"] > 0.25 and moved["s"] > 0.25


def test_reason_codes_name_the_biggest_risk_drivers() -> None:
    frame = pd.DataFrame({"open_complaints": [2.0, 0.0], "days_since_last_transaction": [3.0, 80.0]})
    contributions = pd.DataFrame({"open_complaints": [1.5, -0.2], "days_since_last_transaction": [-0.1, 0.9],
                                  "base_value": [-3.0, -3.0]})
    templates = {"open_complaints": "{value:.0f} complaints still open",
                 "days_since_last_transaction": "no transaction for {value:.0f} days"}
    reasons = reason_codes(frame, contributions, templates, k=2)
    assert reasons.loc[0, "reason_1"] == "2 complaints still open" and reasons.loc[0, "reason_2"] is None
    assert reasons.loc[1, "reason_1"] == "no transaction for 80 days"
    positions, values = top_drivers(contributions, 1)
    assert positions[:, 0].tolist() == [0, 1]


def test_reasons_speak_of_one_thing_in_the_singular() -> None:
    from models.explain import render_reason

    templates = {"age": "oldest open complaint waiting {value:.0f} days", "count": "{value:.0f} complaints in 90 days"}
    assert render_reason("age", {"age": 1.0}, templates) == "oldest open complaint waiting 1 day"
    assert render_reason("age", {"age": 21.0}, templates) == "oldest open complaint waiting 21 days"
    assert render_reason("count", {"count": 1.0}, templates) == "1 complaint in 90 days"
    assert render_reason("count", {"count": 11.0}, templates) == "11 complaints in 90 days"
    assert render_reason("nps", {"nps": 1.0}, {"nps": "score changed by {value:+.0f} points"}) == "score changed by +1 point"


def test_reasons_telling_one_story_are_said_once_in_full() -> None:
    frame = pd.DataFrame({"largest_outflow_90d": [81_258.0], "largest_outflow_90d_vs_typical": [17.0],
                          "days_since_largest_outflow_90d": [45.0], "products_held": [1.0]})
    contributions = pd.DataFrame({"largest_outflow_90d": [0.9], "largest_outflow_90d_vs_typical": [0.5],
                                  "days_since_largest_outflow_90d": [0.4], "products_held": [0.3],
                                  "base_value": [-3.0]})
    templates = {
        "largest_outflow_90d": "{value:,.0f} moved out in one go {days_since_largest_outflow_90d:.0f} days ago",
        "largest_outflow_90d_vs_typical": ("{largest_outflow_90d:,.0f} moved out in one go "
                                           "{days_since_largest_outflow_90d:.0f} days ago, {value:.0f}x their usual transaction"),
        "days_since_largest_outflow_90d": "{largest_outflow_90d:,.0f} moved out in one go {value:.0f} days ago",
        "products_held": "{value:.0f} product held"}
    reasons = reason_codes(frame, contributions, templates, k=3)
    assert reasons.loc[0, "reason_1"] == "81,258 moved out in one go 45 days ago, 17x their usual transaction"
    assert reasons.loc[0, "driver_1"] == "largest_outflow_90d"
    assert reasons.loc[0, "reason_2"] == "1 product held"
    assert reasons.loc[0, "reason_3"] is None


def test_champion_rule() -> None:
    assert compare_with_champion(0.80, None, 0.01)[0]
    assert compare_with_champion(0.80, 0.78, 0.01)[0]
    assert not compare_with_champion(0.785, 0.78, 0.01)[0]


def test_the_served_churn_model_is_the_validation_choice_whatever_the_test_rows_say() -> None:
    losing = {"blend.roc_auc": 0.861, "baseline_logistic.roc_auc": 0.868, "churn.roc_auc": 0.84}
    served, why = select_churn_algorithm(losing, "roc_auc", blend_weight=0.5)
    assert served == "blend" and "below the logistic regression" in why and "not used to choose" in why
    assert select_churn_algorithm(losing, "roc_auc", blend_weight=1.0)[0] == "lightgbm"
    assert select_churn_algorithm(losing, "roc_auc", blend_weight=0.0)[0] == "logistic_regression"
    winning = {"churn.roc_auc": 0.9, "baseline_logistic.roc_auc": 0.8}
    assert "at least as good as" in select_churn_algorithm(winning, "roc_auc", blend_weight=1.0)[1]


def test_roc_table_traces_the_curve_whose_area_is_the_auc() -> None:
    from sklearn.metrics import roc_auc_score

    from models.evaluation import roc_table

    rng = np.random.default_rng(3)
    y = rng.random(5000) < 0.2
    score = y * 0.5 + rng.random(5000)
    table = roc_table(y.astype(int), {"model": score}, points=5000)
    area = np.trapezoid(table["true_positive_rate"], table["false_positive_rate"])
    assert abs(area - roc_auc_score(y, score)) < 1e-3
    assert table["false_positive_rate"].is_monotonic_increasing and len(roc_table(y, {"m": score}, 50)) <= 50


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_churn_command_makes_openmp_threads_sleep_unless_the_environment_says_otherwise(
        given: str | None, expected: str) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, pipelines; print(os.environ['OMP_WAIT_POLICY'])"  # `churn` imports pipelines first
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == expected

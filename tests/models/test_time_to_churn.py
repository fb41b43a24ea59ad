"""Time to churn: risk within 30, 60 and 90 days, calibrated per horizon and never falling as it grows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.settings import BoosterSettings, EconomicsSettings, ModelSettings, TuningSettings
from models.time_to_churn import HorizonRiskModels, leaving_within, monotone_risks
from models.training import train_models
from tests.models.test_models_unit import known_signal_table

FAST = BoosterSettings(learning_rate=0.1, num_leaves=7, min_child_samples=40, max_rounds=300,
                       early_stopping_rounds=30)
TINY = TuningSettings(trials=2, max_rows=2000)


@pytest.fixture(scope="module")
def timed():
    """Churners leave sooner the riskier they are: days_to_churn is exponential with a rate that grows
    with the open complaints (the planted signal of the 30-day risk beyond the 90-day one)."""
    table, truth = known_signal_table(customers=1500, cutoffs=6, seed=3)
    rng = np.random.default_rng(11)
    mean_days = 60.0 / (1.0 + table["open_complaints"].to_numpy())
    days = np.minimum(np.floor(rng.exponential(mean_days)), 89.0)
    table["days_to_churn"] = np.where(table["churned"] == 1, days, np.nan)
    settings = ModelSettings(booster=FAST, tuning=TINY, cross_validate_below_rows=0)  # held out: fewer fits
    return table, train_models(table, settings, EconomicsSettings(), 90, 7, truth)


def test_risks_are_monotone_per_customer_and_each_horizon_is_reported(timed) -> None:
    table, result = timed
    test = result.test
    risks = test[["churn_risk_30d", "churn_risk_60d", "churn_risk_90d"]].to_numpy()
    assert (np.diff(risks, axis=1) >= 0).all()
    np.testing.assert_array_equal(test["churn_risk_90d"], test["selected_probability"])
    m = result.metrics
    for days in (30, 60, 90):
        assert 0.5 < m[f"risk_{days}d.roc_auc"] <= 1
        assert m[f"risk_{days}d.expected_calibration_error"] < 0.05
    # shorter horizons catch fewer churners: base rates grow with the horizon
    assert m["risk_30d.base_rate"] < m["risk_60d.base_rate"] < m["risk_90d.base_rate"]
    assert m["risk_90d.roc_auc"] == m["selected.roc_auc"]
    assert set(test["likely_to_leave_within"]) <= {"1 month", "2 months", "3 months"}
    assert result.info["horizon_raw_order_violations"] >= 0
    # bounded tuning ran on the calibration customers: its trials are recorded, trial 0 the configured booster
    trials = result.info["tuning_trials"]
    assert len(trials) == 2 and trials[0]["learning_rate"] == FAST.learning_rate
    assert result.info["tuning_stopped_by"] == "trials"


def test_served_horizon_models_round_trip(timed, tmp_path: Path) -> None:
    table, result = timed
    assert result.final_horizons is not None and sorted(result.final_horizons.models) == [30, 60]
    result.final_horizons.save(tmp_path / "horizons")
    loaded = HorizonRiskModels.load(tmp_path / "horizons")
    assert loaded is not None
    full = np.full(len(table), 0.5)
    before, after = result.final_horizons.predict(table, full), loaded.predict(table, full)
    for days in (30, 60, 90):
        np.testing.assert_array_equal(before[days], after[days])
    assert HorizonRiskModels.load(tmp_path / "nothing-here") is None


def test_without_a_time_to_churn_no_horizon_models_and_the_reason_is_said(timed) -> None:
    table, _ = timed
    settings = ModelSettings(booster=FAST, cross_validate_below_rows=0, tuning=TuningSettings(enabled=False))
    recent = table[table["cutoff"] >= sorted(table["cutoff"].unique())[-3]]
    result = train_models(recent.drop(columns="days_to_churn"), settings, EconomicsSettings(), 90, 7)
    assert result.horizons is None and "churn_risk_30d" not in result.test
    assert "no days_to_churn" in str(result.info["time_to_churn"])


def test_monotone_risks_cap_each_horizon_by_the_next_and_name_where_the_risk_lies() -> None:
    risks = monotone_risks({30: np.array([0.1, 0.5, 0.02]), 60: np.array([0.05, 0.6, 0.03])},
                           np.array([0.2, 0.55, 0.3]), 90)
    np.testing.assert_allclose(risks[30], [0.05, 0.5, 0.02])
    np.testing.assert_allclose(risks[60], [0.05, 0.55, 0.03])
    assert list(leaving_within(risks)) == ["3 months", "1 month", "3 months"]

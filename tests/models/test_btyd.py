"""BG/NBD and Gamma-Gamma: our scipy fits against the `lifetimes` library on the same simulated
purchases, and the per-customer purchase history they are fitted on."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from features import _grouping as grouping
from features._grouping import cutoff_us
from features.btyd import btyd_features, fit_btyd, purchase_history
from features.build import prepare
from features.settings import FeatureSettings
from models.btyd import bgnbd
from models.btyd import (expected_purchases, expected_spend, fit_bgnbd, fit_gamma_gamma, probability_active,
                         probability_alive)
from tests.features.factories import random_tables

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.generate_data import beta_geometric_nbd_model

ROW_CHUNKS = grouping.row_chunks
TRUE = {"r": 0.5, "alpha": 10.0, "a": 0.8, "b": 2.5}


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    """5,000 customers drawn from the BG/NBD generative process (lifetimes' simulator), 200 days each."""
    np.random.seed(7)  # the simulator draws from numpy's global generator
    return beta_geometric_nbd_model(T=200, size=5000, **TRUE)


def test_bgnbd_fit_matches_lifetimes_and_recovers_the_simulated_parameters(simulated: pd.DataFrame) -> None:
    x, t_x, age = (simulated[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    ours = fit_bgnbd(x, t_x, age)
    reference = BetaGeoFitter().fit(simulated["frequency"], simulated["recency"], simulated["T"])
    for name, value in reference.params_.items():
        assert getattr(ours, name) == pytest.approx(value, rel=1e-3), name
        assert getattr(ours, name) == pytest.approx(TRUE[name], rel=0.2), name
    np.testing.assert_allclose(probability_alive(ours, x, t_x, age),
                               reference.conditional_probability_alive(x, t_x, age), atol=1e-4)
    np.testing.assert_allclose(expected_purchases(ours, x, t_x, age, 90.0),
                               reference.conditional_expected_number_of_purchases_up_to_time(90, x, t_x, age),
                               rtol=1e-3, atol=1e-4)
    active = probability_active(ours, x, t_x, age, 90.0)
    assert ((active >= 0) & (active <= probability_alive(ours, x, t_x, age))).all()
    # longer look-ahead, more purchases and a higher chance of buying
    assert (expected_purchases(ours, x, t_x, age, 180.0) >= expected_purchases(ours, x, t_x, age, 90.0)).all()
    assert (probability_active(ours, x, t_x, age, 180.0) >= active).all()


def test_bgnbd_fit_is_the_same_with_either_way_of_finding_distinct_rows(simulated: pd.DataFrame,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    x, t_x, age = (simulated[c].to_numpy(dtype=float)[:800] for c in ("frequency", "recency", "T"))
    t_x, age = np.floor(t_x), age - np.arange(800) % 3  # whole days, repeated rows: weights above one
    keyed = fit_bgnbd(x, t_x, age)
    monkeypatch.setattr(bgnbd, "WHOLE_LIMIT", 0)  # the distinct days sorted (np.unique) instead of counted
    assert fit_bgnbd(x, t_x, age) == keyed
    monkeypatch.setattr(bgnbd, "MAX_ROW_KEY", 1)  # as with millions of distinct continuous times
    assert fit_bgnbd(x, t_x, age) == keyed


def test_gamma_gamma_fit_matches_lifetimes(simulated: pd.DataFrame) -> None:
    rng = np.random.default_rng(3)
    x = simulated["frequency"].to_numpy(dtype=float)
    nu = rng.gamma(4.0, 1 / 60.0, len(x))  # per-customer rate: spend Gamma(p=3, nu)
    mean_spend = np.array([rng.gamma(3.0, 1 / n, max(int(k), 1)).mean() for n, k in zip(nu, x)])
    ours = fit_gamma_gamma(x, mean_spend)
    repeat = x > 0
    reference = GammaGammaFitter().fit(x[repeat], mean_spend[repeat])
    for name, value in reference.params_.items():
        assert getattr(ours, name) == pytest.approx(value, rel=1e-3), name
    np.testing.assert_allclose(expected_spend(ours, x[repeat], mean_spend[repeat]),
                               reference.conditional_expected_average_profit(x[repeat], mean_spend[repeat]),
                               rtol=1e-4)
    # no repeat purchase: the population mean
    assert expected_spend(ours, np.array([0.0]), np.array([np.nan]))[0] == pytest.approx(ours.population_mean)


def test_too_little_history_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="repeat purchases"):
        fit_bgnbd(np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 3.0]), np.array([5.0, 6.0, 7.0]))
    with pytest.raises(ValueError, match="positive value"):
        fit_gamma_gamma(np.array([1.0, 0.0]), np.array([-5.0, 3.0]))


@pytest.mark.parametrize("chunk_rows", [None, 97])
@pytest.mark.parametrize("cutoff", ["2024-05-01", "2024-05-01 06:30"])
def test_purchase_history_counts_each_day_once_and_only_before_the_cutoff(cutoff: str, chunk_rows: int | None,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if chunk_rows is not None:  # many small chunks: a day's rows split across chunks still count once
        monkeypatch.setattr(grouping, "row_chunks", lambda n, size=chunk_rows: ROW_CHUNKS(n, size))
    tables = random_tables(5, n_customers=50, transactions=4_000)
    moment = pd.Timestamp(cutoff)
    prepared = prepare(tables, FeatureSettings())
    assert prepared.transactions is not None
    history = purchase_history(prepared.transactions, prepared.n_customers, cutoff_us(moment))

    tx = tables.transactions
    tx = tx[tx["timestamp"] < moment]
    back = (moment - tx["timestamp"] - pd.Timedelta(microseconds=1)) // pd.Timedelta(days=1)
    per = tx.assign(back=back).groupby("customer_id").agg(
        days=("back", "nunique"), first=("back", "max"), last=("back", "min"), spend=("amount", "sum"))
    expected = per.reindex(prepared.customer_ids.to_numpy())
    np.testing.assert_array_equal(history.frequency, (expected["days"] - 1).to_numpy(dtype=float))
    np.testing.assert_array_equal(history.recency, (expected["first"] - expected["last"]).to_numpy(dtype=float))
    np.testing.assert_array_equal(history.age, (expected["first"] + 1).to_numpy(dtype=float))
    np.testing.assert_allclose(history.mean_spend, (expected["spend"] / expected["days"]).to_numpy(dtype=float))
    assert (history.bought == expected["days"].notna().to_numpy()).all()

    features = btyd_features(history, fit_btyd(history), 90)
    never = ~history.bought
    assert never.any() and all(np.isnan(v[never]).all() for v in features.values())
    bought = history.bought
    assert ((features["btyd_probability_alive"][bought] > 0) & (features["btyd_probability_alive"][bought] <= 1)).all()
    np.testing.assert_allclose(features["btyd_expected_value_horizon"],
                               features["btyd_expected_purchases_horizon"] * features["btyd_expected_spend"])

"""Compiled prediction (lleaves) of real LightGBM models: the same scores, a cache, a safe fallback."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.boosting import ValueModel
from models.data import FeatureSchema
from pipelines.compiled import CompiledBooster, compiled_models


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, FeatureSchema]:
    """A model matrix with gaps and a categorical column, a churn label and a spend target."""
    rng = np.random.default_rng(7)
    rows = 4_000
    frame = pd.DataFrame({
        "days_since_last_transaction": rng.exponential(60, rows),
        "transaction_count_90d": rng.poisson(5, rows).astype(float),
        "segment": rng.choice(["mass", "affluent", "private"], rows),
    })
    frame.loc[rng.random(rows) < 0.1, "days_since_last_transaction"] = np.nan
    logit = 0.02 * frame["days_since_last_transaction"].fillna(200) - 0.3 * frame["transaction_count_90d"] \
        + (frame["segment"] == "private") * 0.8 - 1
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(float)
    spend = rng.gamma(2.0, 50.0, rows) * (frame["transaction_count_90d"] + 1)
    schema = FeatureSchema(tuple(frame.columns), {"segment": ("affluent", "mass", "private")})
    return schema.matrix(frame), churned, spend.to_numpy(), schema


def booster(matrix: pd.DataFrame, target: np.ndarray, objective: str, **extra: object) -> lgb.Booster:
    params = {"objective": objective, "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "seed": 1,
              "num_threads": 1, **extra}
    return lgb.train(params, lgb.Dataset(matrix, target), num_boost_round=60)


def test_compiled_models_predict_as_lightgbm_and_come_from_the_cache_next_time(data, tmp_path: Path) -> None:
    matrix, churned, spend, schema = data
    value = ValueModel(booster(matrix, spend, "tweedie", tweedie_variance_power=1.3), schema)
    boosters = {"control": booster(matrix, churned, "binary"), "treated": booster(matrix, 1 - churned, "binary")}
    models = {"value": value, "uplift_like": boosters, "absent": None}
    said: list[str] = []
    fast, info = compiled_models(models, rows=10, min_rows=0, cache_dir=str(tmp_path), say=said.append)
    assert info["used"] and info["boosters"] == 3 and info["trees"] == 180 and info["not_compiled"] == {}
    assert isinstance(fast["value"].booster, CompiledBooster) and fast["absent"] is None
    assert isinstance(value.booster, lgb.Booster) and isinstance(boosters["control"], lgb.Booster)  # not changed
    expected = value.booster.predict(matrix, num_threads=1)
    got = fast["value"].booster.predict(matrix, num_threads=2)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    for name, model in boosters.items():
        np.testing.assert_allclose(fast["uplift_like"][name].predict(matrix), model.predict(matrix), rtol=1e-12, atol=1e-15)
    # what is not a plain prediction is LightGBM's own
    np.testing.assert_array_equal(fast["value"].booster.predict(matrix, pred_contrib=True),
                                  value.booster.predict(matrix, pred_contrib=True))
    assert fast["value"].booster.num_trees() == 60
    assert "3 boosters compiled (0 from the cache" in said[-1]
    again, _ = compiled_models(models, rows=10, min_rows=0, cache_dir=str(tmp_path), say=said.append)
    assert "3 boosters compiled (3 from the cache" in said[-1]
    np.testing.assert_array_equal(again["value"].booster.predict(matrix, num_threads=2), got)
    assert len(list(tmp_path.glob("*.o"))) == 3 and not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_below_min_rows_the_models_are_lightgbms_own(data, tmp_path: Path) -> None:
    matrix, churned, _, schema = data
    models = {"control": booster(matrix, churned, "binary")}
    for min_rows in (None, 11):
        same, info = compiled_models(models, rows=10, min_rows=min_rows, cache_dir=str(tmp_path), say=print)
        assert same is models and info["used"] is False and "min_rows" in str(info["why"])
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_a_model_compiled_code_gets_wrong_stays_on_lightgbm_and_says_why(data, tmp_path: Path) -> None:
    """Linear trees (a leaf's value a linear function of the features) are not compiled faithfully by
    lleaves: the first rows' check catches it and LightGBM predicts, every row, exactly."""
    matrix, churned, _, schema = data
    numeric = matrix[["days_since_last_transaction", "transaction_count_90d"]]
    linear = booster(numeric, churned, "binary", linear_tree=True)
    fast, info = compiled_models({"churn": {"linear": linear}}, rows=10, min_rows=0, cache_dir=str(tmp_path),
                                 say=print)
    wrapped = fast["churn"]["linear"]
    predicted = wrapped.predict(numeric, num_threads=1)
    np.testing.assert_array_equal(predicted, linear.predict(numeric, num_threads=1))
    assert isinstance(wrapped, CompiledBooster) and wrapped.compiled is None
    assert info["not_compiled"]["churn.linear"].startswith("LightGBM: the compiled model's scores differ from "
                                                          "LightGBM's by ")

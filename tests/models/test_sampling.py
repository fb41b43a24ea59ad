"""Sampling of very large training tables: who is kept, the weights, and probabilities that stay right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.data import REFIT_WEIGHT_COLUMN, WEIGHT_COLUMN, customer_hash_share, model_feature_columns, sample_non_churners, split_rows
from models.settings import BoosterSettings, EconomicsSettings, ModelSettings, TuningSettings
from models.training import train_models
from pipelines.config import parse_config
from pipelines.train import read_training_table
from tests.models.test_models_unit import known_signal_table

SEED = 7


def test_sampling_keeps_churners_test_rows_and_whole_calibration_customers() -> None:
    table, _ = known_signal_table(customers=4000, cutoffs=8, seed=3)
    split = split_rows(table, 90, 0.25, 0.25, SEED)
    sample = sample_non_churners(table, split, 12_000, 0.25, SEED)
    churned = table["churned"].to_numpy() == 1
    assert sample.active and 0 < sample.rate < 1
    assert abs(sample.kept - split.test.sum() - 12_000) < 600 and sample.kept == sample.keep.sum()
    assert sample.keep[split.test].all()  # every reported figure is on the whole test cutoff
    assert sample.keep[churned & split.fit].all()
    fit_stayers = split.fit & ~churned
    assert abs(sample.keep[fit_stayers].mean() - sample.rate) < 0.02
    assert np.allclose(sample.weight[fit_stayers], 1 / sample.rate) and (sample.weight[churned | split.test] == 1).all()
    # calibration: whole customers, churners or not, at about the calibration budget (0.25 of 12,000 rows)
    calibration = table[split.calibration].assign(kept=sample.keep[split.calibration])
    per_customer = calibration.groupby("customer_id")["kept"].agg(["min", "max"])
    assert (per_customer["min"] == per_customer["max"]).all()
    assert 2000 < calibration["kept"].sum() < 3000
    assert sample_non_churners(table, split, 12_000, 0.25, SEED).keep.tolist() == sample.keep.tolist()  # seeded
    # the refit on every labelled cutoff: the same rows outside the test cutoff, and the test cutoff sampled alike
    refit = sample.refit_weight
    assert np.array_equal(refit[~split.test], np.where(sample.keep, sample.weight, 0.0)[~split.test])
    test_calibration = split.test & (customer_hash_share(table["customer_id"], SEED) < 0.25)
    assert (refit[split.test & churned & ~test_calibration] == 1).all()
    test_stayers = split.test & ~churned & ~test_calibration
    assert abs((refit[test_stayers] > 0).mean() - sample.rate) < 0.03
    assert np.allclose(refit[test_stayers][refit[test_stayers] > 0], 1 / sample.rate)
    kept_share = (refit[test_calibration] > 0).mean()
    assert abs(kept_share - sample.calibration_rate) < 0.1 and set(refit[test_calibration]) <= {0.0, 1.0}
    assert (refit > 0).sum() < sample.kept  # the refit costs about what the fit does, not the whole test cutoff more


def test_no_sampling_at_or_below_the_limit() -> None:
    table, _ = known_signal_table(customers=500, cutoffs=4, seed=3)
    split = split_rows(table, 90, 0.25, 0.25, SEED)
    for limit in (len(table), None):
        sample = sample_non_churners(table, split, limit, 0.25, SEED)
        assert not sample.active and sample.keep.all() and (sample.weight == 1).all()


def write_by_cutoff(table: pd.DataFrame, path: Path) -> None:
    """As `churn features` writes it: one row group per cutoff."""
    with pq.ParquetWriter(path, pa.Schema.from_pandas(table, preserve_index=False)) as writer:
        for _, part in table.groupby("cutoff", sort=True):
            writer.write_table(pa.Table.from_pandas(part, preserve_index=False))


def test_reader_samples_with_weights_and_narrows_features_to_float32(tmp_path: Path) -> None:
    table, _ = known_signal_table(customers=3000, cutoffs=6, seed=4)
    path = tmp_path / "train.parquet"
    write_by_cutoff(table, path)
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,signup_date\nC00001,2023-01-01\n")
    cfg = parse_config({"data": {"tables": {"customers": {"path": str(customers)}}}, "seed": SEED,
                        "model": {"sampling": {"max_training_rows": 10_000}}})
    read, sample = read_training_table(path, cfg)
    assert sample.active and len(read) == sample.kept and sample.rows == len(table)
    assert read["days_since_last_transaction"].dtype == np.float32 and read["future_value"].dtype == np.float64
    assert WEIGHT_COLUMN in read.columns and WEIGHT_COLUMN not in model_feature_columns(read)
    assert REFIT_WEIGHT_COLUMN not in model_feature_columns(read)
    assert np.array_equal(read[REFIT_WEIGHT_COLUMN].to_numpy(), sample.refit_weight[sample.keep])
    kept = table[sample.keep]  # the rows the sample chose, in file order, with their weights
    assert read["customer_id"].tolist() == kept["customer_id"].tolist()
    assert (read["cutoff"].to_numpy() == kept["cutoff"].to_numpy()).all()
    assert np.array_equal(read[WEIGHT_COLUMN].to_numpy(), sample.weight[sample.keep])
    assert np.allclose(read["transaction_amount_90d"].to_numpy(), kept["transaction_amount_90d"].to_numpy(), rtol=1e-6)
    cfg_off = parse_config({"data": {"tables": {"customers": {"path": str(customers)}}}, "seed": SEED})
    whole, off = read_training_table(path, cfg_off)  # the default limit is far above this table
    assert not off.active and len(whole) == len(table) and WEIGHT_COLUMN not in whole.columns


def test_a_sampled_table_gives_calibrated_probabilities_close_to_the_full_tables() -> None:
    table, _ = known_signal_table(customers=6000, cutoffs=8, seed=6)
    settings = ModelSettings(tuning=TuningSettings(enabled=False), cross_validate_below_rows=0,
                             booster=BoosterSettings(learning_rate=0.1, num_leaves=7, max_rounds=150,
                                                     early_stopping_rounds=20),
                             value_booster=BoosterSettings(max_rounds=50))
    split = split_rows(table, 90, settings.calibration_share, settings.single_cutoff_test_share, SEED)
    sample = sample_non_churners(table, split, 20_000, settings.calibration_share, SEED)
    assert sample.rate < 0.5  # a strong sample: most non-churner fit rows are left out
    sampled = table[sample.keep].assign(**{WEIGHT_COLUMN: sample.weight[sample.keep],
                                           REFIT_WEIGHT_COLUMN: sample.refit_weight[sample.keep]}).reset_index(drop=True)
    full = train_models(table, settings, EconomicsSettings(), 90, SEED)
    thin = train_models(sampled, settings, EconomicsSettings(), 90, SEED)
    assert thin.split.test.sum() == full.split.test.sum()  # the same, whole test cutoff
    rate = full.test["churned"].mean()
    for result in (full, thin):
        assert abs(result.test["churn_probability"].mean() - rate) < 0.15 * rate  # probabilities of the population
    assert thin.metrics["churn.roc_auc"] > full.metrics["churn.roc_auc"] - 0.02
    assert thin.metrics["churn.expected_calibration_error"] < 0.02
    # the served (refitted) model fits a sample of the test cutoff too, and stays calibrated on it
    assert thin.info["refit_rows"] + thin.info["refit_calibration_rows"] == int((sample.refit_weight > 0).sum())
    served = thin.final_churn.predict(thin.test.merge(table, on=["customer_id", "cutoff"], suffixes=("_t", "")))
    assert abs(served.mean() - rate) < 0.15 * rate

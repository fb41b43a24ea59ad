"""The uplift sub-package: training rows, metrics and meta-learners on planted effects (no mocks)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from features.settings import FeatureSettings, LabelSettings
from models.data import infer_schema
from features.build import build_training_table, feature_columns
from models.uplift.data import (build_uplift_table, contact_assignments, control_group_problem,
                                iter_training_and_uplift_tables, uplift_table)
from models.uplift.learners import UpliftModel, fit_uplift
from models.uplift.metrics import bootstrap_metrics, point_metrics, uplift_at, uplift_curves
from models.uplift.settings import UpliftSettings
from models.uplift.training import ranking_gate, train_uplift
from tests.features.factories import random_tables


def planted(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    """Randomised rows where contacts cut churn from 30% to 10% for x > 0.5 and do nothing below."""
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    noise = rng.random(n)
    treatment = (rng.random(n) < 0.5).astype(np.int64)
    p = np.where((treatment == 1) & (x > 0.5), 0.10, 0.30)
    return pd.DataFrame({"customer_id": pd.Series([f"C{i:05d}" for i in range(n)], dtype="str"),
                         "cutoff": pd.Timestamp("2024-01-01"), "x": x, "noise": noise,
                         "treatment": treatment, "churned": (rng.random(n) < p).astype(np.int64)})


def test_uplift_at_k_and_qini_by_hand() -> None:
    # 4 rows: the two ranked first are a treated stayer and a control churner (uplift 1 in the top half)
    uplift = np.array([0.9, 0.8, 0.1, 0.0])
    treatment = np.array([1, 0, 1, 0])
    churned = np.array([0, 1, 1, 0])
    assert uplift_at(uplift, treatment, churned, 0.5) == pytest.approx(1.0)
    assert uplift_at(uplift, treatment, churned, 1.0) == pytest.approx(0.0)
    curves = uplift_curves(uplift, treatment, churned, points=4)
    assert curves["qini"].iloc[2] == pytest.approx(1.0)  # top half: 1 control churner x 1/1 - 0 treated churners
    reversed_order = point_metrics(-uplift, treatment, churned, (0.5,))
    assert point_metrics(uplift, treatment, churned, (0.5,))["qini"] > reversed_order["qini"]


@pytest.mark.parametrize("learner", ["t_learner", "x_learner"])
def test_learners_find_the_planted_persuadables(learner: str) -> None:
    rows = planted()
    settings = UpliftSettings()
    schema = infer_schema(rows, ["x", "noise"])
    model = fit_uplift(rows, schema, learner, settings.booster, seed=1)
    test = planted(seed=1)
    predicted = model.predict(test)
    high = test["x"].to_numpy() > 0.5
    # the persuadables rank first (early-stopped boosting on a noisy outcome shrinks the gap towards 0)
    assert predicted[high].mean() - predicted[~high].mean() > 0.025
    assert predicted[high].mean() > 0.05
    figures = bootstrap_metrics(predicted, test["treatment"].to_numpy(), test["churned"].to_numpy(), (0.3,), 50, 0)
    assert figures["qini"]["low"] > 0  # better than random targeting beyond the sampling noise
    assert figures["qini"]["low"] <= figures["qini"]["value"] <= figures["qini"]["high"]


def test_model_saves_and_loads_to_the_same_predictions(tmp_path) -> None:
    rows = planted(2000)
    model = fit_uplift(rows, infer_schema(rows, ["x", "noise"]), "x_learner", UpliftSettings().booster, seed=1)
    model.save(tmp_path / "bundle")
    again = UpliftModel.load(tmp_path / "bundle")
    assert np.array_equal(again.predict(rows), model.predict(rows))


def test_training_picks_a_learner_by_qini_and_never_by_the_truth() -> None:
    rows = pd.concat([planted(3000, seed).assign(cutoff=pd.Timestamp(f"2023-{month:02d}-01"),
                                                  customer_id=lambda f, s=seed: f["customer_id"] + f"-{s}")
                      for seed, month in zip(range(8), range(1, 9))], ignore_index=True)
    settings = UpliftSettings(test_cutoffs=2, bootstrap=30)
    truth = np.where(rows["x"] > 0.5, 0.2, 0.0)
    first = train_uplift(rows, settings, 31, seed=3, true_uplift=truth)
    misleading = train_uplift(rows, settings, 31, seed=3, true_uplift=-truth)
    assert first.selected == misleading.selected  # the truth is reported, never used to choose
    assert first.info["split"] == "out_of_time" and first.info["test_cutoffs"] == ["2023-07-01", "2023-08-01"]
    assert first.metrics[first.selected]["true_uplift_spearman"]["value"] > 0.5
    # chosen on validation cutoffs inside the training rows (the latest two before the held-out ones' gap)
    assert first.selected == max(settings.learners, key=lambda name: first.info["validation_qini"][name])
    assert first.info["rows_validation"] == 2 * 3000 and "validation rows inside the training rows" in \
        first.info["selection"]
    # a planted effect this clear earns the uplift ranking, and the model carries its evidence
    assert first.final.evidence == first.metrics[first.selected]["qini"] and first.info["ranking_gate"] == "passed"
    assert first.info["oracle_qini"]["low"] > 0


def test_the_held_out_rows_do_not_choose_the_learner() -> None:
    """The ranking gate reads the chosen learner's held-out Qini interval, so the held-out rows must not also
    choose it: scrambling their outcomes changes every held-out figure and neither the choice nor the
    validation figures it was made by; with one learner there is nothing to choose."""
    rows = pd.concat([planted(2000, seed).assign(cutoff=pd.Timestamp(f"2023-{month:02d}-01"),
                                                  customer_id=lambda f, s=seed: f["customer_id"] + f"-{s}")
                      for seed, month in zip(range(40, 48), range(1, 9))], ignore_index=True)
    settings = UpliftSettings(test_cutoffs=2, bootstrap=20)
    first = train_uplift(rows, settings, 31, seed=3)
    held = rows["cutoff"].isin(pd.to_datetime(first.info["test_cutoffs"])).to_numpy()
    scrambled = rows.copy()
    scrambled.loc[held, "churned"] = np.random.default_rng(1).permutation(rows.loc[held, "churned"].to_numpy())
    again = train_uplift(scrambled, settings, 31, seed=3)
    assert again.selected == first.selected and again.info["validation_qini"] == first.info["validation_qini"]
    assert again.metrics[first.selected]["qini"] != first.metrics[first.selected]["qini"]
    alone = train_uplift(rows, settings.model_copy(update={"learners": ("x_learner",)}), 31, seed=3)
    assert alone.selected == "x_learner" and alone.info["validation_qini"] == {}
    assert alone.info["selection"] == "x_learner is the only configured learner (uplift.learners)"


def test_without_an_effect_the_uplift_ranking_is_not_trusted(tmp_path) -> None:
    """Contacts that change nothing: the held-out Qini interval straddles 0, so the gate says why it fails."""
    rows = pd.concat([planted(2000, seed).assign(cutoff=pd.Timestamp(f"2023-{month:02d}-01"),
                                                  customer_id=lambda f, s=seed: f["customer_id"] + f"-{s}")
                      for seed, month in zip(range(20, 26), range(1, 7))], ignore_index=True)
    rows["churned"] = (np.random.default_rng(9).random(len(rows)) < 0.3).astype(np.int64)  # no effect anywhere
    result = train_uplift(rows, UpliftSettings(test_cutoffs=2, bootstrap=30), 31, seed=3)
    qini = result.final.evidence
    assert qini["low"] < 0 < qini["high"]
    assert result.info["ranking_gate"].startswith(f"its held-out Qini {qini['value']:.4f}")
    assert "uplift.min_qini_lower_bound 0.0" in result.info["ranking_gate"]
    assert ranking_gate(qini, None) == "" and ranking_gate(qini, qini["low"] - 1) == ""
    assert ranking_gate({}, 0.0).startswith("the uplift model carries no held-out Qini interval")
    result.final.save(tmp_path / "bundle")
    assert UpliftModel.load(tmp_path / "bundle").evidence == qini  # travels with the registered model


def test_too_few_control_rows_are_refused_with_the_key() -> None:
    rows = planted(400).assign(treatment=lambda f: np.where(np.arange(len(f)) < 10, 0, 1))
    with pytest.raises(ValueError, match="uplift.min_control_rows"):
        train_uplift(rows, UpliftSettings(), 31, seed=0)


def test_no_control_group_is_named() -> None:
    tables = random_tables(1)
    assert control_group_problem(None) is not None
    assert "no randomised control group" in control_group_problem(tables.contacts.assign(treatment=1))
    assert "no treatment column" in control_group_problem(tables.contacts.drop(columns="treatment"))
    assert control_group_problem(tables.contacts) is None


def test_one_pass_of_training_and_uplift_rows_equals_the_two_passes_with_the_churn_tables_features() -> None:
    """`churn features` builds both tables in one pass over their cutoffs (each shared cutoff's features computed
    once): the same frames as the two passes. An uplift row holds the churn table's features of its customer and
    cutoff, the BTYD horizon features at `labels.horizon_days` too (30 here, not the default 90)."""
    tables = random_tables(5, n_customers=300, transactions=12_000, contacts=2_000)
    features, labels, settings = FeatureSettings(), LabelSettings(horizon_days=30), UpliftSettings()
    train = build_training_table(tables, features, labels)
    uplift, counts = build_uplift_table(tables, features, labels, settings)
    pieces = list(iter_training_and_uplift_tables(tables, features, labels, settings))
    kinds = {cutoff: {kind for kind, frame, _ in pieces if len(frame) and frame["cutoff"].iloc[0] == cutoff}
             for cutoff in train["cutoff"].unique()}
    assert any(found == {"train", "uplift"} for found in kinds.values())  # shared cutoffs exist
    pd.testing.assert_frame_equal(pd.concat([f for k, f, _ in pieces if k == "train"], ignore_index=True), train)
    one_pass, one_pass_counts = uplift_table((f, c) for k, f, c in pieces if k == "uplift")
    pd.testing.assert_frame_equal(one_pass, uplift)
    assert one_pass_counts == counts
    both = uplift.merge(train, on=["customer_id", "cutoff"], suffixes=("", "_churn_table"))
    assert len(both) > 50
    for column in feature_columns(train):
        pd.testing.assert_series_equal(both[column], both[f"{column}_churn_table"], check_names=False)
    assert both["btyd_expected_purchases_horizon"].notna().any()


def test_rows_are_first_contacts_in_the_window_with_features_from_before_the_cutoff() -> None:
    tables = random_tables(4, n_customers=60, contacts=300)
    cutoff = pd.Timestamp("2024-03-01")
    assigned, _ = contact_assignments(tables.contacts, cutoff, 31)
    inside = tables.contacts[(tables.contacts["contacted_at"] >= cutoff)
                             & (tables.contacts["contacted_at"] < cutoff + pd.Timedelta(days=31))]
    assert set(assigned["customer_id"]) == set(inside["customer_id"].astype(str))
    first = inside.sort_values("contacted_at").drop_duplicates("customer_id")
    assert dict(zip(first["customer_id"], first["treatment"])) == dict(zip(assigned["customer_id"], assigned["treatment"]))

    labels = LabelSettings()
    table, _ = build_uplift_table(tables, FeatureSettings(), labels, UpliftSettings(), cutoffs=[cutoff])
    # the same features whether or not anything after the cutoff exists (except what defines the rows)
    past = dataclasses.replace(tables, transactions=tables.transactions[tables.transactions["timestamp"] < cutoff],
                               complaints=tables.complaints[tables.complaints["opened_at"] < cutoff],
                               surveys=tables.surveys[tables.surveys["answered_at"] < cutoff],
                               as_of=tables.as_of)
    again, _ = build_uplift_table(past, FeatureSettings(), labels, UpliftSettings(), cutoffs=[cutoff])
    features = [c for c in table.columns if c not in ("churned", "future_value")]
    pd.testing.assert_frame_equal(table[features], again[features])

"""Training and scoring tables: cutoffs, one code path, partitions, and the three kinds of data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import (LABEL_COLUMNS, build_features, build_scoring_table, build_training_table, feature_columns,
                            population_breakpoints, population_btyd_fit,
                            training_cutoffs)
from features.catalogue import catalogue
from features.contract import Tables
from features.settings import CutoffSettings, FeatureSettings, LabelSettings
from tests.features.factories import AS_OF, random_tables, subset

FEATURES = FeatureSettings(static_features=("segment", "products_held"))
LABELS = LabelSettings(horizon_days=60, cutoffs=CutoffSettings(count=4, spacing_months=2))


def test_training_cutoffs_are_month_starts_with_a_complete_label_window() -> None:
    tables = random_tables(0)  # events from 2023-01-01, as_of 2024-12-01 (exclusive)
    assert AS_OF == pd.Timestamp("2024-12-01")
    cutoffs = training_cutoffs(tables, LabelSettings(horizon_days=90, cutoffs=CutoffSettings(count=3)))
    # the latest is the last month start with cutoff + 90 days <= as_of: 2024-09-01 (+90 = 2024-11-30)
    assert cutoffs == [pd.Timestamp("2024-07-01"), pd.Timestamp("2024-08-01"), pd.Timestamp("2024-09-01")]
    exact = Tables(tables.customers, tables.transactions, as_of=pd.Timestamp("2024-11-30"))
    assert training_cutoffs(exact, LabelSettings(horizon_days=90, cutoffs=CutoffSettings(count=1))) == [
        pd.Timestamp("2024-09-01")]
    spaced = training_cutoffs(tables, LabelSettings(horizon_days=30, cutoffs=CutoffSettings(count=4, spacing_months=3)))
    # 2024-11-01 + 30 days = 2024-12-01 = as_of: the window just fits
    assert spaced == [pd.Timestamp(d) for d in ("2024-02-01", "2024-05-01", "2024-08-01", "2024-11-01")]


def test_training_cutoffs_stop_at_the_earliest_data() -> None:
    tables = random_tables(0)
    many = training_cutoffs(tables, LabelSettings(horizon_days=90, cutoffs=CutoffSettings(count=60)))
    assert many[0] == pd.Timestamp("2023-02-01")  # events start on 2023-01-01: a cutoff needs a past
    assert len(many) == 20 and all(c.day == 1 for c in many)
    snapshot = Tables(tables.customers, as_of=None)  # as_of then comes from the customers' dates
    cutoffs = training_cutoffs(snapshot, LabelSettings(horizon_days=90, cutoffs=CutoffSettings(count=120)))
    first_signup = tables.customers["signup_date"].min()
    assert cutoffs[0] > first_signup and cutoffs[0] - pd.DateOffset(months=1) <= first_signup
    latest_date = max(tables.customers["signup_date"].max(), tables.customers["closed_date"].max())
    assert cutoffs[-1] + pd.Timedelta(days=90) <= latest_date.normalize() + pd.Timedelta(days=1)


def test_scoring_features_equal_training_features_at_the_same_cutoff() -> None:
    tables = random_tables(2)
    training = build_training_table(tables, FEATURES, LABELS)
    for cutoff in sorted(training["cutoff"].unique())[-2:]:
        scoring = build_scoring_table(tables, FEATURES, LABELS, as_of=pd.Timestamp(cutoff))
        rows = training[training["cutoff"] == cutoff].drop(columns=[c for c in LABEL_COLUMNS if c in training]).reset_index(drop=True)
        pd.testing.assert_frame_equal(scoring, rows, check_exact=True)
    default = build_scoring_table(tables, FEATURES, LABELS)
    assert (default["cutoff"] == tables.as_of).all()
    assert "churned" not in default.columns and "future_value" not in default.columns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_building_on_a_partition_of_the_customers_gives_the_same_rows(seed: int) -> None:
    tables = random_tables(seed, n_customers=60, transactions=3_000, complaints=300, surveys=200)
    cutoff = pd.Timestamp("2024-05-01")
    whole = build_features(tables, cutoff, FEATURES)
    breakpoints = population_breakpoints(tables, cutoff, FEATURES)
    btyd = population_btyd_fit(tables, cutoff, FEATURES)
    rng = np.random.default_rng(seed)
    ids = tables.customers["customer_id"].to_numpy()
    part_of = rng.integers(0, 3, len(ids))
    parts = [build_features(subset(tables, set(ids[part_of == k])), cutoff, FEATURES, rfm_breakpoints=breakpoints,
                           btyd_fit=btyd)
             for k in range(3)]
    # the static text attribute's levels are those present in each part; compare its values as text
    joined = pd.concat([p.assign(segment=p["segment"].astype("str")) for p in parts], ignore_index=True)
    joined = joined.sort_values("customer_id", ignore_index=True)
    expected = whole.assign(segment=whole["segment"].astype("str"))
    pd.testing.assert_frame_equal(joined, expected, check_exact=True)
    for part in parts:
        assert list(part["segment"].cat.categories) == sorted(part["segment"].dropna().unique())


def test_without_shared_breakpoints_only_the_population_relative_features_may_differ() -> None:
    tables = random_tables(4, n_customers=60, transactions=3_000)
    cutoff = pd.Timestamp("2024-05-01")
    whole = build_features(tables, cutoff, FEATURES).set_index("customer_id")
    ids = tables.customers["customer_id"].to_numpy()
    half = build_features(subset(tables, set(ids[: len(ids) // 2])), cutoff, FEATURES).set_index("customer_id")
    relative = [i.name for i in catalogue(FEATURES) if i.population_relative]
    same = [c for c in half.columns if c not in relative and c != "segment"]
    pd.testing.assert_frame_equal(half[same], whole.loc[half.index, same], check_exact=True)


def _check_training_table(table: pd.DataFrame) -> None:
    assert list(table.columns[:2]) == ["customer_id", "cutoff"]
    labels = [c for c in LABEL_COLUMNS if c in table.columns]  # days_to_churn only with closure labels
    assert labels[:2] == ["churned", "future_value"] and list(table.columns[-len(labels):]) == labels
    assert not table.duplicated(["customer_id", "cutoff"]).any()
    assert set(table["churned"].unique()) == {0, 1}
    assert table["churned"].dtype == np.int64
    assert table["cutoff"].dtype == "datetime64[us]"
    features = feature_columns(table)
    assert features and "churned" not in features and "customer_id" not in features
    for name in features:
        column = table[name]
        assert isinstance(column.dtype, pd.CategoricalDtype) or pd.api.types.is_numeric_dtype(column), name
        assert not np.isinf(column.to_numpy(dtype=float, na_value=np.nan)).any() if \
            pd.api.types.is_numeric_dtype(column) else True


def test_bank_data_with_every_table_gives_a_training_table() -> None:
    table = build_training_table(random_tables(6, n_customers=80, transactions=4_000), FEATURES, LABELS)
    _check_training_table(table)
    produced = feature_columns(table)
    assert produced == [i.name for i in catalogue(FEATURES)] + ["segment", "products_held"]
    assert table["future_value"].notna().all()


def test_transactions_only_data_with_inactivity_churn_gives_a_training_table() -> None:
    full = random_tables(7, n_customers=80, transactions=2_500)
    customers = full.customers.drop(columns=["closed_date", "segment", "products_held"])
    tables = Tables(customers, full.transactions, as_of=None)
    labels = LabelSettings(definition="inactivity", horizon_days=60, inactivity_lookback_days=90,
                           cutoffs=CutoffSettings(count=6))
    table = build_training_table(tables, FeatureSettings(), labels)
    _check_training_table(table)
    assert "transaction_trend_90d" in table.columns and "open_complaints" not in table.columns
    # every row was active in the 90 days before its cutoff
    assert (table["transaction_count_90d"] > 0).all()


def test_customers_only_snapshot_gives_a_training_table() -> None:
    full = random_tables(8, n_customers=200, transactions=0)
    tables = Tables(full.customers, as_of=None)
    labels = LabelSettings(horizon_days=90, cutoffs=CutoffSettings(count=12))
    table = build_training_table(tables, FEATURES, labels)
    _check_training_table(table)
    assert feature_columns(table) == ["tenure_days", "segment", "products_held"]
    assert table["future_value"].isna().all()  # no transactions: the value is unknown, not 0
    with pytest.raises(ValueError, match="needs a transactions table"):
        build_training_table(tables, FEATURES, labels.model_copy(update={"definition": "inactivity"}))


def test_preparing_from_the_only_reference_frees_each_table_and_gives_the_same_features(monkeypatch) -> None:
    """The score stage hands its tables to `prepare_taking`: each frame must go as soon as its arrays are made
    (their ids and texts are most of the memory at 1M customers), and the features must not change."""
    import gc
    import weakref

    import features.build
    from features.build import prepare, prepare_taking, scoring_table_of, tables_as_of

    def fresh() -> Tables:
        made = random_tables(4)
        return Tables(**{name: getattr(made, name).copy() for name in made.present()}, as_of=made.as_of)

    kept = fresh()
    expected = scoring_table_of(prepare(kept, FEATURES), tables_as_of(kept), FEATURES, LABELS)
    assert all(getattr(kept, name) is not None for name in ("transactions", "complaints", "surveys", "contacts"))
    tables = fresh()
    cutoff = tables_as_of(tables)
    watched = {name: weakref.ref(getattr(tables, name)) for name in ("transactions", "complaints", "surveys", "contacts")}
    alive_at_complaints: list[bool] = []
    complaint_columns = features.build.complaint_columns

    def watching(*args, **kwargs):  # the complaints come after the transactions
        gc.collect()
        alive_at_complaints.append(watched["transactions"]() is not None)
        return complaint_columns(*args, **kwargs)

    monkeypatch.setattr(features.build, "complaint_columns", watching)
    owner = [tables]
    del tables
    prepared = prepare_taking(owner, FEATURES)
    gc.collect()
    assert alive_at_complaints == [False]
    assert owner == []
    assert {name: ref() is None for name, ref in watched.items()} == dict.fromkeys(watched, True)
    pd.testing.assert_frame_equal(scoring_table_of(prepared, cutoff, FEATURES, LABELS), expected, check_exact=True)
    # the caller who kept its reference keeps its tables whole: `prepare` never mutates them
    assert len(kept.transactions) == len(random_tables(4).transactions)

"""Point in time: features see only the past, labels only their window, inputs are never touched."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import (build_features, build_labels, build_scoring_table, build_training_table,
                            eligible_customers, training_cutoffs)
from features.contract import TABLES, Tables
from features.settings import FeatureSettings, LabelSettings
from tests.features.factories import random_tables

FEATURES = FeatureSettings(static_features=("segment", "products_held"), complaint_sentiment=True)
TONE = ("negative_complaints_90d", "mean_complaint_sentiment_90d")  # complaint-text features
PHRASES = ("Terrible service, I am angry and fed up.", "Thanks, the staff were friendly and quick.",
           "My transfer is pending.", "Worst bank ever, unacceptable!", "")
EVENT_TIME = {name: TABLES[name].event_time for name in ("transactions", "complaints", "surveys", "contacts")}
MONTH_STARTS = [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-09-01")]
US = pd.Timedelta(microseconds=1)


def _random_times(rng: np.random.Generator, low: pd.Timestamp, high: pd.Timestamp, n: int,
                  exact: float = 0.2) -> pd.Series:
    """Times in [low, high], a share of them exactly at `low`."""
    span = int((high - low) / US)
    offsets = rng.integers(0, span, n)
    offsets = np.where(rng.random(n) < exact, 0, offsets)
    return pd.Series((low.as_unit("us").value // 1_000 + offsets).astype("datetime64[us]"))


def _new_rows(name: str, frame: pd.DataFrame, times: pd.Series, rng: np.random.Generator,
              ids: np.ndarray) -> pd.DataFrame:
    """Fresh rows for table `name` at the given times, for random customers."""
    n = len(times)
    rows: dict[str, object] = {"customer_id": pd.Series(rng.choice(ids, n), dtype="str"),
                               EVENT_TIME[name]: times.to_numpy()}
    if name == "transactions":
        rows["amount"] = rng.normal(0, 500, n)
    elif name == "complaints":
        rows["complaint_id"] = pd.Series([f"NEW{rng.integers(1e9)}-{i}" for i in range(n)], dtype="str")
        rows["category"] = pd.Series(rng.choice(["fees", "system_lag", "brand_new"], n), dtype="str")
        rows["priority"] = pd.Series(rng.choice(["urgent", "high", "normal", "suggestion"], n), dtype="str")
        rows["channel"] = pd.Series(rng.choice(["phone", "email", "telex"], n), dtype="str")
        rows["first_response_at"] = (times + pd.to_timedelta(rng.integers(0, 100, n), unit="h")).to_numpy()
        rows["resolved_at"] = (times + pd.to_timedelta(rng.integers(100, 900, n), unit="h")).to_numpy()
        rows["satisfaction"] = rng.integers(1, 6, n).astype(float)
        if "text" in frame.columns:
            rows["text"] = pd.Series(rng.choice(PHRASES, n), dtype="str")
    elif name == "surveys":
        rows["nps"] = rng.integers(0, 11, n).astype(float)
        rows["csat"] = rng.integers(1, 6, n).astype(float)
    else:
        rows["action"] = pd.Series(rng.choice(["call", "offer"], n), dtype="str")
        rows["treatment"] = rng.integers(0, 2, n).astype(float)
    return pd.DataFrame(rows)[list(frame.columns)].astype(frame.dtypes.to_dict())


def _mutate_events(name: str, frame: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp, inside,
                   rng: np.random.Generator, ids: np.ndarray, drop_share: float, add: int) -> pd.DataFrame:
    """Drop, change and add rows whose event time satisfies `inside` (a mask function)."""
    time_col = EVENT_TIME[name]
    target = inside(frame[time_col])
    keep = ~(target & (rng.random(len(frame)) < drop_share))
    frame = frame[keep].reset_index(drop=True)
    target = inside(frame[time_col]).to_numpy()
    changed = frame.copy()
    k = int(target.sum())
    if k:
        moved = _random_times(rng, lo, hi, k)
        changed.loc[target, time_col] = moved.to_numpy()
        if name == "transactions":
            changed.loc[target, "amount"] = rng.normal(0, 1_000, k)
        elif name == "complaints":
            changed.loc[target, "category"] = rng.choice(["fees", "brand_new"], k)
            changed.loc[target, "resolved_at"] = (moved + pd.Timedelta(hours=5)).to_numpy()
            changed.loc[target, "first_response_at"] = (moved + pd.Timedelta(hours=1)).to_numpy()
            if "text" in changed.columns:
                changed.loc[target, "text"] = rng.choice(PHRASES, k)
        elif name == "surveys":
            changed.loc[target, "nps"] = rng.integers(0, 11, k).astype(float)
    new = _new_rows(name, frame, _random_times(rng, lo, hi, add), rng, ids)
    return pd.concat([changed, new], ignore_index=True) if add else changed


def mutate_after(tables: Tables, cutoff: pd.Timestamp, rng: np.random.Generator, drop_share: float,
                 add: int) -> Tables:
    """Change everything a feature at `cutoff` must not see.

    Events at or after the cutoff are dropped, changed (values and times, staying at or after
    it) and added; complaints opened before it get new later milestones (reply, resolution,
    satisfaction); closed_date values after the cutoff change (staying after it, or empty).
    """
    ids = tables.customers["customer_id"].to_numpy()
    end = cutoff + pd.Timedelta(days=500)
    frames = {name: _mutate_events(name, getattr(tables, name), cutoff, end, lambda t: t >= cutoff, rng, ids,
                                   drop_share, add)
              for name in EVENT_TIME}
    complaints = frames["complaints"]
    open_then = (complaints["opened_at"] < cutoff) & ~(complaints["resolved_at"] < cutoff)
    k = int(open_then.sum())
    resolved = _random_times(rng, cutoff, end, k).where(rng.random(k) < 0.7)
    complaints.loc[open_then, "resolved_at"] = resolved.to_numpy()
    complaints.loc[open_then, "satisfaction"] = np.where(rng.random(k) < 0.5, rng.integers(1, 6, k), np.nan)
    unanswered = (complaints["opened_at"] < cutoff) & ~(complaints["first_response_at"] < cutoff)
    k = int(unanswered.sum())
    complaints.loc[unanswered, "first_response_at"] = _random_times(rng, cutoff, end, k).where(
        rng.random(k) < 0.7).to_numpy()
    customers = tables.customers.copy()
    later = ~(customers["closed_date"] <= cutoff)
    k = int(later.sum())
    customers.loc[later, "closed_date"] = _random_times(rng, cutoff + US, end, k, exact=0.3).where(
        rng.random(k) < 0.6).to_numpy()
    return Tables(customers, frames["transactions"], complaints, frames["surveys"], frames["contacts"],
                  as_of=tables.as_of)


def _cutoff(tables: Tables, choice: int, which: float) -> pd.Timestamp:
    """A month start, or exactly the time of an existing event (the sharpest edge)."""
    if choice < len(MONTH_STARTS):
        return MONTH_STARTS[choice]
    name = list(EVENT_TIME)[choice - len(MONTH_STARTS)]
    times = getattr(tables, name)[EVENT_TIME[name]].sort_values().reset_index(drop=True)
    middle = times[(times > pd.Timestamp("2023-09-01")) & (times < pd.Timestamp("2024-09-01"))].reset_index(drop=True)
    return pd.Timestamp(middle.iloc[int(which * (len(middle) - 1))])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), mutation_seed=st.integers(0, 2**32 - 1),
       choice=st.integers(0, len(MONTH_STARTS) + len(EVENT_TIME) - 1), which=st.floats(0, 1),
       drop_share=st.floats(0, 1), add=st.integers(0, 40))
def test_changes_at_or_after_the_cutoff_leave_every_feature_unchanged(seed, mutation_seed, choice, which,
                                                                       drop_share, add) -> None:
    tables = random_tables(seed, n_customers=30, transactions=600, complaints=120, surveys=80, contacts=60)
    texts = np.random.default_rng(seed).choice(PHRASES, len(tables.complaints))
    tables = dataclasses.replace(tables, complaints=tables.complaints.assign(text=pd.Series(texts, dtype="str")))
    cutoff = _cutoff(tables, choice, which)
    before = build_features(tables, cutoff, FEATURES)
    changed = mutate_after(tables, cutoff, np.random.default_rng(mutation_seed), drop_share, add)
    after = build_features(changed, cutoff, FEATURES)
    assert len(before) > 0 and set(TONE) <= set(before.columns)
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_an_event_exactly_at_the_cutoff_is_not_seen() -> None:
    tables = random_tables(3, n_customers=10, transactions=200)
    cutoff = pd.Timestamp("2024-05-01")
    customer = build_features(tables, cutoff, FEATURES)["customer_id"].iloc[0]
    extra = pd.DataFrame({"customer_id": pd.Series([customer], dtype="str"),
                          "timestamp": pd.Series([cutoff], dtype="datetime64[us]"), "amount": [1e6]})
    at = Tables(tables.customers, pd.concat([tables.transactions, extra], ignore_index=True), tables.complaints,
                tables.surveys, tables.contacts, as_of=tables.as_of)
    just_before = Tables(tables.customers, pd.concat([tables.transactions, extra.assign(
        timestamp=extra["timestamp"] - US)], ignore_index=True), tables.complaints, tables.surveys, tables.contacts,
        as_of=tables.as_of)
    base = build_features(tables, cutoff, FEATURES)
    pd.testing.assert_frame_equal(base, build_features(at, cutoff, FEATURES), check_exact=True)
    seen = build_features(just_before, cutoff, FEATURES).set_index("customer_id").loc[customer]
    assert seen["transaction_amount_30d"] > 999_000
    assert seen["days_since_last_transaction"] == 0


def mutate_outside_window(tables: Tables, cutoff: pd.Timestamp, horizon_days: int, rng: np.random.Generator,
                          drop_share: float, add: int) -> Tables:
    """Change everything a label for [cutoff, cutoff + horizon) must not see.

    Transaction amounts before the cutoff change (their times stay before it), transactions
    from the window end on change (staying there), complaints, surveys and contacts change
    anywhere, and closed_date values from the window end on move elsewhere at or after the
    window end (or empty). Closures before the window end are left alone: they decide the
    population and the label.
    """
    ids = tables.customers["customer_id"].to_numpy()
    end = cutoff + pd.Timedelta(days=horizon_days)
    far = end + pd.Timedelta(days=400)
    old = cutoff - pd.Timedelta(days=400)
    tx = _mutate_events("transactions", tables.transactions, end, far, lambda t: t >= end, rng, ids,
                        drop_share, add)
    # the past: change the amounts of transactions before the cutoff (the inactivity
    # population only needs "some transaction in the look-back", which dropping could change)
    past = (tx["timestamp"] < cutoff).to_numpy()
    tx.loc[past, "amount"] = rng.normal(0, 1_000, int(past.sum()))
    others = {name: _mutate_events(name, getattr(tables, name), old, far, lambda t: t >= old, rng, ids,
                                   drop_share, add) for name in ("complaints", "surveys", "contacts")}
    customers = tables.customers.copy()
    after = customers["closed_date"] >= end
    k = int(after.sum())
    customers.loc[after, "closed_date"] = _random_times(rng, end, far, k).where(rng.random(k) < 0.5).to_numpy()
    return Tables(customers, tx, others["complaints"], others["surveys"], others["contacts"], as_of=tables.as_of)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), mutation_seed=st.integers(0, 2**32 - 1),
       definition=st.sampled_from(["closure", "inactivity"]), cutoff=st.sampled_from(MONTH_STARTS),
       drop_share=st.floats(0, 1), add=st.integers(0, 40))
def test_labels_depend_only_on_their_window(seed, mutation_seed, definition, cutoff, drop_share, add) -> None:
    labels = LabelSettings(definition=definition, horizon_days=60)
    tables = random_tables(seed, n_customers=30, transactions=600, complaints=60, surveys=40, contacts=30)
    before = build_labels(tables, cutoff, labels)
    changed = mutate_outside_window(tables, cutoff, labels.horizon_days, np.random.default_rng(mutation_seed),
                                    drop_share, add)
    after = build_labels(changed, cutoff, labels)
    assert len(before) > 0
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_labels_follow_their_definitions_on_a_worked_example() -> None:
    day = pd.Timestamp("2024-03-01")
    customers = pd.DataFrame({
        "customer_id": pd.Series(["stays", "closes", "closes_later", "quiet", "closed_at_cutoff", "new"], dtype="str"),
        "signup_date": pd.Series([day - pd.Timedelta(days=300)] * 5 + [day], dtype="datetime64[us]"),
        "closed_date": pd.Series([None, day + pd.Timedelta(days=10), day + pd.Timedelta(days=91), None, day, None],
                                 dtype="datetime64[us]"),
    })
    tx = pd.DataFrame({
        "customer_id": pd.Series(["stays", "stays", "stays", "closes", "closes_later", "quiet", "quiet", "new"],
                                 dtype="str"),
        "timestamp": pd.Series([day - pd.Timedelta(days=5), day + pd.Timedelta(days=89), day + pd.Timedelta(days=90),
                                day - pd.Timedelta(days=1), day + pd.Timedelta(days=3), day - pd.Timedelta(days=100),
                                day, day + pd.Timedelta(days=1)], dtype="datetime64[us]"),
        "amount": [10.0, 25.0, 40.0, 7.0, 5.0, 3.0, 99.0, 1.0],
    })
    tables = Tables(customers, tx, as_of=day + pd.Timedelta(days=200))
    closure = build_labels(tables, day, LabelSettings(horizon_days=90)).set_index("customer_id")
    # closed exactly at the cutoff: still a customer at it, and churned in its window; signed up at it: not yet
    assert list(closure.index) == ["closed_at_cutoff", "closes", "closes_later", "quiet", "stays"]
    assert closure["churned"].to_dict() == {"closed_at_cutoff": 1, "closes": 1, "closes_later": 0, "quiet": 0,
                                            "stays": 0}
    # the window is [cutoff, cutoff + 90 days): the transaction at the cutoff counts, the day-90 one does not
    assert closure["future_value"].to_dict() == {"closed_at_cutoff": 0.0, "closes": 0.0, "closes_later": 5.0,
                                                 "quiet": 99.0, "stays": 25.0}
    inactive = build_labels(tables, day, LabelSettings(definition="inactivity", horizon_days=90,
                                                       inactivity_lookback_days=30)).set_index("customer_id")
    # "quiet" last transacted 100 days ago (and exactly at the cutoff, which is not before it): not in the population
    assert inactive["churned"].to_dict() == {"closes": 1, "stays": 0}
    assert inactive["churned"].dtype == np.int64


def _deep_copy(tables: Tables) -> Tables:
    return Tables(*(copy.deepcopy(getattr(tables, n)) for n in TABLES), as_of=tables.as_of)


def test_builders_never_mutate_their_inputs() -> None:
    tables = random_tables(11)
    snapshot = _deep_copy(tables)
    labels = LabelSettings(horizon_days=60, cutoffs={"count": 3, "spacing_months": 2})
    cutoff = pd.Timestamp("2024-04-01")
    build_features(tables, cutoff, FEATURES)
    build_labels(tables, cutoff, labels)
    eligible_customers(tables, cutoff, labels.model_copy(update={"definition": "inactivity"}))
    training_cutoffs(tables, labels)
    build_training_table(tables, FEATURES, labels)
    build_scoring_table(tables, FEATURES, labels)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(tables, name), getattr(snapshot, name), check_exact=True)
        assert getattr(tables, name) is not None
    assert tables.as_of == snapshot.as_of


def test_btyd_features_see_only_their_history_window() -> None:
    """With `features.btyd_history_days` the BTYD columns are those of the purchases in [cutoff - W, cutoff):
    dropping every older transaction changes none of them (the fits included), so they mean the same at
    every cutoff however far back the data goes; over the whole history (empty) they change."""
    tables = random_tables(11, n_customers=120, transactions=6_000)
    cutoff = pd.Timestamp("2024-06-01")
    window = 120
    recent = tables.transactions[tables.transactions["timestamp"] >= cutoff - pd.Timedelta(days=window)]
    assert 0 < len(recent) < 0.7 * len(tables.transactions)
    shorter = dataclasses.replace(tables, transactions=recent.reset_index(drop=True))
    btyd = [c for c in build_features(tables, cutoff, FEATURES).columns if c.startswith("btyd_")]
    assert len(btyd) == 8
    windowed = FeatureSettings(static_features=FEATURES.static_features, btyd_history_days=window)
    whole = FeatureSettings(static_features=FEATURES.static_features, btyd_history_days=None)
    full, cut = build_features(tables, cutoff, windowed), build_features(shorter, cutoff, windowed)
    assert full["btyd_age_days"].max() <= window and full["btyd_probability_alive"].notna().sum() > 20
    pd.testing.assert_frame_equal(full[btyd], cut[btyd], check_exact=True)
    differs = build_features(tables, cutoff, whole)[btyd].compare(build_features(shorter, cutoff, whole)[btyd])
    assert len(differs) > 20

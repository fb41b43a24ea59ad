"""Each feature family against a plain per-customer pandas reference on small random tables."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.catalogue import LIFECYCLE_STAGES, RFM_SEGMENTS
from features.contract import Tables
from features.settings import FeatureSettings, LifecycleSettings
from features.static import categorical_values, numeric_values
from tests.features.factories import random_tables

SETTINGS = FeatureSettings(windows_days=(30, 90, 180, 365), complaint_categories=("fees", "system_lag"),
                           top_complaint_categories=2, complaint_channels=("phone", "email"),
                           static_features=("segment", "products_held"))
DAY = pd.Timedelta(days=1)
CUTOFFS = [pd.Timestamp("2024-06-01"), pd.Timestamp("2024-02-17 13:45:10.250000")]


@pytest.fixture(scope="module", params=[0, 1])
def case(request) -> tuple[Tables, pd.Timestamp, pd.DataFrame]:
    tables = random_tables(request.param, n_customers=40, transactions=2_500, complaints=300, surveys=200)
    cutoff = CUTOFFS[request.param]
    return tables, cutoff, build_features(tables, cutoff, SETTINGS).set_index("customer_id")


def _days(delta: pd.Series) -> pd.Series:
    """Whole days since an event (the "days since" features)."""
    return np.floor(delta / DAY)


def _back(delta: pd.Series) -> pd.Series:
    """Which day before the cutoff an event falls on: "in the last w days" is _back < w, the
    half-open window [cutoff - w days, cutoff) (an event exactly w days back is inside)."""
    return np.ceil(delta / DAY) - 1


def test_population_is_signed_up_and_not_closed_at_the_cutoff(case) -> None:
    tables, cutoff, features = case
    c = tables.customers
    expected = c[(c["signup_date"] < cutoff) & ~(c["closed_date"] < cutoff)]["customer_id"]
    assert list(features.index) == sorted(expected)
    assert (features["cutoff"] == cutoff).all()


def test_transaction_windows_recency_and_activity(case) -> None:
    tables, cutoff, features = case
    tx = tables.transactions[tables.transactions["timestamp"] < cutoff]
    for customer, row in features.iterrows():
        mine = tx[tx["customer_id"] == customer]
        age = cutoff - mine["timestamp"]
        for w in SETTINGS.windows_days:
            inside = mine[age <= pd.Timedelta(days=w)]
            assert row[f"transaction_count_{w}d"] == len(inside)
            assert row[f"transaction_amount_{w}d"] == pytest.approx(inside["amount"].sum(), abs=1e-9)
            if len(inside):
                assert row[f"average_transaction_amount_{w}d"] == pytest.approx(inside["amount"].mean())
            else:
                assert np.isnan(row[f"average_transaction_amount_{w}d"])
        if len(mine):
            assert row["days_since_last_transaction"] == np.floor((cutoff - mine["timestamp"].max()) / DAY)
        else:
            assert np.isnan(row["days_since_last_transaction"])
        days = _days(age)
        back = _back(age)
        assert row["active_days_365d"] == back[back < 365].nunique()
        counts = [int(((back >= 30 * k) & (back < 30 * (k + 1))).sum()) for k in range(12)]
        assert row["months_active_last_12"] == sum(c > 0 for c in counts)
        if sum(counts):
            assert row["months_since_activity_peak"] == counts.index(max(counts))
        else:
            assert np.isnan(row["months_since_activity_peak"])
        for d in (30, 90):
            latest = int((back < d).sum())
            previous = int(((back >= d) & (back < 2 * d)).sum())
            if latest == previous == 0:
                assert np.isnan(row[f"transaction_trend_{d}d"])
            else:
                assert row[f"transaction_trend_{d}d"] == pytest.approx((latest + 1) / (previous + 1))
        recent = mine[back < 90]["amount"]
        if len(recent) and recent.abs().sum() > 0:
            assert row["outflow_share_90d"] == pytest.approx(-recent[recent < 0].sum() / recent.abs().sum())
        else:
            assert np.isnan(row["outflow_share_90d"])
        out = mine[(back < 90) & (mine["amount"] < 0)]
        largest = float(-out["amount"].min()) if len(out) else 0.0
        assert row["largest_outflow_90d"] == pytest.approx(largest)
        if len(out):
            assert row["days_since_largest_outflow_90d"] == days[out.index][out["amount"] == -largest].min()
        else:
            assert np.isnan(row["days_since_largest_outflow_90d"])
        year = mine[back < 365]["amount"]
        if len(year):
            assert row["largest_outflow_90d_vs_typical"] == pytest.approx(largest / year.abs().mean())
        else:
            assert np.isnan(row["largest_outflow_90d_vs_typical"])


def test_lifecycle_tenure_slope_and_stage(case) -> None:
    tables, cutoff, features = case
    tx = tables.transactions[tables.transactions["timestamp"] < cutoff]
    signup = tables.customers.set_index("customer_id")["signup_date"]
    life = LifecycleSettings()
    for customer, row in features.iterrows():
        tenure = np.floor((cutoff - signup[customer]) / DAY)
        assert row["tenure_days"] == tenure
        back = _back(cutoff - tx[tx["customer_id"] == customer]["timestamp"])
        counts = np.array([((back >= 30 * k) & (back < 30 * (k + 1))).sum() for k in range(6)][::-1], float)
        usable = min(int((cutoff - signup[customer]) // pd.Timedelta(days=30)), 6)
        y = counts[6 - usable:] if usable else counts[:0]
        if usable >= 3 and y.mean() > 0:
            slope = np.polyfit(np.arange(len(y)), y, 1)[0] / y.mean()
            assert row["activity_slope_6m"] == pytest.approx(slope)
        else:
            assert np.isnan(row["activity_slope_6m"])
        since = row["days_since_last_transaction"]
        if tenure <= life.new_max_tenure_days:
            stage = "new"
        elif np.isnan(since) or since >= life.dormant_min_days_inactive:
            stage = "dormant"
        elif row["transaction_trend_90d"] <= life.declining_max_trend_ratio:
            stage = "declining"
        elif row["transaction_trend_90d"] >= life.growing_min_trend_ratio:
            stage = "growing"
        else:
            stage = "established"
        assert row["lifecycle_stage"] == stage
    assert list(features["lifecycle_stage"].cat.categories) == list(LIFECYCLE_STAGES)


def test_rfm_scores_are_quintiles_of_the_population(case) -> None:
    _, _, features = case
    longest = SETTINGS.longest_window
    for score, value, higher in (("rfm_frequency_score", f"transaction_count_{longest}d", True),
                                 ("rfm_monetary_score", f"transaction_amount_{longest}d", True),
                                 ("rfm_recency_score", "days_since_last_transaction", False)):
        known = features[features[value].notna()]
        assert features[score].between(1, 5).all()
        ordered = known.sort_values(value, ascending=higher)
        assert ordered[score].is_monotonic_increasing, score  # better value, never a lower score
        assert (known.groupby(value)[score].nunique() == 1).all()  # ties share a score
        assert known[score].value_counts().max() <= 0.2 * len(known) + known[value].value_counts().max()
    never = features["days_since_last_transaction"].isna()
    assert (features.loc[never, "rfm_recency_score"] == 1).all()
    assert list(features["rfm_segment"].cat.categories) == list(RFM_SEGMENTS)
    champions = features["rfm_segment"] == "champions"
    assert (features.loc[champions, ["rfm_recency_score", "rfm_frequency_score", "rfm_monetary_score"]] >= 4).all().all()
    low = (features["rfm_recency_score"] <= 2) & (features["rfm_frequency_score"] <= 2)
    assert (features.loc[low, "rfm_segment"] == "hibernating").all()


def test_complaint_state_as_known_at_the_cutoff(case) -> None:
    tables, cutoff, features = case
    cx = tables.complaints[tables.complaints["opened_at"] < cutoff]
    targets = SETTINGS.complaint_targets
    for customer, row in features.iterrows():
        mine = cx[cx["customer_id"] == customer]
        age = cutoff - mine["opened_at"]
        for w in SETTINGS.windows_days:
            assert row[f"complaint_count_{w}d"] == int((age <= pd.Timedelta(days=w)).sum())
        year = mine[age <= pd.Timedelta(days=365)]
        assert row["complaints_about_fees_365d"] == int((year["category"] == "fees").sum())
        assert row["complaints_about_other_365d"] == int((~year["category"].isin(["fees", "system_lag"])).sum())
        assert row["complaints_via_other_365d"] == int((~year["channel"].isin(["phone", "email"])).sum())
        assert row["complaints_urgent_priority_365d"] == int((year["priority"] == "urgent").sum())
        resolved = mine["resolved_at"] < cutoff
        still_open = mine[~resolved]
        assert row["open_complaints"] == len(still_open)
        if len(still_open):
            assert row["open_complaints_oldest_age_days"] == np.floor((cutoff - still_open["opened_at"].min()) / DAY)
        else:
            assert np.isnan(row["open_complaints_oldest_age_days"])
        done = year[year["resolved_at"] < cutoff]
        hours = (done["resolved_at"] - done["opened_at"]) / pd.Timedelta(hours=1)
        assert row["mean_resolution_hours_365d"] == pytest.approx(hours.mean(), nan_ok=True)
        rated = done["satisfaction"].dropna()
        assert row["mean_complaint_satisfaction_365d"] == pytest.approx(rated.mean(), nan_ok=True)
        assert row["low_satisfaction_share_365d"] == pytest.approx((rated < 3).mean() if len(rated) else np.nan,
                                                                   nan_ok=True)

        def target(tier, field):
            hours = getattr(targets[tier], field) if isinstance(tier, str) and tier in targets else None
            return pd.Timedelta(hours=hours) if hours is not None else pd.Timedelta.max

        late_res = sum(1 for _, r in done.iterrows()
                       if r["resolved_at"] - r["opened_at"] > target(r["priority"], "resolution_hours"))
        assert row["late_resolutions_365d"] == late_res
        answered = year[year["first_response_at"] < cutoff]
        late_resp = sum(1 for _, r in answered.iterrows()
                        if r["first_response_at"] - r["opened_at"] > target(r["priority"], "first_response_hours"))
        assert row["late_first_responses_365d"] == late_resp
        overdue = sum(1 for _, r in still_open.iterrows()
                      if cutoff - r["opened_at"] > target(r["priority"], "resolution_hours"))
        assert row["open_complaints_past_resolution_target"] == overdue
        waiting = sum(1 for _, r in still_open.iterrows() if not (r["first_response_at"] < cutoff)
                      and cutoff - r["opened_at"] > target(r["priority"], "first_response_hours"))
        assert row["unanswered_complaints_past_response_target"] == waiting
        recent = mine[age <= pd.Timedelta(days=90)]
        assert row["repeat_complaints_90d"] == len(recent) - recent["category"].nunique()
        if len(mine):
            assert row["days_since_last_complaint"] == np.floor(age.min() / DAY)
        else:
            assert np.isnan(row["days_since_last_complaint"])


def test_surveys_and_contacts(case) -> None:
    tables, cutoff, features = case
    sv = tables.surveys[tables.surveys["answered_at"] < cutoff]
    ct = tables.contacts[(tables.contacts["contacted_at"] < cutoff) & (tables.contacts["treatment"] == 1)]
    for customer, row in features.iterrows():
        mine = sv[sv["customer_id"] == customer]
        for score in ("nps", "csat"):
            answers = mine.dropna(subset=[score]).sort_values("answered_at", kind="stable")[score].to_numpy()
            last = answers[-1] if len(answers) else np.nan
            change = answers[-1] - answers[-2] if len(answers) > 1 else np.nan
            assert row[f"last_{score}"] == pytest.approx(last, nan_ok=True)
            assert row[f"{score}_change"] == pytest.approx(change, nan_ok=True)
        expected_flag = np.nan if np.isnan(row["last_nps"]) else float(row["last_nps"] <= 6)
        assert row["nps_detractor"] == pytest.approx(expected_flag, nan_ok=True)
        since = np.floor((cutoff - mine["answered_at"].max()) / DAY) if len(mine) else np.nan
        assert row["days_since_last_survey"] == pytest.approx(since, nan_ok=True)
        contacts = ct[ct["customer_id"] == customer]
        assert row["retention_contacts_90d"] == int((cutoff - contacts["contacted_at"] <= pd.Timedelta(days=90)).sum())
        since = np.floor((cutoff - contacts["contacted_at"].max()) / DAY) if len(contacts) else np.nan
        assert row["days_since_last_retention_contact"] == pytest.approx(since, nan_ok=True)


def test_static_attributes_keep_sorted_levels_and_float_numbers(case) -> None:
    tables, _, features = case
    assert list(features["segment"].cat.categories) == sorted(tables.customers["segment"].unique())
    assert features["products_held"].dtype == np.float64
    source = tables.customers.set_index("customer_id")
    assert (features["segment"].astype("str") == source.loc[features.index, "segment"]).all()


@pytest.mark.parametrize("values", [
    ["mass", " affluent", "", None, "small business", "mass"],  # text categories, a blank, a missing
    ["29.85", " 1", "", None, "1e3", "-2"],  # numbers as text (CSV), blanks empty
    ["1", "x", None, "1"],  # one non-number: categorical
    ["", " ", None],  # nothing present
])
def test_text_attributes_parsed_once_per_distinct_value_equal_the_row_by_row_parse(values) -> None:
    """Text and categorical columns are parsed per distinct value (`_distinct_text`); an object
    column takes the row-by-row path. Both must give the same numbers, levels and codes."""
    rows = values * 50
    row_by_row = pd.Series(rows, dtype=object)
    for fast in (pd.Series(rows, dtype="str"), pd.Series(rows, dtype="string[pyarrow]"),
                 pd.Series(pd.Categorical(rows))):
        expected, got = numeric_values(row_by_row), numeric_values(fast)
        assert (expected is None) == (got is None)
        if expected is not None:
            assert np.array_equal(expected.to_numpy(), got.to_numpy(), equal_nan=True)
        if expected is None:
            want, have = categorical_values(row_by_row), categorical_values(fast)
            assert list(want.categories) == list(have.categories) == sorted({v for v in rows if v is not None})
            assert (want.codes == have.codes).all()
            assert list(have.astype("str")[have.codes >= 0]) == [v for v in rows if v is not None]


def test_missing_optional_tables_leave_their_family_out(caplog) -> None:
    tables = random_tables(5, n_customers=20, transactions=300)
    only_transactions = Tables(tables.customers, tables.transactions, as_of=tables.as_of)
    with caplog.at_level(logging.INFO, logger="features"):
        features = build_features(only_transactions, pd.Timestamp("2024-05-01"), SETTINGS)
    assert "transaction_count_90d" in features.columns and "tenure_days" in features.columns
    assert not [c for c in features.columns if "complaint" in c or "nps" in c or "retention" in c]
    assert sum("no complaints table" in r.message for r in caplog.records) == 1
    snapshot = build_features(Tables(tables.customers, as_of=tables.as_of), pd.Timestamp("2024-05-01"), SETTINGS)
    assert list(snapshot.columns) == ["customer_id", "cutoff", "tenure_days", "segment", "products_held"]


def test_missing_values_mean_undefined_and_counts_are_zero() -> None:
    cutoff = pd.Timestamp("2024-05-01")
    customers = pd.DataFrame({"customer_id": pd.Series(["a", "b"], dtype="str"),
                              "signup_date": pd.Series([cutoff - 400 * DAY] * 2, dtype="datetime64[us]"),
                              "closed_date": pd.Series([None, None], dtype="datetime64[us]")})
    tx = pd.DataFrame({"customer_id": pd.Series(["a"], dtype="str"),
                       "timestamp": pd.Series([cutoff - 10 * DAY], dtype="datetime64[us]"), "amount": [5.0]})
    no_static = SETTINGS.model_copy(update={"static_features": ()})
    features = build_features(Tables(customers, tx, as_of=cutoff), cutoff, no_static).set_index("customer_id")
    silent = features.loc["b"]
    assert np.isnan(silent["days_since_last_transaction"]) and np.isnan(silent["average_transaction_amount_30d"])
    assert silent["transaction_count_365d"] == 0 and silent["transaction_amount_365d"] == 0
    assert silent["lifecycle_stage"] == "dormant" and silent["rfm_segment"] == "hibernating"
    assert features.loc["a", "days_since_last_transaction"] == 10
    assert features["transaction_count_30d"].dtype == np.int64

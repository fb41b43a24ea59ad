"""The retention decision: segments, actions, benefit rule, capacity and the complaint rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.settings import FeatureSettings
from models.retention import (SEGMENTS, PlaybookAction, PlaybookSettings, ScoringSettings, SegmentSettings,
                              SelectionSettings, assign_actions, care_segments, complaint_deadline_days,
                              expected_benefit, overdue_complaint_tiers, plan_summary, retention_plan,
                              select_customers)

AS_OF = pd.Timestamp("2025-01-01")
TARGETS = FeatureSettings().complaint_targets


def scored_customers(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Customers with a churn probability, lifetime value and tenure, as the scoring stage gives them."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 8, n)
    ltv = rng.lognormal(5, 1.2, n)
    return pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "churn_probability": p,
        "retained_lifetime_value": ltv,
        "value_at_risk": p * ltv,
        "tenure_days": rng.integers(0, 3000, n).astype(float),
    })


def test_segments_follow_the_configured_rules_and_precedence() -> None:
    rules = SegmentSettings(high_value_quantile=0.8, high_value_min_tenure_days=365, new_max_tenure_days=180,
                            churn_warning_probability=0.3)
    p = np.array([0.5, 0.5, 0.1, 0.1, 0.1, 0.5, 0.1])
    ltv = np.array([1000, 10, 1000, 10, 10, 10, 1000.0])
    tenure = np.array([400, 400, 400, 100, 400, 100, 100.0])
    frame, thresholds = care_segments(p, ltv, tenure, rules)
    # 80th percentile of ltv is 1000 here: the three 1000s are high value if established.
    assert thresholds["high_value_min_lifetime_value"] == pytest.approx(1000.0)
    assert frame["segment"].tolist() == ["high_value_at_risk", "churn_warning", "high_value_established", "new",
                                         "ordinary", "churn_warning", "new"]
    # The flags behind a segment stay visible: a new customer at risk is both.
    assert frame.loc[5, ["churn_warning", "new_customer"]].tolist() == [True, True]
    # A high-value amount without a year of tenure is not high value.
    assert not frame.loc[6, "high_value"]


def test_segments_on_many_customers_match_the_rules() -> None:
    customers = scored_customers()
    rules = SegmentSettings(high_value_quantile=0.9, churn_warning_probability=0.25, churn_warning_top_share=0.05)
    frame, thresholds = care_segments(customers["churn_probability"].to_numpy(), customers["retained_lifetime_value"].to_numpy(),
                                      customers["tenure_days"].to_numpy(), rules)
    ltv_cut = customers["retained_lifetime_value"].quantile(0.9)
    high = (customers["retained_lifetime_value"] >= ltv_cut) & (customers["tenure_days"] >= 365)
    top = customers["churn_probability"].rank(ascending=False, method="first") <= np.ceil(0.05 * len(customers))
    warning = (customers["churn_probability"] >= 0.25) | top
    assert (frame["high_value"] == high).all()
    assert (frame["churn_warning"] == warning).all()
    assert (frame["segment"] == "high_value_at_risk").sum() == (high & warning).sum()
    assert set(frame["segment"]) <= set(SEGMENTS)
    assert thresholds["high_value_min_lifetime_value"] == pytest.approx(ltv_cut)


def test_fixed_high_value_threshold_replaces_the_quantile() -> None:
    frame, thresholds = care_segments(np.array([0.01, 0.01]), np.array([499.0, 500.0]), np.array([999.0, 999.0]),
                                      SegmentSettings(high_value_min_lifetime_value=500))
    assert frame["high_value"].tolist() == [False, True]
    assert thresholds["high_value_min_lifetime_value"] == 500


def test_a_warning_rule_is_required() -> None:
    with pytest.raises(ValidationError, match="churn_warning_probability or churn_warning_top_share"):
        SegmentSettings(churn_warning_probability=None)


def test_complaint_first_is_never_a_sales_offer_and_every_owner_needs_a_capacity() -> None:
    with pytest.raises(ValidationError, match="must not be a sales offer"):
        PlaybookSettings(complaint_first=PlaybookAction(action="sell", channel="phone", owner="care_team",
                                                        touches_per_month=1, deadline_days=1, cost=1,
                                                        success_rate=0.1, sales_offer=True))
    with pytest.raises(ValidationError, match="no entry for owner"):
        ScoringSettings(selection=SelectionSettings(capacity={"care_team": 10}))
    with pytest.raises(ValidationError, match="unknown"):
        PlaybookSettings(actions={**PlaybookSettings().actions, "vip": PlaybookSettings().actions["new"]})


def complaints_frame() -> pd.DataFrame:
    """Open and closed complaints around AS_OF, one customer per situation."""
    hours = pd.Timedelta(hours=1)
    rows = [
        # customer, priority, opened (hours before AS_OF), replied (hours before), resolved (hours before)
        ("urgent_overdue", "urgent", 30, 29, None),          # open 30h > 24h resolution target
        ("urgent_in_time", "urgent", 10, 9.5, None),         # replied within 1h, 10h < 24h
        ("urgent_no_reply", "urgent", 2, None, None),        # no reply after 2h > 1h response target
        ("normal_closed", "normal", 500, 400, 300),          # resolved before AS_OF: not open
        ("resolved_later", "high", 100, 99, -5),             # resolved after AS_OF: open at AS_OF, 100h > 48h
        ("two_tiers", "normal", 100, 90, None),              # normal overdue (100h > 72h)
        ("two_tiers", "high", 60, 59, None),                 # high overdue (60h > 48h): the worse tier wins
        ("suggestion_old", "suggestion", 1000, 900, None),   # suggestion: no resolution target
        ("unknown_tier", None, 1000, None, None),            # no tier: no target, never breached
        ("future", "urgent", -5, None, None),                # opened after AS_OF: not known yet
    ]
    return pd.DataFrame({
        "complaint_id": [f"K{i}" for i in range(len(rows))],
        "customer_id": [r[0] for r in rows],
        "opened_at": [AS_OF - r[2] * hours for r in rows],
        "category": "fees",
        "priority": pd.array([r[1] for r in rows], dtype="str"),
        "first_response_at": [AS_OF - r[3] * hours if r[3] is not None else pd.NaT for r in rows],
        "resolved_at": [AS_OF - r[4] * hours if r[4] is not None else pd.NaT for r in rows],
    })


@pytest.mark.parametrize("as_category", [False, True])
def test_overdue_complaints_follow_the_tier_targets_at_the_cutoff(as_category: bool) -> None:
    complaints = complaints_frame()
    if as_category:  # as loaded: a categorical, its levels in another order and one that is no tier
        complaints["priority"] = pd.Categorical(complaints["priority"], categories=["urgent", "legacy", "suggestion",
                                                                                    "normal", "high"])
    tiers = overdue_complaint_tiers(complaints, AS_OF, TARGETS, "breached")
    assert tiers.to_dict() == {"resolved_later": "high", "two_tiers": "high", "urgent_no_reply": "urgent",
                               "urgent_overdue": "urgent"}
    any_open = overdue_complaint_tiers(complaints, AS_OF, TARGETS, "any_open")
    assert set(any_open.index) == {"urgent_overdue", "urgent_in_time", "urgent_no_reply", "resolved_later",
                                   "two_tiers", "suggestion_old", "unknown_tier"}
    assert any_open["unknown_tier"] == "normal" and any_open["two_tiers"] == "high"
    assert overdue_complaint_tiers(None, AS_OF, TARGETS).empty


def test_complaint_deadline_is_the_tier_resolution_target() -> None:
    assert complaint_deadline_days("urgent", TARGETS, 3) == 1
    assert complaint_deadline_days("high", TARGETS, 3) == 2
    assert complaint_deadline_days("normal", TARGETS, 3) == 3
    assert complaint_deadline_days("suggestion", TARGETS, 3) == 7  # no resolution target: the response one


def test_overdue_complaint_gets_complaint_first_with_its_tier_deadline() -> None:
    segment = pd.Series(["high_value_at_risk", "churn_warning", "ordinary"])
    tier = pd.Series(["urgent", None, "normal"], dtype="str")
    actions = assign_actions(segment, tier, PlaybookSettings(), TARGETS, AS_OF)
    assert actions["action_key"].tolist() == ["complaint_first", "churn_warning", "complaint_first"]
    assert actions["sales_offer"].tolist() == [False, True, False]
    assert actions["deadline"].tolist() == [pd.Timestamp("2025-01-02"), pd.Timestamp("2025-01-08"),
                                            pd.Timestamp("2025-01-04")]
    assert actions["owner"].tolist() == ["complaint_handling", "care_team", "complaint_handling"]


def test_expected_benefit_is_value_at_risk_times_success_minus_cost() -> None:
    assert expected_benefit(np.array([100.0, 10.0]), np.array([0.3, 0.3]), np.array([20.0, 20.0])).tolist() == \
        pytest.approx([10.0, -17.0])


def candidates_frame(benefits: list[float], owners: list[str], complaint: list[bool] | None = None) -> pd.DataFrame:
    n = len(benefits)
    return pd.DataFrame({
        "customer_id": [f"C{i:03d}" for i in range(n)], "owner": owners, "expected_benefit": benefits,
        "value_at_risk": np.abs(benefits), "complaint_first": complaint or [False] * n,
        "deadline": pd.Series([AS_OF] * n).astype("datetime64[s]"),
    })


def test_selection_fills_each_owner_capacity_best_benefit_first() -> None:
    frame = candidates_frame([5, 50, 20, -1, 30, 40, 0.0], ["rm", "rm", "rm", "rm", "care", "care", "care"])
    chosen = select_customers(frame, SelectionSettings(capacity={"rm": 2, "care": 5}))
    assert chosen["selected"].tolist() == [False, True, True, False, True, True, False]
    assert chosen["selection_reason"].tolist() == ["over_capacity", "positive_expected_benefit",
                                                   "positive_expected_benefit", "below_benefit_threshold",
                                                   "positive_expected_benefit", "positive_expected_benefit",
                                                   "below_benefit_threshold"]
    # Rank runs over the whole list by expected benefit.
    assert chosen["rank"].tolist() == [pd.NA, 1, 4, pd.NA, 3, 2, pd.NA]


def test_service_obligations_come_first_bypass_the_benefit_rule_and_use_capacity() -> None:
    frame = candidates_frame([-10, 50, 40, 30], ["care"] * 4, complaint=[True, False, False, False])
    chosen = select_customers(frame, SelectionSettings(capacity={"care": 2}))
    assert chosen["selected"].tolist() == [True, True, False, False]
    assert chosen["selection_reason"].tolist()[0] == "service_obligation"
    assert chosen["rank"].tolist()[:2] == [1, 2]
    strict = select_customers(frame, SelectionSettings(capacity={"care": 2},
                                                       serve_complaints_regardless_of_benefit=False))
    assert strict["selected"].tolist() == [False, True, True, False]


def test_selection_ties_are_broken_by_customer_id() -> None:
    frame = candidates_frame([10.0] * 4, ["care"] * 4).iloc[::-1]
    chosen = select_customers(frame, SelectionSettings(capacity={"care": 2}))
    assert sorted(frame["customer_id"][chosen["selected"]]) == ["C000", "C001"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 100, allow_nan=False), st.sampled_from(["a", "b", "c"]), st.booleans()),
                min_size=1, max_size=60),
       st.integers(0, 10), st.integers(0, 10))
def test_selection_invariants(rows, capacity_a, capacity_b) -> None:
    frame = candidates_frame([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    chosen = select_customers(frame, SelectionSettings(capacity={"a": capacity_a, "b": capacity_b, "c": None}))
    picked = frame[chosen["selected"]]
    obligations = picked["complaint_first"]
    # Benefit rule: everyone selected for benefit pays for themselves.
    assert (picked.loc[~obligations, "expected_benefit"] > 0).all()
    # Capacity: beyond the service obligations, no owner takes more than its limit.
    for owner, limit in (("a", capacity_a), ("b", capacity_b)):
        mine = picked["owner"] == owner
        assert (mine & ~obligations).sum() <= max(0, limit - (mine & obligations).sum())
    # Every obligation is served; nobody with positive benefit is left out while their owner has room.
    assert chosen.loc[frame["complaint_first"], "selected"].all()
    left_out = frame[~chosen["selected"] & (frame["expected_benefit"] > 0)]
    for owner in left_out["owner"]:
        assert owner != "c"
        limit = capacity_a if owner == "a" else capacity_b
        assert (picked["owner"] == owner).sum() >= limit
    # The greedy choice: a left-out customer never beats a selected one of the same owner.
    for owner in set(left_out["owner"]):
        best_left = left_out.loc[left_out["owner"] == owner, "expected_benefit"].max()
        taken = picked.loc[(picked["owner"] == owner) & ~obligations, "expected_benefit"]
        assert taken.empty or taken.min() >= best_left
    assert sorted(chosen["rank"].dropna().tolist()) == list(range(1, len(picked) + 1))


def test_retention_plan_end_to_end_on_scored_customers() -> None:
    customers = scored_customers(3000, seed=4)
    overdue = pd.Series(["high", "urgent"], index=pd.Index(["C00000", "C00001"], name="customer_id"))
    scoring = ScoringSettings(selection=SelectionSettings(capacity={
        "relationship_manager": 200, "care_team": 50, "digital": 100, "complaint_handling": None}))
    plan, thresholds = retention_plan(customers, overdue, scoring, TARGETS, AS_OF)
    assert plan.index.equals(customers.index) and len(plan) == len(customers)
    assert plan.loc[[0, 1], "action_key"].tolist() == ["complaint_first", "complaint_first"]
    assert plan.loc[[0, 1], "selected"].all() and not plan.loc[[0, 1], "sales_offer"].any()
    selected = plan[plan["selected"]]
    by_owner = selected[~selected["complaint_first"]].groupby("owner").size()
    assert by_owner.get("relationship_manager", 0) <= 200 and by_owner.get("care_team", 0) <= 50
    assert by_owner.get("digital", 0) <= 100
    assert (selected.loc[~selected["complaint_first"], "expected_benefit"] > 0).all()
    # The playbook's top priority: high-value customers at risk are all on the list when there is room.
    at_risk = plan[(plan["segment"] == "high_value_at_risk") & (plan["expected_benefit"] > 0)]
    assert len(at_risk) > 10 and at_risk["selected"].all()
    summary = plan_summary(plan, scoring.selection.capacity)
    assert summary["customers_selected"] == len(selected)
    assert sum(summary["segments"].values()) == len(plan)
    assert summary["owners"]["complaint_handling"]["service_obligations"] == 2
    assert thresholds["churn_warning_probability"] == 0.3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_overdue_complaints_agree_with_the_complaint_features(seed: int) -> None:
    """The complaint-first rule flags exactly the customers the model's own service features count as overdue."""
    from features.build import build_features
    from tests.features.factories import AS_OF as DATA_END
    from tests.features.factories import random_tables

    tables = random_tables(seed, n_customers=60, complaints=400)
    cutoff = DATA_END - pd.Timedelta(days=100)
    settings = FeatureSettings()
    features = build_features(tables, cutoff, settings)
    overdue = (features["open_complaints_past_resolution_target"] > 0) | \
        (features["unanswered_complaints_past_response_target"] > 0)
    expected = set(features.loc[overdue, "customer_id"])
    tiers = overdue_complaint_tiers(tables.complaints, cutoff, settings.complaint_targets, "breached")
    in_population = tiers[tiers.index.isin(features["customer_id"])]
    assert expected and set(in_population.index) == expected


# ---------------------------------------------------------------- uplift ranking and the holdout

SMALL_TEAMS = SelectionSettings(capacity={"relationship_manager": 100, "care_team": 60, "digital": 150,
                                          "complaint_handling": None})


def with_uplift(seed: int = 5) -> pd.DataFrame:
    customers = scored_customers(3000, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return customers.assign(uplift=rng.normal(0.01, 0.03, len(customers)))


def test_uplift_ranking_picks_the_best_incremental_value_within_capacity() -> None:
    from models.retention import incremental_benefit

    customers = with_uplift()
    scoring = ScoringSettings(ranking="uplift", selection=SMALL_TEAMS, holdout={"share": 0.0})
    plan, _ = retention_plan(customers, pd.Series([], dtype="str"), scoring, TARGETS, AS_OF)
    expected = incremental_benefit(plan["uplift"], plan["retained_lifetime_value"], plan["action_cost"])
    assert np.allclose(plan["expected_benefit"], expected)
    for owner, rows in plan.groupby("owner", observed=True):
        chosen = rows[rows["selected"]]
        passed = rows[~rows["selected"] & (rows["selection_reason"] == "over_capacity")]
        assert len(chosen) <= SMALL_TEAMS.capacity[str(owner)]
        if len(chosen) and len(passed):  # nobody left out for capacity is worth more than someone chosen
            assert passed["expected_benefit"].max() <= chosen["expected_benefit"].min()
    assert plan["uplift_class"].notna().all()


def test_without_any_value_the_uplift_list_takes_the_persuadables_by_uplift() -> None:
    """A snapshot with no customer value but an uplift model (a randomised campaign's, say): ranked by
    uplift, the list takes the persuadables, most uplift first, within capacity; by value at risk, the
    churn-warning customers by risk, as before. Each reason names its rule."""
    from models.retention import empty_list_explanation

    unknown = {"retained_lifetime_value": np.nan, "value_at_risk": np.nan}
    customers = with_uplift(11).assign(**unknown)
    scoring = ScoringSettings(ranking="uplift", selection=SMALL_TEAMS, holdout={"share": 0.0})
    plan, _ = retention_plan(customers, pd.Series([], dtype="str"), scoring, TARGETS, AS_OF, uplift_threshold=0.002)
    chosen = plan[plan["selected"]]
    assert len(chosen) > 0 and (chosen["selection_reason"] == "highest_uplift_no_value").all()
    assert (chosen["uplift_class"] == "persuadable").all()
    for owner, rows in plan.groupby("owner", observed=True):  # within each team, by uplift
        mine = rows[rows["selected"]].sort_values("rank")
        assert mine["uplift"].is_monotonic_decreasing
        waiting = rows[~rows["selected"] & (rows["selection_reason"] == "over_capacity")]
        if len(mine) and len(waiting):
            assert waiting["uplift"].max() <= mine["uplift"].min()
    rest = plan[~plan["selected"] & (plan["uplift_class"] != "persuadable")]
    assert len(rest) > 0 and (rest["selection_reason"].isin(["not_persuadable_no_value", "sleeping_dog"])).all()
    assert "persuadable customers by predicted uplift" in empty_list_explanation(plan, scoring, "none", "uplift")
    by_risk, _ = retention_plan(customers, pd.Series([], dtype="str"),
                                scoring.model_copy(update={"ranking": "value_at_risk"}), TARGETS, AS_OF)
    taken = by_risk[by_risk["selected"]]
    assert (taken["selection_reason"] == "highest_risk_no_value").all() and taken["churn_warning"].all()
    assert "churn-warning customers by risk alone" in empty_list_explanation(by_risk, scoring, "none")


def test_sleeping_dogs_never_get_a_sales_offer_and_classes_follow_the_rule() -> None:
    customers = with_uplift(7)
    scoring = ScoringSettings(ranking="uplift", selection=SMALL_TEAMS, holdout={"share": 0.0})
    plan, _ = retention_plan(customers, pd.Series([], dtype="str"), scoring, TARGETS, AS_OF, uplift_threshold=0.002)
    dogs = plan["uplift_class"] == "sleeping_dog"
    assert (plan.loc[dogs, "uplift"] < -0.002).all() and (plan.loc[plan["uplift"] > 0.002, "uplift_class"]
                                                           == "persuadable").all()
    middle = plan["uplift"].abs() <= 0.002
    assert (plan.loc[middle & plan["churn_warning"], "uplift_class"] == "lost_cause").all()
    assert (plan.loc[middle & ~plan["churn_warning"], "uplift_class"] == "sure_thing").all()
    assert not (plan["selected"] & dogs & plan["sales_offer"]).any()
    assert (plan.loc[dogs & plan["sales_offer"], "selection_reason"] == "sleeping_dog").all()
    assert (dogs & plan["sales_offer"]).sum() > 10  # the rule had customers to act on
    # today's value-at-risk ranking is left as it was: classes shown, nobody held back for them
    by_risk, _ = retention_plan(customers, pd.Series([], dtype="str"), scoring.model_copy(
        update={"ranking": "value_at_risk"}), TARGETS, AS_OF)
    assert not (by_risk["selection_reason"] == "sleeping_dog").any() and by_risk["uplift_class"].notna().all()


def test_uplift_ranking_without_an_uplift_falls_back_to_value_at_risk() -> None:
    from models.retention import effective_ranking

    customers = scored_customers(500, seed=2)
    scoring = ScoringSettings(ranking="uplift", holdout={"share": 0.0})
    assert effective_ranking(customers, "uplift") == "value_at_risk"
    plan, _ = retention_plan(customers, pd.Series([], dtype="str"), scoring, TARGETS, AS_OF)
    baseline, _ = retention_plan(customers, pd.Series([], dtype="str"), scoring.model_copy(
        update={"ranking": "value_at_risk"}), TARGETS, AS_OF)
    pd.testing.assert_series_equal(plan["selected"], baseline["selected"])
    assert plan["uplift_class"].isna().all()


def test_holdout_is_a_seeded_share_of_the_list_and_never_a_service_obligation() -> None:
    customers = with_uplift(9)
    overdue = pd.Series(["high"] * 5, index=pd.Index([f"C{i:05d}" for i in range(5)], name="customer_id"))
    scoring = ScoringSettings(selection=SMALL_TEAMS, holdout={"share": 0.2})
    without, _ = retention_plan(customers, overdue, scoring, TARGETS, AS_OF)
    plan, _ = retention_plan(customers, overdue, scoring, TARGETS, AS_OF, holdout_seed=11)
    again, _ = retention_plan(customers.sample(frac=1.0, random_state=3), overdue, scoring, TARGETS, AS_OF,
                              holdout_seed=11)
    other, _ = retention_plan(customers, overdue, scoring, TARGETS, AS_OF, holdout_seed=12)
    would = without["selected"] & (without["selection_reason"] != "service_obligation")
    controls = plan["selection_reason"] == "control"
    assert controls.sum() == round(0.2 * would.sum()) and (controls <= would).all()
    assert not plan.loc[controls, "selected"].any()
    assert plan.loc[plan["complaint_first"], "selected"].all()
    assert set(plan.loc[controls, "customer_id"]) == set(again.loc[again["selection_reason"] == "control", "customer_id"])
    assert set(plan.loc[controls, "customer_id"]) != set(other.loc[other["selection_reason"] == "control", "customer_id"])
    ranks = plan.loc[plan["selected"], "rank"].sort_values().to_numpy()
    assert np.array_equal(ranks, np.arange(1, plan["selected"].sum() + 1))

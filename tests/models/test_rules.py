"""Complaint baskets, association rules, the order test, chains, root causes and churn rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.settings import FeatureSettings, LabelSettings
from models.chains import CHAIN_COLUMNS, PAIR_COLUMNS, ROOT_COLUMNS, holm, order_test
from models.rules import (OUTCOME_RULE_COLUMNS, RULE_COLUMNS, RuleSettings, build_baskets, churn_after_baskets,
                          frequent_itemsets, itemset_bound, mine_complaint_rules, one_hot, pair_counts)

START = pd.Timestamp("2023-01-01")
AS_OF = pd.Timestamp("2025-01-01")
TARGETS = FeatureSettings().complaint_targets
LABELS = LabelSettings(horizon_days=90)
NOISE = ("fees", "staff_attitude", "card_problem", "branch_queue", "slow_response", "yield_display")
CHAIN = ("app_update_issue", "system_lag", "transfer_failure")


def complaints_frame(rows: list[tuple[str, float, str]], **extra: list[object]) -> pd.DataFrame:
    """Complaints from (customer, day since START, category) rows, in contract dtypes."""
    frame = pd.DataFrame({
        "complaint_id": pd.Series([f"K{i:05d}" for i in range(len(rows))], dtype="str"),
        "customer_id": pd.Series([r[0] for r in rows], dtype="str"),
        "opened_at": pd.Series([START + pd.Timedelta(days=r[1]) for r in rows]).astype("datetime64[us]"),
        "category": pd.Series([r[2] for r in rows], dtype="str"),
    })
    for name, values in extra.items():
        frame[name] = values
    return frame


def customers_frame(ids: list[str], closed: dict[str, float] | None = None) -> pd.DataFrame:
    closed = closed or {}
    return pd.DataFrame({
        "customer_id": pd.Series(ids, dtype="str"),
        "signup_date": pd.Series([START - pd.Timedelta(days=400)] * len(ids)).astype("datetime64[us]"),
        "closed_date": pd.Series([START + pd.Timedelta(days=closed[i]) if i in closed else pd.NaT for i in ids])
        .astype("datetime64[us]"),
    })


def planted_data(n_customers: int = 1500, seed: int = 3, chain_share: float = 0.2, churn_after_chain: float = 0.6,
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random complaints plus a planted chain app_update_issue -> system_lag -> transfer_failure.

    A share of customers goes through the chain within ~2 weeks (each step may stop), and
    those who complete it often close their account a month later; others rarely close.
    """
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, float, str]] = []
    closed: dict[str, float] = {}
    for c in range(n_customers):
        customer = f"C{c:05d}"
        for _ in range(rng.poisson(1.5)):
            rows.append((customer, float(rng.uniform(0, 600)), str(rng.choice(NOISE))))
        if rng.random() < chain_share:
            day = float(rng.uniform(0, 500))
            steps = 1
            rows.append((customer, day, CHAIN[0]))
            for category in CHAIN[1:]:
                if rng.random() < 0.15:
                    break
                day += float(rng.uniform(1, 6))
                rows.append((customer, day, category))
                steps += 1
            if steps == len(CHAIN) and rng.random() < churn_after_chain:
                closed[customer] = day + float(rng.uniform(5, 60))
        if customer not in closed and rng.random() < 0.03:
            closed[customer] = float(rng.uniform(0, 700))
    return complaints_frame(rows), customers_frame([f"C{c:05d}" for c in range(n_customers)], closed)


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, pd.DataFrame]:
    return planted_data()


# ---------------------------------------------------------------------------- baskets

def test_baskets_are_consecutive_windows_opened_by_a_complaint() -> None:
    rows = [("A", d, "fees") for d in (0, 10, 29.9, 30, 45, 61)] + [("B", 5, "fees"), ("B", 200, "system_lag")]
    baskets = build_baskets(complaints_frame(rows), AS_OF, RuleSettings(window_days=30), TARGETS)
    spans = sorted((int(c), (s - START.value // 1000) / 86_400e6, (e - START.value // 1000) / 86_400e6)
                   for c, s, e in zip(baskets.customer, baskets.start_us, baskets.end_us))
    customer_a = int(baskets.customer[np.argmin(baskets.start_us)])
    got_a = [(round(s, 3), round(e, 3)) for c, s, e in spans if c == customer_a]
    assert got_a == [(0, 29.9), (30, 45), (61, 61)]
    assert baskets.n_baskets == 5 and baskets.n_complaints == 8


def test_complaints_on_or_after_as_of_are_not_used() -> None:
    rows = [("A", 0, "fees"), ("A", 2, "system_lag"), ("A", 10, "transfer_failure")]
    as_of = START + pd.Timedelta(days=10)
    baskets = build_baskets(complaints_frame(rows), as_of, RuleSettings(), TARGETS)
    assert baskets.n_complaints == 2
    assert set(baskets.items) == {"category=fees", "category=system_lag"}
    assert any("as-of date" in m for m in baskets.messages)


def test_tags_add_items_and_missing_tag_columns_are_reported() -> None:
    rows = [("A", 0, "fees"), ("A", 1, "system_lag")]
    frame = complaints_frame(rows, channel=pd.Series(["phone", None], dtype="str"))
    baskets = build_baskets(frame, AS_OF, RuleSettings(tags=("channel", "product")), TARGETS)
    assert set(baskets.items) == {"category=fees", "category=system_lag", "channel=phone"}
    assert any("no product column" in m for m in baskets.messages)


def test_top_k_item_cap_keeps_the_most_frequent_and_says_so() -> None:
    rows = []
    for c in range(60):
        rows.append((f"C{c}", 0, "common"))
        rows.append((f"C{c}", 1, "second" if c < 40 else f"rare_{c}"))
        if c < 30:
            rows.append((f"C{c}", 2, "third"))
    baskets = build_baskets(complaints_frame(rows), AS_OF, RuleSettings(max_items=3), TARGETS)
    assert set(baskets.items) == {"category=common", "category=second", "category=third"}
    assert baskets.n_distinct_items == 23
    assert any("kept the 3 most frequent" in m for m in baskets.messages)
    # Complaints of dropped categories no longer count for chains.
    assert (baskets.complaint_item == -1).sum() == 20


def test_basket_item_cap_keeps_the_first_items_in_time() -> None:
    rows = [("A", d, f"cat_{d}") for d in range(8)]
    baskets = build_baskets(complaints_frame(rows), AS_OF, RuleSettings(max_basket_items=3), TARGETS)
    kept = sorted(baskets.items[i] for i in baskets.pair_item)
    assert kept == ["category=cat_0", "category=cat_1", "category=cat_2"]
    assert any("max_basket_items" in m for m in baskets.messages)


# ---------------------------------------------------------------------------- outcome items

def test_open_and_breached_items_follow_the_tier_targets() -> None:
    rows = [("A", 0, "fees"), ("B", 0, "fees"), ("C", 0, "fees"), ("D", 0, "fees"), ("E", 0, "fees")]
    opened = START
    hours = pd.Timedelta(hours=1)
    frame = complaints_frame(
        rows,
        priority=pd.Series(["urgent", "normal", None, "normal", "suggestion"], dtype="str"),
        first_response_at=pd.Series([opened + 0.5 * hours, opened + 2 * hours, opened + 100 * hours,
                                     opened + 30 * hours, opened + 100 * hours]).astype("datetime64[us]"),
        # A: resolved in 48 h > urgent 24 h; B: 24 h, fine; C: no tier; D: late reply; E: open, no target.
        resolved_at=pd.Series([opened + 48 * hours, opened + 24 * hours, opened + 500 * hours,
                               opened + 40 * hours, pd.NaT]).astype("datetime64[us]"),
    )
    baskets = build_baskets(frame, AS_OF, RuleSettings(), TARGETS)
    by_customer = dict(zip(baskets.customer_ids[baskets.customer], zip(baskets.open_complaint,
                                                                       baskets.breached_target)))
    assert by_customer == {"A": (False, True), "B": (False, False), "C": (False, False), "D": (False, True),
                           "E": (True, False)}


def test_no_priority_column_means_no_breached_item() -> None:
    frame = complaints_frame([("A", 0, "fees")])
    baskets = build_baskets(frame, AS_OF, RuleSettings(), TARGETS)
    assert baskets.breached_target is None and baskets.open_complaint is None


def test_churn_after_closure_within_the_complete_horizon_only() -> None:
    rows = [("churns", 0, "fees"), ("stays_late_close", 0, "fees"), ("too_recent", 680, "fees"),
            ("closed_before", 100, "fees"), ("unknown", 0, "fees"), ("never", 0, "fees")]
    customers = customers_frame(["churns", "stays_late_close", "too_recent", "closed_before", "never"],
                                closed={"churns": 10, "stays_late_close": 120, "too_recent": 700,
                                        "closed_before": 50})
    as_of = START + pd.Timedelta(days=731)
    baskets = build_baskets(complaints_frame(rows), as_of, RuleSettings(), TARGETS)
    link = churn_after_baskets(baskets, customers, None, as_of, LABELS, 30)
    got = {baskets.customer_ids[c]: (bool(e), bool(x)) for c, e, x in zip(baskets.customer, link.eligible,
                                                                             link.churned)}
    assert got == {"churns": (True, True), "stays_late_close": (True, False), "too_recent": (False, False),
                   "closed_before": (False, False), "unknown": (False, False), "never": (True, False)}


def test_churn_by_inactivity_needs_recent_activity_and_a_silent_horizon() -> None:
    rows = [("silent", 200, "fees"), ("active", 200, "fees"), ("dormant", 200, "fees"), ("closes", 200, "fees"),
            ("at_end", 200, "fees")]
    customers = customers_frame(["silent", "active", "dormant", "closes", "at_end"], closed={"closes": 250})
    # half-open windows: the look-back is [end - 180 days, end), the horizon [end, end + 90 days), so a
    # transaction at the basket end itself is in the horizon (at_end is not silent)
    tx_rows = [("silent", 150), ("active", 150), ("active", 260), ("dormant", 1), ("closes", 150),
               ("closes", 240), ("silent", 199), ("at_end", 150), ("at_end", 200)]
    transactions = pd.DataFrame({
        "customer_id": pd.Series([r[0] for r in tx_rows], dtype="str"),
        "timestamp": pd.Series([START + pd.Timedelta(days=r[1]) for r in tx_rows]).astype("datetime64[us]"),
        "amount": 1.0,
    })
    labels = LabelSettings(definition="inactivity", horizon_days=90, inactivity_lookback_days=180)
    baskets = build_baskets(complaints_frame(rows), AS_OF, RuleSettings(), TARGETS)
    link = churn_after_baskets(baskets, customers, transactions, AS_OF, labels, 30)
    got = {baskets.customer_ids[c]: (bool(e), bool(x)) for c, e, x in zip(baskets.customer, link.eligible,
                                                                             link.churned)}
    assert got == {"silent": (True, True), "active": (True, False), "dormant": (False, False),
                   "closes": (True, True), "at_end": (True, False)}
    without = churn_after_baskets(baskets, customers, None, AS_OF, labels, 30)
    assert not without.eligible.any() and "no transactions table" in without.messages[0]


# ---------------------------------------------------------------------------- mining and caps

def random_onehot(n: int, n_items: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(n_items))
    sizes = rng.integers(1, 6, n)
    rows = np.repeat(np.arange(n), sizes)
    matrix = np.zeros((n, n_items), dtype=bool)
    matrix[rows, rng.choice(n_items, len(rows), p=weights)] = True
    return pd.DataFrame(matrix, columns=[f"category=c{i}" for i in range(n_items)])


def as_set(itemsets: pd.DataFrame) -> set[tuple[frozenset[str], int]]:
    return set(zip(itemsets["itemsets"], itemsets["count"]))


@pytest.mark.parametrize("seed", [0, 1])
def test_apriori_and_fpgrowth_find_the_same_itemsets(seed: int) -> None:
    onehot = random_onehot(3000, 12, seed)
    fp = frequent_itemsets(onehot, 15, 4, "fpgrowth")
    ap = frequent_itemsets(onehot, 15, 4, "apriori")
    assert len(fp) > 30 and as_set(fp) == as_set(ap)
    assert fp["count"].min() >= 15 and fp["length"].max() <= 4
    # Counts are exact: recount a few itemsets directly.
    for items, count in list(as_set(fp))[:10]:
        assert onehot[sorted(items)].all(axis=1).sum() == count


def test_itemset_bound_is_never_below_the_true_count() -> None:
    for seed in range(3):
        onehot = random_onehot(2000, 10, seed)
        counts = pair_counts(onehot)
        assert (np.diag(counts) == onehot.sum(axis=0).to_numpy()).all()
        for threshold in (5, 20, 80):
            found = len(frequent_itemsets(onehot, threshold, 4))
            sizes = np.bincount(onehot.to_numpy()[:, np.diag(counts) >= threshold].sum(axis=1))
            assert itemset_bound(counts, threshold, 4, sizes) >= found
            assert itemset_bound(counts, threshold, 4) >= found


def test_itemset_cap_raises_min_support_and_says_so() -> None:
    # Dense baskets: 6 complaints from 12 categories each, so nearly every small itemset is frequent.
    rng = np.random.default_rng(2)
    categories = [f"cat_{i}" for i in range(12)]
    rows = [(f"C{c}", float(d), str(rng.choice(categories))) for c in range(400) for d in range(6)]
    frame = complaints_frame(rows)
    customers = customers_frame([f"C{c}" for c in range(400)])
    free = mine_complaint_rules(frame, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS)
    capped = mine_complaint_rules(frame, customers, None, AS_OF, RuleSettings(max_itemsets=100), LABELS, TARGETS)
    assert free.summary["itemsets"] > 300 and not any("max_itemsets" in m for m in free.messages)
    assert any("max_itemsets=100" in m for m in capped.messages)
    assert 0 < capped.summary["itemsets"] <= 100
    assert capped.summary["min_support_used"] > free.summary["min_support_used"]


# ---------------------------------------------------------------------------- the order test

def test_order_test_is_a_one_sided_sign_test() -> None:
    p = order_test(np.array([10, 5, 0, 0]), np.array([0, 5, 10, 0]))
    assert p[0] == pytest.approx(0.5 ** 10)
    assert p[1] == pytest.approx(638 / 1024)  # P(X >= 5), X ~ Binomial(10, 1/2)
    assert p[2] == pytest.approx(1.0) and p[3] == 1.0
    assert holm(np.array([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])


def ordered_pairs_data(n_ordered: int, n_reversed: int, n_random: int, seed: int = 0) -> pd.DataFrame:
    """Baskets with A before B (n_ordered), B before A (n_reversed); C and D at random times."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_ordered + n_reversed):
        a, b = (0.0, 3.0) if i < n_ordered else (3.0, 0.0)
        rows += [(f"P{i}", a, "a_issue"), (f"P{i}", b, "b_issue")]
    for i in range(n_random):
        c, d = rng.uniform(0, 20, 2)
        rows += [(f"R{i}", c, "c_issue"), (f"R{i}", d, "d_issue")]
    for i in range(300):
        rows.append((f"N{i}", 0.0, str(rng.choice(NOISE))))
    return complaints_frame(rows)


def test_planted_order_is_significant_and_random_order_is_not() -> None:
    frame = ordered_pairs_data(n_ordered=40, n_reversed=4, n_random=44)
    customers = customers_frame(sorted(frame["customer_id"].unique()))
    result = mine_complaint_rules(frame, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS)
    pairs = result.pairs.set_index(["first_category", "then_category"])
    ab = pairs.loc[("a_issue", "b_issue")]
    assert (ab["first_then"], ab["then_first"], ab["same_time"]) == (40, 4, 0)
    assert ab["significant"] and ab["p_value"] < 1e-7
    random_pair = result.pairs[result.pairs["first_category"].isin(["c_issue", "d_issue"])]
    assert len(random_pair) == 1 and not random_pair["significant"].iloc[0]
    assert list(result.pairs.columns) == list(PAIR_COLUMNS)


def test_a_repeated_category_does_not_look_first_by_chance() -> None:
    # A three times (days 0, 10, 20), B once, alternately at day 5 or 15: A's first complaint
    # always comes first, but complaint by complaint neither category leads.
    rows = []
    for i in range(60):
        rows += [(f"P{i}", 0.0, "a_issue"), (f"P{i}", 10.0, "a_issue"), (f"P{i}", 20.0, "a_issue"),
                 (f"P{i}", 5.0 if i % 2 else 15.0, "b_issue")]
    rows += [(f"N{i}", 0.0, NOISE[i % len(NOISE)]) for i in range(300)]
    frame = complaints_frame(rows)
    customers = customers_frame(sorted(frame["customer_id"].unique()))
    result = mine_complaint_rules(frame, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS)
    pair = result.pairs.iloc[0]
    assert (pair["first_then"], pair["then_first"]) == (30, 30)
    assert not pair["significant"] and result.chains.empty


# ---------------------------------------------------------------------------- chains, roots, churn rules

def assert_planted_chains_on_top(result, planted: list[list[str]]) -> None:
    """The acceptance check: planted chains come out whole, in planted order, above everything unplanted.

    - every consecutive planted pair is a significant edge in the planted direction (recall 1),
      and no planted pair is oriented backwards;
    - the top len(planted) chains are exactly the planted chains, in planted order;
    - in the order-pair table no pair outside the planted orders ranks above a planted one.
    """
    in_order = {(c[i], c[j]) for c in planted for i in range(len(c)) for j in range(i + 1, len(c))}
    consecutive = {(c[i], c[i + 1]) for c in planted for i in range(len(c) - 1)}
    significant = result.pairs[result.pairs["significant"]]
    edges = set(zip(significant["first_category"], significant["then_category"]))
    assert consecutive <= edges, consecutive - edges
    assert not {(b, a) for a, b in in_order} & edges
    top = result.chains.head(len(planted))["chain"].tolist()
    assert sorted(top) == sorted(" -> ".join(c) for c in planted), top
    ranked = list(zip(result.pairs["first_category"], result.pairs["then_category"]))
    last_planted = max(i for i, pair in enumerate(ranked) if pair in in_order)
    assert all(pair in in_order for pair in ranked[: last_planted + 1]), ranked


def two_chain_data(seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame, list[list[str]]]:
    """Two planted chains of different lengths among random complaints (the generator's shape)."""
    planted = [["app_update_issue", "system_lag", "transfer_failure", "fee_dispute"],
               ["loan_documents_twice", "slow_response", "staff_escalation"]]
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, float, str]] = []
    for c in range(2500):
        customer = f"C{c:05d}"
        rows += [(customer, float(rng.uniform(0, 600)), str(rng.choice(NOISE))) for _ in range(rng.poisson(1.5))]
        for chain in planted:
            if rng.random() < 0.08:
                day = float(rng.uniform(0, 550))
                for step, category in enumerate(chain):
                    if step and rng.random() < 0.15:
                        break
                    rows.append((customer, day, category))
                    day += float(rng.uniform(1, 7))
    return complaints_frame(rows), customers_frame([f"C{c:05d}" for c in range(2500)]), planted


def test_planted_chains_come_out_on_top_in_planted_order() -> None:
    complaints, customers, planted = two_chain_data()
    result = mine_complaint_rules(complaints, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS)
    assert_planted_chains_on_top(result, planted)
    roots = result.roots[result.roots["is_root"].astype(bool)]["category"].tolist()
    assert sorted(roots) == ["app_update_issue", "loan_documents_twice"]


def test_planted_chain_is_found_in_order_with_its_root_first(planted) -> None:
    complaints, customers = planted
    result = mine_complaint_rules(complaints, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS)
    top = result.chains.iloc[0]
    assert top["chain"] == " -> ".join(CHAIN) and top["rank"] == 1
    assert top["baskets_in_order"] >= 100 and 0 < top["ordered_confidence"] <= 1
    # Its sub-chains are folded into it; no chain uses a noise category.
    assert not result.chains["chain"].isin(["app_update_issue -> system_lag", "system_lag -> transfer_failure"]).any()
    assert not result.chains["chain"].str.contains("|".join(NOISE)).any()
    edges = result.pairs[result.pairs["significant"]]
    assert set(zip(edges["first_category"], edges["then_category"])) == {
        (CHAIN[0], CHAIN[1]), (CHAIN[1], CHAIN[2]), (CHAIN[0], CHAIN[2])}
    roots = result.roots
    assert roots.iloc[0]["category"] == CHAIN[0] and bool(roots.iloc[0]["is_root"])
    assert roots.iloc[0]["downstream_categories"] == "system_lag, transfer_failure"
    assert roots.iloc[0]["downstream_complaints"] > roots.iloc[1]["downstream_complaints"] > 0
    assert list(result.chains.columns) == list(CHAIN_COLUMNS) and list(result.roots.columns) == list(ROOT_COLUMNS)
    # Customers who went through the whole chain churn more often than the rest.
    assert top["churn_lift"] > 3


def test_churn_rules_report_lift_over_the_base_rate(planted) -> None:
    complaints, customers = planted
    result = mine_complaint_rules(complaints, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS)
    churn = result.churn_rules[result.churn_rules["outcome"] == "churned"]
    assert list(result.churn_rules.columns) == list(OUTCOME_RULE_COLUMNS)
    top = churn.iloc[0]
    assert "category=transfer_failure" in top["antecedents"]
    assert top["lift"] == pytest.approx(top["outcome_rate"] / top["base_rate"])
    assert top["base_rate"] == pytest.approx(result.summary["churn_base_rate"])
    assert top["outcome_rate"] == pytest.approx(top["baskets_with_outcome"] / top["baskets_with_antecedent"])
    assert top["customers_with_outcome"] <= top["customers_with_antecedent"] <= top["baskets_with_antecedent"]
    assert not churn["antecedents"].str.contains("|".join(NOISE)).any()
    # Recount the top rule by hand on the horizon-complete baskets.
    baskets = build_baskets(complaints, AS_OF, RuleSettings(), TARGETS)
    link = churn_after_baskets(baskets, customers, None, AS_OF, LABELS, 30)
    onehot = one_hot(baskets, {})
    with_antecedent = onehot[top["antecedents"].split(" & ")].all(axis=1).to_numpy() & link.eligible
    assert with_antecedent.sum() == top["baskets_with_antecedent"]
    assert (with_antecedent & link.churned).sum() == top["baskets_with_outcome"]


def test_open_and_breached_outcome_rules() -> None:
    rng = np.random.default_rng(5)
    rows, priority, resolved = [], [], []
    for c in range(400):
        category = str(rng.choice(["slow_response", *NOISE[:3]]))
        rows.append((f"C{c}", float(rng.uniform(0, 600)), category))
        priority.append("high")
        # slow_response cases are mostly resolved late or still open.
        late = rng.random() < (0.8 if category == "slow_response" else 0.1)
        resolved.append(pd.Timedelta(hours=200) if late else pd.Timedelta(hours=10))
    frame = complaints_frame(rows, priority=pd.Series(priority, dtype="str"))
    frame["resolved_at"] = (frame["opened_at"] + pd.Series(resolved)).astype("datetime64[us]")
    customers = customers_frame([f"C{c}" for c in range(400)])
    result = mine_complaint_rules(frame, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS)
    breached = result.churn_rules[result.churn_rules["outcome"] == "breached_target"]
    assert breached.iloc[0]["antecedents"] == "category=slow_response" and breached.iloc[0]["lift"] > 2
    assert result.summary["outcome_rules"] == len(result.churn_rules[result.churn_rules["outcome"] != "churned"])


def test_result_is_deterministic_and_inputs_are_not_mutated(planted) -> None:
    complaints, customers = planted
    before_c, before_u = complaints.copy(deep=True), customers.copy(deep=True)
    first = mine_complaint_rules(complaints, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS)
    pd.testing.assert_frame_equal(complaints, before_c)
    pd.testing.assert_frame_equal(customers, before_u)
    shuffled = complaints.sample(frac=1.0, random_state=1).reset_index(drop=True)
    second = mine_complaint_rules(shuffled, customers.iloc[::-1], None, AS_OF, RuleSettings(), LABELS, TARGETS)
    for name in ("rules", "pairs", "chains", "roots", "churn_rules"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    assert first.summary == second.summary or all(
        (a == b) or (a != a and b != b) for a, b in zip(first.summary.values(), second.summary.values()))


def test_rule_metrics_match_their_definitions(planted) -> None:
    complaints, customers = planted
    result = mine_complaint_rules(complaints, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS)
    rules = result.rules
    assert list(rules.columns) == list(RULE_COLUMNS) and len(rules) > 0
    assert (rules["confidence"] >= 0.1).all() and (rules["lift"] >= 1.5).all()
    n = result.summary["baskets"]
    assert (rules["baskets"] == np.rint(rules["support"] * n)).all()
    assert np.allclose(rules["confidence"], rules["support"] / rules["antecedent_support"])
    assert np.allclose(rules["lift"], rules["confidence"] / rules["consequent_support"])
    assert np.allclose(rules["leverage"], rules["support"] - rules["antecedent_support"] * rules["consequent_support"])
    assert rules["lift"].is_monotonic_decreasing


# ---------------------------------------------------------------------------- degenerate inputs

def assert_empty_and_well_formed(result, message: str) -> None:
    for name, columns in (("rules", RULE_COLUMNS), ("pairs", PAIR_COLUMNS), ("chains", CHAIN_COLUMNS),
                          ("roots", ROOT_COLUMNS), ("churn_rules", OUTCOME_RULE_COLUMNS)):
        frame = getattr(result, name)
        assert frame.empty and list(frame.columns) == list(columns), name
    assert any(message in m for m in result.messages), result.messages


def test_no_complaints_table_or_no_rows_gives_an_empty_result() -> None:
    customers = customers_frame(["A"])
    assert_empty_and_well_formed(
        mine_complaint_rules(None, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS), "no complaints table")
    empty = complaints_frame([])
    assert_empty_and_well_formed(
        mine_complaint_rules(empty, customers, None, AS_OF, RuleSettings(), LABELS, TARGETS), "no complaints")


def test_too_few_baskets_gives_an_empty_result() -> None:
    frame = complaints_frame([(f"C{i}", 0, "fees") for i in range(5)] + [("C0", 1, "system_lag")])
    result = mine_complaint_rules(frame, customers_frame([f"C{i}" for i in range(5)]), None, AS_OF,
                                  RuleSettings(min_baskets=30), LABELS, TARGETS)
    assert_empty_and_well_formed(result, "fewer than min_baskets")
    assert result.summary["baskets"] == 5


def test_a_single_category_gives_no_rules_and_says_why() -> None:
    rng = np.random.default_rng(0)
    frame = complaints_frame([(f"C{i}", float(rng.uniform(0, 300)), "fees") for i in range(200)])
    result = mine_complaint_rules(frame, customers_frame([f"C{i}" for i in range(200)], {"C1": 20}), None, AS_OF,
                                  RuleSettings(), LABELS, TARGETS)
    assert_empty_and_well_formed(result, "only one complaint category")


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        RuleSettings(max_len=1)
    with pytest.raises(ValidationError):
        RuleSettings(algorithm="eclat")
    with pytest.raises(ValidationError):
        RuleSettings(window_dayz=30)
    assert RuleSettings(tags=["channel"]).tags == ("channel",)

"""Order, chains and root causes of complaints that travel together.

For a strong pair {A, B} (a complaint rule between the two passed the support,
confidence and lift thresholds), each basket that has both (one customer's complaint
episode, see `models.rules`) votes "A first" if more of its (A complaint, B complaint)
pairs have A strictly earlier than the other way round, "B first" if fewer, and ties
otherwise. If the order were chance, "A first" would be a fair coin among the untied
baskets; the one-sided sign test (binomial, p = 1/2) gives the p-value of the observed
majority, Holm-adjusted over all pairs tested. Significant pairs are oriented edges
A -> B.

Chains are paths of edges (A -> B -> C) followed by baskets in that order (the first
complaints of the categories in the basket come in strictly increasing time). A chain
that a one-longer chain containing it keeps for at least `chain_absorb_share` of its
baskets is folded into the longer one, so the table lists whole chains rather than all
their pieces. Chains rank by customers who went
through the whole chain, then by ordered confidence (share of the root category's
baskets that go through the whole chain in order).

Root causes: for each category on an edge, the complaints of categories reachable from
it that came after it in the same basket (downstream complaints), and the customers
they concern. The category with the most downstream complaints is the one to fix first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from models.rules import Baskets, RuleSettings

CHAIN_SEPARATOR = " -> "

PAIR_COLUMNS: tuple[str, ...] = (
    "first_category", "then_category", "baskets_with_both", "first_then", "then_first", "same_time",
    "order_share", "p_value", "p_value_adjusted", "significant", "ordered_confidence", "lift",
    "customers_first_then")
CHAIN_COLUMNS: tuple[str, ...] = (
    "rank", "chain", "length", "root", "last", "baskets_in_order", "customers_in_order", "ordered_confidence",
    "weakest_step_confidence", "max_link_p_value", "churn_eligible_baskets", "churn_rate_after", "churn_lift")
ROOT_COLUMNS: tuple[str, ...] = (
    "rank", "category", "is_root", "downstream_categories", "downstream_complaints", "baskets_leading_downstream",
    "customers_affected", "baskets_with_category", "share_of_baskets_leading", "churn_rate_after", "churn_lift")


def distinct_count(values: np.ndarray) -> int:
    """Number of distinct values (sort-based: numpy's hash-based unique is slow on big int arrays)."""
    if len(values) == 0:
        return 0
    ordered = np.sort(values)
    return int(1 + np.count_nonzero(ordered[1:] != ordered[:-1]))


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype="float64") for name in columns})


@dataclass(frozen=True)
class CategoryEvents:
    """Per category, in CSR layout: the baskets it appears in with its first time there, and its complaints.

    `occurrence_key` is the first row (in basket-then-time order) of the complaint's
    (basket, time) group, so "same basket, strictly earlier" is the key range from the
    basket's first row (`basket_first_row`) up to, not including, the complaint's key.
    """

    names: tuple[str, ...]
    item_codes: np.ndarray
    offsets: np.ndarray
    basket: np.ndarray
    first_us: np.ndarray
    occurrence_offsets: np.ndarray
    occurrence_basket: np.ndarray
    occurrence_key: np.ndarray
    basket_first_row: np.ndarray
    n_baskets: int

    def of(self, category: int) -> tuple[np.ndarray, np.ndarray]:
        """Baskets of one category and the category's first time in each."""
        span = slice(self.offsets[category], self.offsets[category + 1])
        return self.basket[span], self.first_us[span]

    def occurrences(self, category: int) -> tuple[np.ndarray, np.ndarray]:
        """Basket and (basket, time) key of every complaint of one category, sorted by key."""
        span = slice(self.occurrence_offsets[category], self.occurrence_offsets[category + 1])
        return self.occurrence_basket[span], self.occurrence_key[span]

    def count(self, category: int) -> int:
        return int(self.offsets[category + 1] - self.offsets[category])

    def index_of_item(self, n_items: int) -> np.ndarray:
        """Category index of each complaint item code (-1 for non-category items)."""
        lookup = np.full(n_items, -1, dtype=np.int64)
        lookup[self.item_codes] = np.arange(len(self.item_codes))
        return lookup


def category_events(baskets: "Baskets") -> CategoryEvents:
    """The category part of the baskets, grouped by category."""
    codes = baskets.category_items
    lookup = np.full(len(baskets.items), -1, dtype=np.int64)
    lookup[codes] = np.arange(len(codes))
    category = lookup[baskets.pair_item] if len(baskets.pair_item) else np.empty(0, dtype=np.int64)
    basket, first = baskets.pair_basket, baskets.pair_first_us
    if (category < 0).any():
        mine = category >= 0
        category, basket, first = category[mine], basket[mine], first[mine]
    order = np.argsort(category, kind="stable")  # the incidence is sorted by basket: that order is kept
    offsets = np.r_[0, np.cumsum(np.bincount(category, minlength=len(codes)))].astype(np.int64)

    # Complaints (rows sorted by basket and time): a stable sort by category keeps that order.
    # A complaint's key is the first row of its (basket, time) group, so within a basket a
    # smaller key means strictly earlier, and a basket's keys start at its first row.
    basket_of_row, times = baskets.complaint_basket, baskets.complaint_us
    group_start = np.arange(len(times))
    same_group = (basket_of_row[1:] == basket_of_row[:-1]) & (times[1:] == times[:-1])
    group_start[1:][same_group] = 0
    np.maximum.accumulate(group_start, out=group_start)
    del same_group
    row_category = lookup[np.maximum(baskets.complaint_item, 0)]
    row_category[baskets.complaint_item < 0] = -1
    rows = np.flatnonzero(row_category >= 0)
    rows = rows[np.argsort(row_category[rows], kind="stable")]
    occurrence_offsets = np.r_[0, np.cumsum(np.bincount(row_category[rows], minlength=len(codes)))].astype(np.int64)
    rows_per_basket = np.bincount(basket_of_row, minlength=baskets.n_baskets)
    names = tuple(baskets.items[c].removeprefix("category=") for c in codes)
    return CategoryEvents(names=names, item_codes=codes, offsets=offsets, basket=basket[order],
                          first_us=first[order], occurrence_offsets=occurrence_offsets,
                          occurrence_basket=basket_of_row[rows], occurrence_key=group_start[rows],
                          basket_first_row=np.cumsum(rows_per_basket) - rows_per_basket,
                          n_baskets=baskets.n_baskets)


def _earlier_pairs(events: CategoryEvents, earlier: int, later: int, common: np.ndarray) -> np.ndarray:
    """Per basket of `common` (sorted): how many (`earlier` complaint, `later` complaint) pairs are in that order."""
    _, earlier_keys = events.occurrences(earlier)
    later_baskets, later_keys = events.occurrences(later)
    inside, _ = _lookup(common, common, later_baskets)
    later_baskets, later_keys = later_baskets[inside], later_keys[inside]
    before = (np.searchsorted(earlier_keys, later_keys, side="left")
              - np.searchsorted(earlier_keys, events.basket_first_row[later_baskets], side="left"))
    return np.bincount(np.searchsorted(common, later_baskets), weights=before, minlength=len(common))


def _lookup(sorted_baskets: np.ndarray, times: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each wanted basket: is it in `sorted_baskets`, and the time there (undefined where absent)."""
    if len(sorted_baskets) == 0:
        return np.zeros(len(wanted), dtype=bool), np.zeros(len(wanted), dtype=np.int64)
    position = np.minimum(np.searchsorted(sorted_baskets, wanted), len(sorted_baskets) - 1)
    return sorted_baskets[position] == wanted, times[position]


def strong_pairs(rules: pd.DataFrame, events: CategoryEvents) -> list[tuple[int, int]]:
    """Category pairs {A, B} with a one-to-one complaint rule in either direction (sorted, unique)."""
    if rules.empty:
        return []
    index = {f"category={name}": i for i, name in enumerate(events.names)}
    found: set[tuple[int, int]] = set()
    for antecedent, consequent in zip(rules["antecedents"], rules["consequents"]):
        if len(antecedent) == 1 and len(consequent) == 1:
            a, c = next(iter(antecedent)), next(iter(consequent))
            if a in index and c in index:
                found.add((min(index[a], index[c]), max(index[a], index[c])))
    return sorted(found)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error over all pairs tested)."""
    m = len(p_values)
    if m == 0:
        return p_values.astype(float)
    order = np.argsort(p_values, kind="stable")
    scaled = np.minimum(1.0, p_values[order] * (m - np.arange(m)))
    adjusted = np.empty(m, dtype=float)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def order_test(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """One-sided sign test that `first` beats `then` more often than a fair coin would (p-values)."""
    trials = first + then
    from scipy.stats import binom  # deferred: scipy.stats takes ~1 s to import, every CLI call paid it

    p = binom.sf(first - 1, trials, 0.5)
    return np.where(trials > 0, p, 1.0)


def order_pairs(events: CategoryEvents, pairs: Iterable[tuple[int, int]], customer: np.ndarray, n_baskets: int,
                alpha: float) -> pd.DataFrame:
    """Orient each pair by which category usually comes first in a basket, with the sign test.

    A basket votes "A first" when more (A complaint, B complaint) pairs of it have A
    strictly earlier than B than the other way round, a tie when as many. Counting every
    pair of complaints, not only each category's first complaint, keeps a category that
    is often repeated in a basket from looking "first" by chance.
    """
    rows: list[dict[str, object]] = []
    for a, b in pairs:
        baskets_a, _ = events.of(a)
        baskets_b, _ = events.of(b)
        hit, _ = _lookup(baskets_b, baskets_b, baskets_a)
        common = baskets_a[hit]
        a_then_b = _earlier_pairs(events, a, b, common)
        b_then_a = _earlier_pairs(events, b, a, common)
        a_first, b_first = int((a_then_b > b_then_a).sum()), int((b_then_a > a_then_b).sum())
        source, target = (a, b) if a_first >= b_first else (b, a)
        forward = (a_then_b > b_then_a) if source == a else (b_then_a > a_then_b)
        rows.append({
            "source": source, "target": target, "first_category": events.names[source],
            "then_category": events.names[target], "baskets_with_both": len(common),
            "first_then": max(a_first, b_first), "then_first": min(a_first, b_first),
            "same_time": int((a_then_b == b_then_a).sum()),
            "ordered_confidence": max(a_first, b_first) / events.count(source),
            "lift": n_baskets * len(common) / (events.count(a) * events.count(b)),
            "customers_first_then": distinct_count(customer[common[forward]]),
        })
    if not rows:
        return _empty(("source", "target", *PAIR_COLUMNS)).astype(
            {"source": np.int64, "target": np.int64, "significant": bool})
    table = pd.DataFrame(rows)
    first_then = table["first_then"].to_numpy(dtype=np.int64)
    then_first = table["then_first"].to_numpy(dtype=np.int64)
    p_value = order_test(first_then, then_first)
    adjusted = holm(p_value)
    table = table.assign(
        order_share=np.where(first_then + then_first > 0, first_then / np.maximum(first_then + then_first, 1), 0.5),
        p_value=p_value, p_value_adjusted=adjusted, significant=(adjusted < alpha) & (first_then > then_first))
    table = table.sort_values(["significant", "p_value_adjusted", "first_then", "first_category", "then_category"],
                              ascending=[False, True, False, True, True], kind="stable").reset_index(drop=True)
    return table[["source", "target", *PAIR_COLUMNS]].astype({"first_category": "str", "then_category": "str"})


@dataclass
class _ChainStats:
    baskets: int
    customers: int
    eligible: int
    churned: int


def find_chains(events: CategoryEvents, edges: pd.DataFrame, customer: np.ndarray, eligible: np.ndarray | None,
                churned: np.ndarray | None, settings: "RuleSettings") -> tuple[pd.DataFrame, list[str]]:
    """Chains along the oriented edges that enough baskets follow in order, folded and ranked."""
    messages: list[str] = []
    if edges.empty:
        return _empty(CHAIN_COLUMNS), messages
    following: dict[int, list[int]] = {}
    link_p: dict[tuple[int, int], float] = {}
    for source, target, p in zip(edges["source"], edges["target"], edges["p_value_adjusted"]):
        following.setdefault(int(source), []).append(int(target))
        link_p[(int(source), int(target))] = float(p)
    for source in following:
        following[source].sort(key=lambda c: events.names[c])

    found: dict[tuple[int, ...], _ChainStats] = {}
    examined = 0
    stopped = False
    for root in sorted(following, key=lambda c: events.names[c], reverse=True):
        baskets, times = events.of(root)
        stack = [((root,), baskets, times)]
        while stack and not stopped:
            path, baskets, times = stack.pop()
            for target in reversed(following.get(path[-1], [])):
                if target in path:
                    continue
                examined += 1
                if examined > settings.max_chain_candidates:
                    stopped = True
                    break
                hit, target_times = _lookup(*events.of(target), baskets)
                in_order = hit & (target_times > times)
                if in_order.sum() < settings.min_chain_baskets:
                    continue
                chain_baskets, chain_times = baskets[in_order], target_times[in_order]
                chain = path + (target,)
                found[chain] = _ChainStats(
                    baskets=len(chain_baskets), customers=distinct_count(customer[chain_baskets]),
                    eligible=int(eligible[chain_baskets].sum()) if eligible is not None else 0,
                    churned=int(churned[chain_baskets].sum()) if churned is not None else 0)
                if len(chain) < settings.max_chain_length:
                    stack.append((chain, chain_baskets, chain_times))
        if stopped:
            messages.append(f"chain search stopped after max_chain_candidates={settings.max_chain_candidates:,} "
                            "candidates: the chain table may be incomplete")
            break
    if not found:
        return _empty(CHAIN_COLUMNS), messages

    absorbed: set[tuple[int, ...]] = set()
    for chain, stats in found.items():
        if len(chain) < 3:
            continue
        for drop in range(len(chain)):
            shorter = chain[:drop] + chain[drop + 1:]
            if shorter in found and stats.baskets >= settings.chain_absorb_share * found[shorter].baskets:
                absorbed.add(shorter)

    base_rate = (float(churned[eligible].mean()) if eligible is not None and churned is not None and eligible.any()
                 else float("nan"))
    rows = []
    for chain, stats in found.items():
        if chain in absorbed:
            continue
        steps = [found[chain[:k + 1]].baskets / (found[chain[:k]].baskets if k > 1 else events.count(chain[0]))
                 for k in range(1, len(chain))]
        rate = stats.churned / stats.eligible if stats.eligible else float("nan")
        rows.append({
            "chain": CHAIN_SEPARATOR.join(events.names[c] for c in chain), "length": len(chain),
            "root": events.names[chain[0]], "last": events.names[chain[-1]], "baskets_in_order": stats.baskets,
            "customers_in_order": stats.customers, "ordered_confidence": stats.baskets / events.count(chain[0]),
            "weakest_step_confidence": min(steps),
            "max_link_p_value": max(link_p[(chain[k], chain[k + 1])] for k in range(len(chain) - 1)),
            "churn_eligible_baskets": stats.eligible, "churn_rate_after": rate,
            "churn_lift": rate / base_rate if base_rate and np.isfinite(base_rate) and base_rate > 0 else float("nan"),
        })
    table = pd.DataFrame(rows).sort_values(["customers_in_order", "ordered_confidence", "chain"],
                                           ascending=[False, False, True], kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table[list(CHAIN_COLUMNS)].astype({"chain": "str", "root": "str", "last": "str"}), messages


def _reachable(following: dict[int, list[int]], start: int) -> set[int]:
    seen: set[int] = set()
    frontier = list(following.get(start, []))
    while frontier:
        node = frontier.pop()
        if node not in seen and node != start:
            seen.add(node)
            frontier += following.get(node, [])
    return seen


def root_causes(events: CategoryEvents, edges: pd.DataFrame, baskets: "Baskets", eligible: np.ndarray | None,
                churned: np.ndarray | None) -> pd.DataFrame:
    """Categories on oriented edges ranked by the later complaints (downstream) that follow them."""
    if edges.empty:
        return _empty(ROOT_COLUMNS)
    following: dict[int, list[int]] = {}
    for source, target in zip(edges["source"], edges["target"]):
        following.setdefault(int(source), []).append(int(target))
    nodes = sorted(set(edges["source"].astype(int)) | set(edges["target"].astype(int)))
    has_incoming = set(edges["target"].astype(int))

    row_category = events.index_of_item(len(baskets.items))[np.maximum(baskets.complaint_item, 0)]
    row_category = np.where(baskets.complaint_item >= 0, row_category, -1)
    rows_per_basket = np.bincount(baskets.complaint_basket, minlength=baskets.n_baskets)
    first_row = np.cumsum(rows_per_basket) - rows_per_basket
    base_rate = (float(churned[eligible].mean()) if eligible is not None and churned is not None and eligible.any()
                 else float("nan"))

    records = []
    for node in nodes:
        downstream = _reachable(following, node)
        node_baskets, node_times = events.of(node)
        lengths = rows_per_basket[node_baskets]
        starts = np.repeat(first_row[node_baskets] - np.cumsum(lengths) + lengths, lengths)
        rows = starts + np.arange(lengths.sum())
        owner = np.repeat(node_baskets, lengths)
        is_downstream = np.isin(row_category[rows], list(downstream)) if downstream else np.zeros(len(rows), bool)
        later = is_downstream & (baskets.complaint_us[rows] > np.repeat(node_times, lengths))
        leading = owner[later]
        leading = leading[np.r_[True, leading[1:] != leading[:-1]]] if len(leading) else leading
        eligible_leading = int(eligible[leading].sum()) if eligible is not None else 0
        rate = (float(churned[leading].sum()) / eligible_leading) if eligible_leading and churned is not None \
            else float("nan")
        records.append({
            "category": events.names[node], "is_root": node not in has_incoming,
            "downstream_categories": ", ".join(sorted(events.names[c] for c in downstream)),
            "downstream_complaints": int(later.sum()), "baskets_leading_downstream": len(leading),
            "customers_affected": distinct_count(baskets.customer[leading]),
            "baskets_with_category": events.count(node),
            "share_of_baskets_leading": len(leading) / events.count(node) if events.count(node) else 0.0,
            "churn_rate_after": rate,
            "churn_lift": rate / base_rate if np.isfinite(rate) and np.isfinite(base_rate) and base_rate > 0
            else float("nan"),
        })
    table = pd.DataFrame(records).sort_values(
        ["downstream_complaints", "customers_affected", "category"], ascending=[False, False, True],
        kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table[list(ROOT_COLUMNS)].astype({"category": "str", "downstream_categories": "str"})

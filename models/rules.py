"""Complaint association rules: which complaints travel together, and which end in churn.

A *basket* is one customer's complaint episode: the customer's first complaint opens a
window of `window_days`; every complaint of that customer inside the window belongs to
the basket; the first complaint after the window opens the next basket. Windows never
overlap, so each complaint is counted once and supports are shares of complaint
episodes. The items of a basket are `category=<x>` (and, if configured, `channel=<x>`,
`product=<x>`, `priority=<x>`), plus outcome items:

- `open_complaint`: a complaint of the basket is still open at the data's as-of date;
- `breached_target`: a complaint of the basket missed its tier's first-response or
  resolution target (`FeatureSettings.complaint_targets`);
- `churned`: the customer churned within `labels.horizon_days` after the basket's last
  complaint. Only baskets whose horizon is complete within the data get this item; the
  churn rules are mined on those baskets only.

Frequent itemsets are mined once with mlxtend (FP-growth, or Apriori with
`low_memory=True`) over every basket, with an internal item marking the baskets whose
horizon is complete; the itemsets containing it, with that item removed and their support
divided by its support, are exactly the frequent itemsets of the horizon-complete baskets
(every subset of a frequent itemset is frequent), so one pass serves both populations.
Memory is bounded by caps: the `max_items` most frequent items, the first
`max_basket_items` items of each basket, `max_len`, and `max_itemsets` (before mining,
min_support is raised until an upper bound of the number of frequent itemsets, counted as
cliques of the frequent-pair graph, is under the cap). Every cap that bites adds a message.

The ordering, chains and root causes are in `models.chains`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import sparse
from scipy.special import comb

from features._grouping import NEVER, US_PER_DAY, US_PER_HOUR, cutoff_us, datetimes_us
from features.settings import LabelSettings, Strict, TierTarget
from models import chains as chain_mining
from models.chains import distinct_count

ItemTag = Literal["channel", "product", "priority"]

CHURNED = "churned"
OPEN_COMPLAINT = "open_complaint"
BREACHED_TARGET = "breached_target"
OUTCOMES: tuple[str, ...] = (CHURNED, OPEN_COMPLAINT, BREACHED_TARGET)
HORIZON_COMPLETE = "_horizon_complete"
"""Internal item of the baskets whose churn horizon is complete; never reported."""

ITEM_SEPARATOR = " & "
RULE_METRICS = ["antecedent support", "consequent support", "support", "confidence", "lift", "leverage",
                "conviction"]

RULE_COLUMNS: tuple[str, ...] = (
    "antecedents", "consequents", "antecedent_size", "baskets", "customers", "antecedent_support",
    "consequent_support", "support", "confidence", "lift", "leverage", "conviction")
OUTCOME_RULE_COLUMNS: tuple[str, ...] = (
    "outcome", "antecedents", "antecedent_size", "baskets_with_antecedent", "baskets_with_outcome",
    "customers_with_antecedent", "customers_with_outcome", "support", "outcome_rate", "base_rate", "lift",
    "leverage", "conviction")


class RuleSettings(Strict):
    """How complaint baskets are built and mined (the `rules` config section)."""

    window_days: int = Field(
        default=30, gt=0, le=365,
        description="Length of a complaint episode: a customer's complaints within this many days of the "
                    "episode's first complaint form one basket")
    tags: tuple[ItemTag, ...] = Field(
        default=(), description="Extra items per complaint besides its category: channel, product, priority")
    algorithm: Literal["fpgrowth", "apriori"] = Field(
        default="fpgrowth", description="fpgrowth (default) or apriori (mlxtend, low_memory=True)")
    min_support: float = Field(
        default=0.005, gt=0, le=1, description="Minimum share of baskets an itemset must appear in")
    min_basket_count: int = Field(
        default=5, ge=1, description="Minimum number of baskets an itemset must appear in (floor for small data)")
    min_confidence: float = Field(default=0.1, ge=0, le=1, description="Minimum confidence of a complaint rule")
    min_lift: float = Field(default=1.5, gt=0, description="Minimum lift of a complaint rule (1 = independence)")
    outcome_min_lift: float = Field(
        default=1.2, gt=0, description="Minimum lift over the base rate of a churn / open / breached rule")
    max_len: int = Field(default=4, ge=2, le=6, description="Most items in one rule (antecedent + consequent)")
    max_items: int = Field(
        default=50, ge=2, le=300, description="Keep only this many most frequent complaint items")
    max_basket_items: int = Field(
        default=10, ge=2, le=50, description="Keep only the first this-many distinct items of a basket")
    max_itemsets: int = Field(
        default=50_000, ge=100, le=2_000_000,
        description="Cap on the possible number of frequent itemsets; min_support is raised to respect it")
    max_rules: int = Field(default=500, ge=1, description="Most rules reported per table (highest lift first)")
    min_baskets: int = Field(default=30, ge=1, description="Fewer baskets than this: nothing is mined")
    order_alpha: float = Field(
        default=0.01, gt=0, lt=1,
        description="Significance level of the order test (one-sided sign test, Holm-adjusted over pairs)")
    min_chain_baskets: int = Field(
        default=10, ge=1, description="A chain is kept only if this many baskets go through it in order")
    max_chain_length: int = Field(default=6, ge=2, le=10, description="Most categories in one chain")
    chain_absorb_share: float = Field(
        default=0.5, gt=0, le=1,
        description="A chain is folded into a one-longer chain containing it that keeps at least this share "
                    "of its in-order baskets (so sub-chains of a chain are not listed separately)")
    max_chain_candidates: int = Field(
        default=20_000, ge=10, description="Cap on the chains examined (the search stops there, with a message)")


# ---------------------------------------------------------------------------- baskets

@dataclass(frozen=True)
class Baskets:
    """Complaint baskets as flat arrays; customers are integer codes, never ids.

    `pair_*` is the basket-item incidence (one row per item present in a basket, with the
    time it first appears there); `complaint_*` has one row per complaint, sorted by
    basket and time, with the code of its category item (-1 if the item was dropped).
    """

    customer: np.ndarray
    start_us: np.ndarray
    end_us: np.ndarray
    items: tuple[str, ...]
    pair_basket: np.ndarray
    pair_item: np.ndarray
    pair_first_us: np.ndarray
    complaint_basket: np.ndarray
    complaint_item: np.ndarray
    complaint_us: np.ndarray
    customer_ids: pd.Index
    open_complaint: np.ndarray | None = None
    breached_target: np.ndarray | None = None
    messages: tuple[str, ...] = ()
    n_complaints: int = 0
    n_distinct_items: int = 0

    @property
    def n_baskets(self) -> int:
        return len(self.customer)

    @property
    def category_items(self) -> np.ndarray:
        """Codes of the `category=` items."""
        return np.array([i for i, name in enumerate(self.items) if name.startswith("category=")], dtype=np.int64)


def _empty_baskets(messages: list[str], n_complaints: int = 0) -> Baskets:
    empty_i = np.empty(0, dtype=np.int64)
    return Baskets(customer=empty_i, start_us=empty_i, end_us=empty_i, items=(), pair_basket=empty_i,
                   pair_item=empty_i, pair_first_us=empty_i, complaint_basket=empty_i, complaint_item=empty_i,
                   complaint_us=empty_i, customer_ids=pd.Index([], dtype="str"), messages=tuple(messages),
                   n_complaints=n_complaints)


def segment_keys(code: np.ndarray, times: np.ndarray, reference: np.ndarray, side: str = "left") -> np.ndarray:
    """Sortable int64 keys of (customer code, time), exact at any time resolution.

    A time is replaced by its rank in the sorted `reference` times (the number of them
    before it; with side="right", at or before it), so `code * (len(reference) + 2) + rank`
    cannot overflow. For reference times t and any time q: t >= q exactly when
    key(t, "left") >= key(q, "left"), and t <= q exactly when key(t, "left") < key(q, "right").
    """
    # Searching sorted queries is several times faster than random ones (cache friendly).
    order = np.argsort(times, kind="stable")
    rank = np.empty(len(times), dtype=np.int64)
    rank[order] = np.searchsorted(reference, times[order], side=side)
    return code.astype(np.int64) * (len(reference) + 2) + rank


def basket_anchors(code: np.ndarray, opened_us: np.ndarray, window_us: int) -> np.ndarray:
    """Which complaints open a basket; rows must be sorted by (customer, time).

    The first complaint of a customer opens a basket; the next one at or after
    `opened + window` opens the next. Each round of the loop advances every customer by
    one basket at once, so the loop runs (most baskets of one customer) times.
    """
    n = len(code)
    anchor = np.zeros(n, dtype=bool)
    if n == 0:
        return anchor
    reference = np.sort(opened_us)
    keys = segment_keys(code, opened_us, reference)
    next_row = np.searchsorted(keys, segment_keys(code, opened_us + window_us, reference), side="left")
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
    block_end = np.repeat(np.r_[starts[1:], n], np.diff(np.r_[starts, n]))
    current = starts
    while current.size:
        anchor[current] = True
        following = next_row[current]
        current = following[following < block_end[current]]
    return anchor


def _item_codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes of a text column against its sorted distinct values (-1 where missing)."""
    if not pd.api.types.is_string_dtype(values.dtype):
        values = values.astype("str").where(values.notna())
    codes, levels = pd.factorize(values, sort=True)
    return codes.astype(np.int64, copy=False), [str(level) for level in levels]


def _first_per_basket(basket: np.ndarray, item: np.ndarray, times: np.ndarray,
                      n_levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(basket, item, first time) of each distinct item of each basket, sorted by (basket, item).

    Rows must be sorted by time within basket, so the first row of a (basket, item) key
    is the item's first occurrence.
    """
    valid = item >= 0
    key = basket[valid] * n_levels + item[valid]
    unique, first = np.unique(key, return_index=True)
    return unique // n_levels, unique % n_levels, times[valid][first]


def _keep_top_items(pair_item: np.ndarray, item_names: list[str], max_items: int,
                    messages: list[str]) -> tuple[np.ndarray, list[str]]:
    """Code remapping that keeps the `max_items` items in most baskets (ties: name order); -1 = dropped."""
    n_distinct = len(item_names)
    if n_distinct <= max_items:
        return np.arange(n_distinct), item_names
    counts = np.bincount(pair_item, minlength=n_distinct)
    ranked = np.lexsort((np.arange(n_distinct), -counts))
    keep = np.sort(ranked[:max_items])
    remap = np.full(n_distinct, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    dropped = counts[ranked[max_items:]].sum()
    messages.append(f"{n_distinct:,} distinct complaint items: kept the {max_items} most frequent (max_items); "
                    f"the {n_distinct - len(keep):,} rarer ones ({dropped / counts.sum():.1%} of basket items) "
                    "were dropped")
    return remap, [item_names[k] for k in keep]


def _first_items_only(pair_basket: np.ndarray, pair_item: np.ndarray, pair_first: np.ndarray, n_baskets: int,
                      max_basket_items: int, messages: list[str]) -> np.ndarray | None:
    """Mask of the incidence rows to keep so no basket has more than `max_basket_items` items (None: all)."""
    sizes = np.bincount(pair_basket, minlength=n_baskets)
    if not len(sizes) or sizes.max() <= max_basket_items:
        return None
    by_time = np.lexsort((pair_item, pair_first, pair_basket))
    position = np.arange(len(by_time)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    keep = np.zeros(len(by_time), dtype=bool)
    keep[by_time[position < max_basket_items]] = True
    messages.append(f"{int((sizes > max_basket_items).sum()):,} basket(s) had more than {max_basket_items} "
                    f"distinct items: only their first {max_basket_items} were kept (max_basket_items)")
    return keep


def _basket_flags(rows: np.ndarray | None, basket: np.ndarray, n_baskets: int) -> np.ndarray | None:
    """Per basket: does any of its complaints have the row flag."""
    if rows is None:
        return None
    flag = np.zeros(n_baskets, dtype=bool)
    flag[basket[rows]] = True
    return flag


def breached_targets(frame: pd.DataFrame, as_of_us: int, targets: dict[str, TierTarget]) -> np.ndarray | None:
    """Complaints that missed their tier's first-response or resolution target, as known at as_of.

    Same reading as the complaint features: a reply or closure at or after as_of has not
    happened yet; an unanswered (unresolved) complaint older than its target is late.
    Tiers without a target, and complaints without a priority, are never late. None when
    the complaints have no priority or no response/resolution times.
    """
    if "priority" not in frame.columns or not ({"first_response_at", "resolved_at"} & set(frame.columns)):
        return None
    opened = datetimes_us(frame["opened_at"])
    age = as_of_us - opened
    tier_codes, tiers = _item_codes(frame["priority"])

    def target_us(field_name: str) -> np.ndarray:
        per_tier = np.full(len(tiers) + 1, NEVER, dtype=np.int64)  # last slot: no priority
        for position, tier in enumerate(tiers):
            hours = getattr(targets[tier], field_name) if tier in targets else None
            if hours is not None:
                per_tier[position] = int(round(hours * US_PER_HOUR))
        return per_tier[tier_codes]

    resolved_at = (datetimes_us(frame["resolved_at"]) if "resolved_at" in frame.columns
                   else np.full(len(frame), NEVER, dtype=np.int64))
    resolved = resolved_at < as_of_us
    late = np.zeros(len(frame), dtype=bool)
    if "first_response_at" in frame.columns:
        response_target = target_us("first_response_hours")
        responded_at = datetimes_us(frame["first_response_at"])
        answered = responded_at < as_of_us
        late |= answered & (responded_at - opened > response_target)
        late |= ~answered & ~resolved & (age > response_target)
    if "resolved_at" in frame.columns:
        resolution_target = target_us("resolution_hours")
        late |= resolved & (resolved_at - opened > resolution_target)
        late |= ~resolved & (age > resolution_target)
    return late


def build_baskets(complaints: pd.DataFrame, as_of: pd.Timestamp, settings: RuleSettings,
                  targets: dict[str, TierTarget]) -> Baskets:
    """Complaint baskets (episodes of `window_days`) with their items; vectorised, no per-customer loop."""
    messages: list[str] = []
    as_of_us = cutoff_us(as_of)
    needed = list(dict.fromkeys(c for c in ("customer_id", "opened_at", "category", "priority", "first_response_at",
                                            "resolved_at", *settings.tags) if c in complaints.columns))
    usable = (complaints["opened_at"].notna() & complaints["category"].notna()
              & (complaints["opened_at"] < pd.Timestamp(as_of))).to_numpy(dtype=bool)
    frame = complaints[needed] if usable.all() else complaints.loc[usable, needed]
    if len(frame) < len(complaints):
        messages.append(f"{len(complaints) - len(frame):,} complaint(s) without a category or opening time, or "
                        f"opened on or after the as-of date {pd.Timestamp(as_of).date()}, were left out")
    if frame.empty:
        return _empty_baskets(messages + ["no complaints to build baskets from"], 0)

    # Customer codes in order of appearance: they only group rows, and every output is a
    # count, so results depend neither on the codes nor on the order of same-time complaints.
    customer_code, customer_ids = pd.factorize(frame["customer_id"], sort=False)
    opened = datetimes_us(frame["opened_at"])
    order = np.lexsort((opened, customer_code))
    code = customer_code[order].astype(np.int64)
    del customer_code
    opened = opened[order]
    anchor = basket_anchors(code, opened, settings.window_days * US_PER_DAY)
    basket = np.cumsum(anchor) - 1
    anchor_rows = np.flatnonzero(anchor)
    del anchor
    n_baskets = len(anchor_rows)
    last_rows = np.r_[anchor_rows[1:] - 1, len(code) - 1]

    # Items: category first, then the configured tags; each column's codes are offset.
    item_names: list[str] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    row_category = np.full(len(code), -1, dtype=np.int64)
    for column in ("category", *settings.tags):
        if column not in frame.columns:
            messages.append(f"complaints have no {column} column: no {column}= items")
            continue
        codes, levels = _item_codes(frame[column])
        codes = codes[order]
        if levels:
            b, i, t = _first_per_basket(basket, codes, opened, len(levels))
            parts.append((b, i + len(item_names), t))
            if column == "category":
                row_category = codes
            item_names += [f"{column}={level}" for level in levels]
        del codes
    if len(parts) == 1:
        (pair_basket, pair_item, pair_first), = parts
    else:
        pair_basket, pair_item, pair_first = (np.concatenate([p[k] for p in parts]) for k in range(3))
    del parts
    n_distinct = len(item_names)

    # Cap 1: the most frequent items only.
    remap, item_names = _keep_top_items(pair_item, item_names, settings.max_items, messages)
    if len(item_names) < n_distinct:
        pair_item = remap[pair_item]
        kept = pair_item >= 0
        pair_basket, pair_item, pair_first = pair_basket[kept], pair_item[kept], pair_first[kept]
        row_category = np.where(row_category >= 0, remap[np.maximum(row_category, 0)], -1)

    # Cap 2: the first `max_basket_items` distinct items of each basket, in time order.
    keep = _first_items_only(pair_basket, pair_item, pair_first, n_baskets, settings.max_basket_items, messages)
    if keep is not None:
        # Complaints whose category item was cut no longer count for chains and root causes.
        width = len(item_names)
        cut_keys = pair_basket[~keep] * width + pair_item[~keep]
        row_category = np.where((row_category >= 0) & np.isin(basket * width + row_category, cut_keys),
                                -1, row_category)
        pair_basket, pair_item, pair_first = pair_basket[keep], pair_item[keep], pair_first[keep]
    if len(pair_basket) > 1:
        key = pair_basket * max(len(item_names), 1) + pair_item
        if (np.diff(key) < 0).any():
            by_key = np.argsort(key, kind="stable")
            pair_basket, pair_item, pair_first = pair_basket[by_key], pair_item[by_key], pair_first[by_key]
        del key

    open_rows = None
    if "resolved_at" in frame.columns:
        open_rows = datetimes_us(frame["resolved_at"])[order] >= as_of_us
    late = breached_targets(frame, as_of_us, targets)
    return Baskets(
        customer=code[anchor_rows], start_us=opened[anchor_rows], end_us=opened[last_rows],
        items=tuple(item_names), pair_basket=pair_basket, pair_item=pair_item, pair_first_us=pair_first,
        complaint_basket=basket, complaint_item=row_category, complaint_us=opened,
        customer_ids=pd.Index(customer_ids, dtype="str"),
        open_complaint=_basket_flags(open_rows, basket, n_baskets),
        breached_target=_basket_flags(None if late is None else late[order], basket, n_baskets),
        messages=tuple(messages), n_complaints=len(code), n_distinct_items=n_distinct)


# ---------------------------------------------------------------------------- churn after a basket

@dataclass(frozen=True)
class ChurnLink:
    """Per basket: is its churn horizon complete (`eligible`), and did the customer churn in it."""

    eligible: np.ndarray
    churned: np.ndarray
    messages: tuple[str, ...] = ()


def _positions(ids: pd.Index, wanted: pd.Series | pd.Index) -> np.ndarray:
    """Position of each of `wanted` in `ids` (-1 if absent)."""
    return ids.get_indexer(pd.Index(wanted).astype("str"))


def churn_after_baskets(baskets: Baskets, customers: pd.DataFrame, transactions: pd.DataFrame | None,
                        as_of: pd.Timestamp, labels: LabelSettings, window_days: int) -> ChurnLink:
    """Whether each customer churned within `labels.horizon_days` after each basket's last complaint.

    Same definitions as the churn labels (`features.labels`), with the basket's last
    complaint as the cutoff and the same half-open windows: `closure`: customers.closed_date
    in [basket end, basket end + horizon); `inactivity`: no transaction in that window, or
    the account closes in it. A basket counts (`eligible`) only if its window and its
    horizon both end by as_of, the customer is in the customers table and not closed before
    the basket end, and (inactivity) had a transaction in [end - lookback, end).
    """
    n = baskets.n_baskets
    none = np.zeros(n, dtype=bool)
    messages: list[str] = []
    as_of_us = cutoff_us(as_of)
    horizon_us = labels.horizon_days * US_PER_DAY
    end = baskets.end_us
    complete = np.maximum(baskets.start_us + window_days * US_PER_DAY, end + horizon_us) <= as_of_us
    first_rows = ~customers["customer_id"].duplicated().to_numpy(dtype=bool)
    position = _positions(pd.Index(customers["customer_id"][first_rows]).astype("str"), baskets.customer_ids)
    position = position[baskets.customer]
    known = position >= 0
    closed = np.full(n, NEVER, dtype=np.int64)
    if "closed_date" in customers.columns:
        closed_all = datetimes_us(customers["closed_date"][first_rows], missing=NEVER)
        closed[known] = closed_all[position[known]]
    # The same half-open windows as the churn labels: [end, end + horizon).
    eligible = complete & known & (closed >= end)
    closes = closed < end + horizon_us
    if labels.definition == "closure":
        if "closed_date" not in customers.columns:
            return ChurnLink(none, none, ("customers have no closed_date column: no churn item (closure)",))
        churned = eligible & closes
    else:
        if transactions is None:
            return ChurnLink(none, none, ("no transactions table: no churn item (inactivity definition)",))
        tx_code = _positions(baskets.customer_ids, transactions["customer_id"])
        tx_us = datetimes_us(transactions["timestamp"])
        lookback_us = labels.inactivity_lookback_days * US_PER_DAY
        mine = ((tx_code >= 0) & (tx_us >= end.min(initial=NEVER) - lookback_us)
                & (tx_us < end.max(initial=0) + horizon_us))
        tx_code, tx_us = tx_code[mine].astype(np.int64), tx_us[mine]
        reference = np.sort(tx_us)
        keys = np.sort(segment_keys(tx_code, tx_us, reference))

        def transactions_before(moment: np.ndarray, inclusive: bool) -> np.ndarray:
            side = "right" if inclusive else "left"
            return np.searchsorted(keys, segment_keys(baskets.customer, moment, reference, side=side))

        before_end = transactions_before(end, inclusive=False)
        active = before_end > transactions_before(end - lookback_us, inclusive=False)
        eligible &= active
        silent = transactions_before(end + horizon_us, inclusive=False) == before_end
        churned = eligible & (silent | closes)
    if not complete.any():
        messages.append(f"no basket has a complete {labels.horizon_days}-day churn horizon before the as-of date: "
                        "no churn rules")
    return ChurnLink(eligible, churned, tuple(messages))


# ---------------------------------------------------------------------------- mining

def one_hot(baskets: Baskets, extra: dict[str, np.ndarray]) -> pd.DataFrame:
    """Basket x item boolean frame (mlxtend's input): complaint items, then the `extra` columns."""
    matrix = np.zeros((baskets.n_baskets, len(baskets.items) + len(extra)), dtype=bool)
    matrix[baskets.pair_basket, baskets.pair_item] = True
    for offset, values in enumerate(extra.values()):
        matrix[:, len(baskets.items) + offset] = values
    return pd.DataFrame(matrix, columns=[*baskets.items, *extra], copy=False)


def pair_counts(onehot: pd.DataFrame, chunk_rows: int = 250_000) -> np.ndarray:
    """Item x item co-occurrence counts (the diagonal holds each item's basket count), exact integers."""
    matrix = onehot.to_numpy(dtype=bool)
    total = np.zeros((matrix.shape[1], matrix.shape[1]), dtype=np.int64)
    for start in range(0, matrix.shape[0], chunk_rows):
        rows, columns = np.nonzero(matrix[start:start + chunk_rows])
        block = sparse.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, columns)),
                                  shape=(min(chunk_rows, matrix.shape[0] - start), matrix.shape[1]))
        total += np.asarray((block.T @ block).toarray(), dtype=np.int64)
    return total


def itemset_bound(counts: np.ndarray, min_count: int, max_len: int, basket_sizes: np.ndarray | None = None) -> float:
    """Upper bound of the number of itemsets of up to `max_len` items in at least `min_count` baskets.

    Two bounds, the smaller taken for each length k: every pair inside a frequent itemset
    is frequent, so a frequent k-itemset is a k-clique of the graph of frequent pairs
    (with vertices in increasing degree order, at most the sum over vertices of
    C(later neighbours, k-1) of them); and each needs `min_count` of the sum over baskets
    of C(frequent items in the basket, k) basket-subsets (`basket_sizes[s]` = number of
    baskets with s frequent items, when given).
    """
    frequent = np.diag(counts) >= min_count
    adjacency = counts[np.ix_(frequent, frequent)] >= min_count
    np.fill_diagonal(adjacency, False)
    order = np.argsort(adjacency.sum(axis=1), kind="stable")
    later = np.triu(adjacency[np.ix_(order, order)], 1).sum(axis=1)
    total = float(frequent.sum())
    for k in range(2, max_len + 1):
        bound = float(comb(later, k - 1).sum())
        if basket_sizes is not None:
            subsets = float((basket_sizes * comb(np.arange(len(basket_sizes)), k)).sum())
            bound = min(bound, np.floor(subsets / max(min_count, 1)))
        total += bound
    return total


def capped_min_count(onehot: pd.DataFrame, min_count: int, max_len: int, max_itemsets: int) -> int:
    """The smallest basket count >= `min_count` at which at most `max_itemsets` itemsets can be frequent."""
    counts = pair_counts(onehot)
    matrix = onehot.to_numpy(dtype=bool)

    def bound(threshold: int) -> float:
        frequent = np.flatnonzero(np.diag(counts) >= threshold)
        sizes = np.zeros(matrix.shape[0], dtype=np.int64)
        for start in range(0, len(frequent), 16):
            sizes += matrix[:, frequent[start:start + 16]].sum(axis=1)
        return itemset_bound(counts, threshold, max_len, np.bincount(sizes))

    if bound(min_count) <= max_itemsets:
        return min_count
    candidates = np.unique(counts[counts > min_count])
    if len(candidates) == 0:
        return min_count
    low, high = 0, len(candidates) - 1
    while low < high:
        middle = (low + high) // 2
        if bound(int(candidates[middle])) <= max_itemsets:
            high = middle
        else:
            low = middle + 1
    return int(candidates[low])


def frequent_itemsets(onehot: pd.DataFrame, min_count: int, max_len: int,
                      algorithm: Literal["fpgrowth", "apriori"] = "fpgrowth") -> pd.DataFrame:
    """Itemsets in at least `min_count` baskets (mlxtend), with columns support, itemsets, count, length.

    Apriori runs with `low_memory=True`: the default version materialises a boolean
    array of baskets x candidates and needs tens of GB on a million baskets.
    """
    n = len(onehot)
    columns = ["support", "itemsets", "count", "length"]
    if n == 0 or onehot.shape[1] == 0:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "itemsets" else float) for c in columns})
    # A hair under min_count / n, so float rounding inside mlxtend never drops an itemset at exactly min_count.
    min_support = min(1.0, (min_count - 0.5) / n)
    from mlxtend.frequent_patterns import apriori, fpgrowth  # deferred: keeps CLI start-up fast

    if algorithm == "fpgrowth":
        found = fpgrowth(onehot, min_support=min_support, use_colnames=True, max_len=max_len)
    else:
        found = apriori(onehot, min_support=min_support, use_colnames=True, max_len=max_len, low_memory=True)
    found = found.assign(count=np.rint(found["support"].to_numpy(dtype=float) * n).astype(np.int64),
                         length=found["itemsets"].map(len).astype(np.int64))
    found = found.assign(_key=found["itemsets"].map(lambda items: ITEM_SEPARATOR.join(sorted(items))))
    return (found.sort_values(["length", "count", "_key"], ascending=[True, False, True], kind="stable")
            .drop(columns="_key").reset_index(drop=True)[columns])


def _text(items: frozenset[str]) -> str:
    return ITEM_SEPARATOR.join(sorted(items))


def rules_from_itemsets(itemsets: pd.DataFrame, n_baskets: int, metric: str, threshold: float) -> pd.DataFrame:
    """mlxtend association rules of a downward-closed itemset table (empty frame if no itemset has 2+ items)."""
    if itemsets.empty or not (itemsets["length"] >= 2).any():
        return pd.DataFrame(columns=["antecedents", "consequents", *RULE_METRICS])
    from mlxtend.frequent_patterns import association_rules

    rules = association_rules(itemsets[["support", "itemsets"]], num_itemsets=n_baskets, metric=metric,
                              min_threshold=threshold, return_metrics=RULE_METRICS)
    return rules


class _Incidence:
    """Dense basket x item matrix with per-item basket lists, to count baskets and customers of itemsets."""

    def __init__(self, onehot: pd.DataFrame, customer: np.ndarray) -> None:
        self.matrix = onehot.to_numpy(dtype=bool)
        self.column = {name: i for i, name in enumerate(onehot.columns)}
        self.counts = self.matrix.sum(axis=0)
        self.customer = customer
        self._lists: dict[int, np.ndarray] = {}

    def baskets(self, items: frozenset[str] | set[str]) -> np.ndarray:
        """Baskets containing every item (sorted), starting from the rarest item's baskets."""
        cols = sorted((self.column[i] for i in items), key=lambda c: self.counts[c])
        rarest = cols[0]
        if rarest not in self._lists:
            self._lists[rarest] = np.flatnonzero(self.matrix[:, rarest])
        found = self._lists[rarest]
        if len(cols) > 1:
            found = found[self.matrix[np.ix_(found, cols[1:])].all(axis=1)]
        return found

    def customers(self, baskets: np.ndarray) -> int:
        return distinct_count(self.customer[baskets])


def _limit(rules: pd.DataFrame, max_rules: int) -> pd.DataFrame:
    rules = rules.assign(_a=rules["antecedents"].map(_text), _c=rules["consequents"].map(_text))
    rules = rules.sort_values(["lift", "support", "_a", "_c"], ascending=[False, False, True, True], kind="stable")
    return rules.head(max_rules)


def complaint_rule_table(rules: pd.DataFrame, incidence: _Incidence, n_baskets: int,
                         max_rules: int) -> pd.DataFrame:
    """Reported complaint rules: texts, counts of baskets and customers, metrics; highest lift first."""
    if rules.empty:
        return empty_frame(RULE_COLUMNS)
    top = _limit(rules, max_rules)
    baskets = [incidence.baskets(a | c) for a, c in zip(top["antecedents"], top["consequents"])]
    return pd.DataFrame({
        "antecedents": top["_a"].to_numpy(dtype=object), "consequents": top["_c"].to_numpy(dtype=object),
        "antecedent_size": top["antecedents"].map(len).to_numpy(dtype=np.int64),
        "baskets": np.rint(top["support"].to_numpy(dtype=float) * n_baskets).astype(np.int64),
        "customers": np.array([incidence.customers(b) for b in baskets], dtype=np.int64),
        "antecedent_support": top["antecedent support"].to_numpy(dtype=float),
        "consequent_support": top["consequent support"].to_numpy(dtype=float),
        "support": top["support"].to_numpy(dtype=float), "confidence": top["confidence"].to_numpy(dtype=float),
        "lift": top["lift"].to_numpy(dtype=float), "leverage": top["leverage"].to_numpy(dtype=float),
        "conviction": top["conviction"].to_numpy(dtype=float),
    }).astype({"antecedents": "str", "consequents": "str"})


def outcome_rule_table(rules: pd.DataFrame, outcome: str, incidence: _Incidence, population: np.ndarray | None,
                       max_rules: int) -> pd.DataFrame:
    """Rules `complaint items -> outcome` with lift over the outcome's base rate and customers affected.

    `population` masks the baskets the rules were mined on (None: all baskets).
    """
    if rules.empty:
        return empty_frame(OUTCOME_RULE_COLUMNS)
    top = _limit(rules, max_rules)
    with_antecedent: list[np.ndarray] = []
    for antecedent in top["antecedents"]:
        found = incidence.baskets(antecedent)
        with_antecedent.append(found if population is None else found[population[found]])
    outcome_column = incidence.matrix[:, incidence.column[outcome]]
    with_outcome = [b[outcome_column[b]] for b in with_antecedent]
    return pd.DataFrame({
        "outcome": outcome,
        "antecedents": top["_a"].to_numpy(dtype=object),
        "antecedent_size": top["antecedents"].map(len).to_numpy(dtype=np.int64),
        "baskets_with_antecedent": np.array([len(b) for b in with_antecedent], dtype=np.int64),
        "baskets_with_outcome": np.array([len(b) for b in with_outcome], dtype=np.int64),
        "customers_with_antecedent": np.array([incidence.customers(b) for b in with_antecedent], dtype=np.int64),
        "customers_with_outcome": np.array([incidence.customers(b) for b in with_outcome], dtype=np.int64),
        "support": top["support"].to_numpy(dtype=float),
        "outcome_rate": top["confidence"].to_numpy(dtype=float),
        "base_rate": top["consequent support"].to_numpy(dtype=float),
        "lift": top["lift"].to_numpy(dtype=float), "leverage": top["leverage"].to_numpy(dtype=float),
        "conviction": top["conviction"].to_numpy(dtype=float),
    }).astype({"outcome": "str", "antecedents": "str"})


def empty_frame(columns: tuple[str, ...]) -> pd.DataFrame:
    """A frame with no rows and the given columns (the shape of a degenerate result)."""
    return pd.DataFrame({name: pd.Series(dtype="float64") for name in columns})


# ---------------------------------------------------------------------------- the whole analysis

@dataclass
class RuleResult:
    """Everything the rules stage reports; frames have fixed columns even when empty."""

    rules: pd.DataFrame
    pairs: pd.DataFrame
    chains: pd.DataFrame
    roots: pd.DataFrame
    churn_rules: pd.DataFrame
    messages: list[str] = field(default_factory=list)
    summary: dict[str, object] = field(default_factory=dict)

    @classmethod
    def empty(cls, messages: list[str], summary: dict[str, object] | None = None) -> "RuleResult":
        return cls(rules=empty_frame(RULE_COLUMNS), pairs=empty_frame(chain_mining.PAIR_COLUMNS),
                   chains=empty_frame(chain_mining.CHAIN_COLUMNS), roots=empty_frame(chain_mining.ROOT_COLUMNS),
                   churn_rules=empty_frame(OUTCOME_RULE_COLUMNS), messages=messages,
                   summary={**_empty_summary(), **(summary or {})})


def _empty_summary() -> dict[str, object]:
    return {"complaints": 0, "baskets": 0, "customers": 0, "items": 0, "distinct_items": 0, "itemsets": 0,
            "min_basket_count_used": 0, "min_support_used": 0.0, "rules": 0, "order_pairs_tested": 0,
            "ordered_pairs": 0, "chains": 0, "root_categories": 0, "churn_eligible_baskets": 0,
            "churn_base_rate": float("nan"), "churn_rules": 0, "outcome_rules": 0, "top_lift": float("nan"),
            "top_churn_lift": float("nan")}


def _only(itemsets: pd.DataFrame, allowed: set[str]) -> pd.DataFrame:
    return itemsets[itemsets["itemsets"].map(lambda items: items <= allowed)]


def mine_complaint_rules(complaints: pd.DataFrame | None, customers: pd.DataFrame,
                         transactions: pd.DataFrame | None, as_of: pd.Timestamp, settings: RuleSettings,
                         labels: LabelSettings, targets: dict[str, TierTarget]) -> RuleResult:
    """Complaint rules, ordered pairs, chains, root causes and churn rules from the complaint history.

    Pure: frames in, frames out; the inputs are never modified. Degenerate inputs (no
    complaints, one category, too few baskets) give empty frames and a message.
    """
    if complaints is None:
        return RuleResult.empty(["no complaints table: nothing to mine"])
    baskets = build_baskets(complaints, as_of, settings, targets)
    messages = list(baskets.messages)
    summary: dict[str, object] = {"complaints": baskets.n_complaints, "baskets": baskets.n_baskets,
                                  "customers": distinct_count(baskets.customer),
                                  "items": len(baskets.items), "distinct_items": baskets.n_distinct_items}
    if baskets.n_baskets == 0:
        return RuleResult.empty(messages, summary)
    if baskets.n_baskets < settings.min_baskets:
        return RuleResult.empty(messages + [f"only {baskets.n_baskets} basket(s), fewer than min_baskets="
                                            f"{settings.min_baskets}: nothing mined"], summary)
    n = baskets.n_baskets
    if len(baskets.category_items) < 2:
        messages.append("only one complaint category: no co-occurrence, order or chain to find")

    churn = churn_after_baskets(baskets, customers, transactions, as_of, labels, settings.window_days)
    messages += churn.messages
    n_eligible = int(churn.eligible.sum())
    n_churned = int(churn.churned.sum())
    extra: dict[str, np.ndarray] = {}
    if baskets.open_complaint is not None:
        extra[OPEN_COMPLAINT] = baskets.open_complaint
    if baskets.breached_target is not None:
        extra[BREACHED_TARGET] = baskets.breached_target
    mine_churn = n_eligible >= settings.min_baskets and n_churned > 0
    if n_eligible and not mine_churn:
        messages.append(f"{n_eligible} horizon-complete basket(s) and {n_churned} churned: too few for churn rules")
    if mine_churn:
        extra[HORIZON_COMPLETE] = churn.eligible
        extra[CHURNED] = churn.churned

    # Thresholds as basket counts: one for all baskets, one within the horizon-complete ones.
    count_all = max(int(np.ceil(settings.min_support * n - 1e-9)), settings.min_basket_count)
    count_eligible = (max(int(np.ceil(settings.min_support * n_eligible - 1e-9)), settings.min_basket_count)
                      if mine_churn else count_all)
    onehot = one_hot(baskets, extra)
    max_len = settings.max_len + (1 if mine_churn else 0)
    wanted = min(count_all, count_eligible)
    used = capped_min_count(onehot, wanted, max_len, settings.max_itemsets)
    if used > wanted:
        messages.append(f"min_support raised from {wanted / n:.4g} to {used / n:.4g} ({wanted:,} -> {used:,} "
                        f"baskets) so that at most max_itemsets={settings.max_itemsets:,} itemsets can be frequent")
        count_all, count_eligible = max(count_all, used), max(count_eligible, used)
    itemsets = frequent_itemsets(onehot, used, max_len, settings.algorithm)
    summary.update(itemsets=len(itemsets), min_basket_count_used=count_all, min_support_used=count_all / n)

    complaint_items = set(baskets.items)
    incidence = _Incidence(onehot, baskets.customer)
    all_baskets = itemsets[(itemsets["count"] >= count_all) & (itemsets["length"] <= settings.max_len)]
    # Complaint rules: complaint items only, confidence and lift thresholds.
    raw = rules_from_itemsets(_only(all_baskets, complaint_items), n, "confidence", settings.min_confidence)
    raw = raw[raw["lift"] >= settings.min_lift]
    rules = complaint_rule_table(raw, incidence, n, settings.max_rules)

    # Open / breached: rules from complaint items to the outcome, over all baskets.
    outcome_tables: list[pd.DataFrame] = []
    for outcome in (OPEN_COMPLAINT, BREACHED_TARGET):
        if outcome not in extra:
            continue
        subset = _only(all_baskets, complaint_items | {outcome})
        found = rules_from_itemsets(subset, n, "lift", settings.outcome_min_lift)
        found = found[found["consequents"] == frozenset({outcome})] if not found.empty else found
        outcome_tables.append(outcome_rule_table(found, outcome, incidence, None, settings.max_rules))

    # Churn: the itemsets of the horizon-complete baskets, from those containing the internal item.
    churn_table = empty_frame(OUTCOME_RULE_COLUMNS)
    base_rate = n_churned / n_eligible if n_eligible else float("nan")
    if mine_churn:
        conditional = itemsets[itemsets["itemsets"].map(lambda items: HORIZON_COMPLETE in items)
                               & (itemsets["count"] >= count_eligible)]
        conditional = conditional.assign(
            itemsets=conditional["itemsets"].map(lambda items: items - {HORIZON_COMPLETE}),
            support=conditional["count"].to_numpy(dtype=float) / n_eligible,
            length=conditional["length"] - 1)
        conditional = conditional[conditional["length"] >= 1]
        found = rules_from_itemsets(conditional, n_eligible, "lift", settings.outcome_min_lift)
        if not found.empty:
            found = found[(found["consequents"] == frozenset({CHURNED}))
                          & found["antecedents"].map(lambda items: CHURNED not in items)]
        churn_table = outcome_rule_table(found, CHURNED, incidence, churn.eligible, settings.max_rules)
        if not conditional["itemsets"].map(lambda items: items == frozenset({CHURNED})).any():
            messages.append(f"churn after a basket ({base_rate:.2%}) is rarer than min_support: no churn rules")
    churn_rules = pd.concat([t for t in (churn_table, *outcome_tables) if not t.empty] or [churn_table],
                            ignore_index=True)

    # Order, chains and root causes, from the strong category pairs of the complaint rules.
    events = chain_mining.category_events(baskets)
    strong = chain_mining.strong_pairs(raw, events)
    pairs = chain_mining.order_pairs(events, strong, baskets.customer, n, settings.order_alpha)
    edges = pairs[pairs["significant"]]
    chains, chain_messages = chain_mining.find_chains(
        events, edges, baskets.customer, churn.eligible if n_eligible else None, churn.churned, settings)
    messages += chain_messages
    roots = chain_mining.root_causes(events, edges, baskets, churn.eligible if n_eligible else None, churn.churned)

    summary.update(
        rules=len(rules), order_pairs_tested=len(pairs), ordered_pairs=int(pairs["significant"].sum()),
        chains=len(chains), root_categories=int(roots["is_root"].sum()) if len(roots) else 0,
        churn_eligible_baskets=n_eligible, churn_base_rate=base_rate, churn_rules=len(churn_table),
        outcome_rules=int(sum(len(t) for t in outcome_tables)),
        top_lift=float(rules["lift"].max()) if len(rules) else float("nan"),
        top_churn_lift=float(churn_table["lift"].max()) if len(churn_table) else float("nan"))
    return RuleResult(rules=rules, pairs=pairs[list(chain_mining.PAIR_COLUMNS)], chains=chains, roots=roots,
                      churn_rules=churn_rules, messages=messages, summary={**_empty_summary(), **summary})

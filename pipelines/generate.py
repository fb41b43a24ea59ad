"""`churn generate`: a synthetic retail bank whose customers behave like real ones.

The demo, the tests and the benchmarks need data with the structure of the real thing:
a customer mix (mass, affluent, small business) with heavy-tailed activity and value,
signups spread over time, seasonality, complaints in the service tiers and categories of
the care playbook (`shared/domain.md`) with realistic response and resolution times,
planted root-cause chains, surveys that move with experience, past retention contacts
with a randomised control group, and closures drawn from a known monthly hazard.

The simulation runs month by month, vectorised over customers. Each customer carries a
hidden *dissatisfaction* level: complaints that breach their targets, low satisfaction
and "silent" shocks (no complaint at all: most unhappy customers never complain) raise
it, and it decays over time. Dissatisfaction lowers activity and raises the monthly
hazard of deciding to leave. Hidden states leave footprints in the data, as they do in a
real bank: a silent shock cuts activity from its day on and usually starts with part of
the money moving to another provider; a customer who decides to leave moves the money
out within days and mostly stops using the account, then closes it 15-75 days later.
Two drivers are nonlinear on purpose (a partner promotion ending in months 11-15 of
tenure; long-standing customers tolerating more), as real ones are. A small hidden
per-customer frailty and the randomness of the draws keep the best possible model
imperfect (`make demo` reports the model's gap to this ceiling).

Everything the model must not see is written apart, in `OUT/_truth/`: the monthly hazard
of every customer at risk, the latent traits, the true effect of a retention contact and
the planted chains. The input tables hold only what a bank would have.

Every table is streamed into one file of its own (`TableFiles`): transactions and the monthly
hazard month by month, the others in pieces of `ROW_GROUP_ROWS` rows, so memory grows with the
customers (their state) and the events (compact arrays), never with customers x months; a
10-million-customer bank fits this 24 GB machine (`benchmarks/bench_generate.py`). The files are
byte-identical to those of building each table whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.generate_care import TIMING_STREAM, CareColumns, place_complaints, stream
from pipelines.io import atomic_dir, clean_leftovers, to_safe_csv

SECONDS_PER_DAY = 86_400
SEGMENTS = ("mass", "affluent", "small_business")
SEGMENT_SHARE = (0.75, 0.18, 0.07)
REGIONS = ("north", "south", "east", "west", "central")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_SHARE = (0.10, 0.22, 0.22, 0.20, 0.14, 0.12)
ACQUISITION = ("branch", "online", "referral", "partner")
TX_CHANNELS = ("card", "mobile_app", "online_banking", "branch", "atm")
TX_PRODUCTS = ("current_account", "credit_card", "savings")
# Share of each transaction channel and product by segment (rows: SEGMENTS).
TX_CHANNEL_MIX = np.array([[0.55, 0.25, 0.10, 0.05, 0.05], [0.45, 0.20, 0.15, 0.15, 0.05], [0.30, 0.20, 0.30, 0.15, 0.05]])
TX_PRODUCT_MIX = np.array([[0.65, 0.30, 0.05], [0.45, 0.40, 0.15], [0.70, 0.25, 0.05]])
TIERS = ("urgent", "high", "normal", "suggestion")
# Service targets in hours (response, resolution), from the playbook's tiers; suggestions have
# no resolution target, so they are closed on a slow two-week rhythm.
RESPONSE_TARGET_HOURS = np.array([1.0, 4.0, 24.0, 168.0])
RESOLUTION_TARGET_HOURS = np.array([24.0, 48.0, 72.0, 336.0])
# Typical share of the target actually used: below 1 means most cases meet the target.
RESPONSE_MEDIAN_SHARE = np.array([0.35, 0.45, 0.50, 0.30])
RESOLUTION_MEDIAN_SHARE = np.array([0.45, 0.50, 0.55, 0.40])
COMPLAINT_CHANNELS = ("branch", "phone", "mobile_app", "online_banking", "social", "email")
# Background complaint rate by calendar month (January first): the year-end peak of a bank's care
# desk (card and fee problems around holiday spending, annual statements and charges), a quieter
# summer; the mean over a year is about 1. Planted chains follow their own rhythm.
COMPLAINT_SEASON = np.array([1.05, 0.95, 0.95, 0.92, 0.92, 0.90, 0.88, 0.90, 0.95, 1.0, 1.25, 1.45])
PRODUCTS = ("payments", "cards", "loans", "wealth", "current_account")


@dataclass(frozen=True)
class Category:
    """A complaint category: how often it arises unprompted and how it is usually filed."""

    name: str
    weight: float  # share of background complaints
    tiers: tuple[float, float, float, float]  # urgent, high, normal, suggestion
    channels: tuple[float, ...]  # over COMPLAINT_CHANNELS
    product: int  # index into PRODUCTS
    text: str  # one-line description; the complaint texts come from pipelines.generate_care


CATEGORIES: tuple[Category, ...] = (
    Category("transfer_failure", 0.10, (0.15, 0.70, 0.15, 0.0), (0.05, 0.35, 0.35, 0.15, 0.05, 0.05), 0,
             "A transfer did not arrive and the money left the account."),
    Category("system_lag", 0.08, (0.0, 0.50, 0.50, 0.0), (0.0, 0.20, 0.55, 0.20, 0.05, 0.0), 0,
             "The app froze and was very slow to load."),
    Category("transfer_verification", 0.07, (0.0, 0.20, 0.60, 0.20), (0.05, 0.25, 0.45, 0.20, 0.0, 0.05), 0,
             "Too many verification steps to send a transfer."),
    Category("duplicate_documents", 0.05, (0.0, 0.10, 0.90, 0.0), (0.40, 0.30, 0.05, 0.10, 0.0, 0.15), 2,
             "Asked for the same documents twice for a loan application."),
    Category("branch_queue", 0.12, (0.0, 0.0, 0.70, 0.30), (0.70, 0.20, 0.0, 0.0, 0.05, 0.05), 4,
             "Waited a long time in the branch queue."),
    Category("wealth_yield_display", 0.05, (0.20, 0.50, 0.30, 0.0), (0.20, 0.40, 0.20, 0.15, 0.0, 0.05), 3,
             "The product yield shown was wrong."),
    Category("card_problem", 0.14, (0.20, 0.50, 0.30, 0.0), (0.10, 0.55, 0.20, 0.10, 0.0, 0.05), 1,
             "The card was declined or blocked."),
    Category("fees", 0.13, (0.0, 0.20, 0.80, 0.0), (0.20, 0.45, 0.10, 0.10, 0.05, 0.10), 1,
             "Charged a fee I did not expect."),
    Category("staff_attitude", 0.09, (0.0, 0.20, 0.80, 0.0), (0.50, 0.30, 0.0, 0.0, 0.10, 0.10), 4,
             "Staff were unhelpful."),
    Category("slow_response", 0.10, (0.0, 0.30, 0.70, 0.0), (0.15, 0.40, 0.15, 0.10, 0.10, 0.10), 4,
             "Nobody answered my earlier request."),
    Category("accessibility", 0.07, (0.0, 0.0, 0.40, 0.60), (0.40, 0.30, 0.15, 0.10, 0.0, 0.05), 4,
             "Fonts are too small and the menu is hard to find."),
)
CATEGORY_INDEX = {c.name: i for i, c in enumerate(CATEGORIES)}


@dataclass(frozen=True)
class PlantedChain:
    """A root-cause chain: a start event and the complaints that follow it, in order."""

    name: str
    steps: tuple[str, ...]
    continue_probability: tuple[float, ...]  # chance of each next step, given the previous
    gap_days: tuple[tuple[float, float], ...]  # uniform range of days between steps
    who: str  # "mobile" (app users, in app-release months) or "loan" (borrowers, any month)
    monthly_start_probability: float


CHAINS: tuple[PlantedChain, ...] = (
    PlantedChain("app_release", ("system_lag", "transfer_failure", "fees"), (0.75, 0.65),
                 ((1.0, 6.0), (2.0, 9.0)), "mobile", 0.035),
    PlantedChain("loan_paperwork", ("duplicate_documents", "slow_response", "staff_attitude"), (0.75, 0.70),
                 ((3.0, 10.0), (2.0, 9.0)), "loan", 0.008),
)
APP_RELEASE_EVERY_MONTHS = 4

RETENTION_ACTIONS = (  # action, channel, cost when contacted
    ("retention_call", "phone", 8.0),
    ("fee_waiver", "email", 25.0),
    ("relationship_review", "relationship_manager", 40.0),
)
CONTACT_SHARE_PER_MONTH = 0.015
"""Share of open customers the bank's own retention campaign picks each month (its riskiest by a rough score)."""
CONTROL_SHARE = 0.2
"""Share of those picked who are kept as randomised control (treatment 0, not contacted)."""
SURVEY_SHARE_PER_MONTH = 0.08  # random sample asked for NPS / CSAT each month
FRAILTY_SD = 0.1  # hidden per-customer proneness to leave (logit scale): the part no data reveals

# How a decision to leave shows before the account closes (soft churn comes first): most leavers
# move their money out in one go within days, and most of their everyday use stops.
CLOSE_AFTER_DECISION_DAYS = (15.0, 75.0)
MOVER_SHARE = 0.95
MOVE_WITHIN_DAYS = 2.0
MOVE_SIZE = (10.0, 40.0)  # times the customer's typical transaction
LEAVER_USE_KEPT = 0.1  # share of a leaver's everyday transactions that still happen
# Silent disengagement (no complaint): a jump in dissatisfaction on a day of the month; activity
# falls from that day, and most start by moving part of their money to another provider.
SILENT_SHOCK_PER_MONTH = 0.008
SILENT_SHOCK_SIZE = (1.5, 3.0)
SHIFT_SHARE = 0.85
SHIFT_WITHIN_DAYS = 3.0
SHIFT_SIZE = (3.0, 10.0)  # times the customer's typical transaction
# Nonlinear drivers a linear model cannot draw: a partner promotion's end (months 11-15 of
# tenure) and long-standing customers' patience (dissatisfaction weighs less after 5 years).
PROMO_END_MONTHS = (11.0, 15.0)
PROMO_END_LOGIT = 2.5
LOYAL_AFTER_MONTHS = 60.0
LOYAL_DISSATISFACTION_WEIGHT = 0.4


@dataclass
class Population:
    """The customers' static attributes and hidden traits, one array entry per customer."""

    ids: np.ndarray
    signup_day: np.ndarray  # days since the simulation start (negative: before it)
    segment: np.ndarray
    region: np.ndarray
    age_band: np.ndarray
    products_held: np.ndarray
    acquisition: np.ndarray
    transaction_rate: np.ndarray  # transactions per month at full engagement
    amount_median: np.ndarray
    frailty: np.ndarray
    mobile_user: np.ndarray
    has_loan: np.ndarray
    contact_effect: np.ndarray  # relative cut in monthly hazard while a contact works


def month_starts(start: str, months: int) -> pd.DatetimeIndex:
    """The first day of each simulated month, plus the end of the last one."""
    first = pd.Timestamp(start).to_period("M").to_timestamp()
    return pd.date_range(first, periods=months + 1, freq="MS")


def make_population(n: int, rng: np.random.Generator, span_days: float) -> Population:
    """Customers with segment-dependent activity and value, signups spread over time."""
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARE)
    existing = rng.random(n) < 0.72
    tenure_years = rng.gamma(2.0, 2.2, size=n) + 0.05
    signup = np.where(existing, -tenure_years * 365.25, rng.uniform(0.0, span_days - 45.0, size=n))
    age = rng.choice(len(AGE_BANDS), size=n, p=AGE_SHARE)
    rate_median = np.array([1.6, 3.0, 6.0])[segment]
    amount_median = np.array([120.0, 450.0, 900.0])[segment] * np.exp(rng.normal(0.0, 0.5, n))
    # A tenth of customers are nearly dormant from the start: a card kept "just in case".
    dormant = rng.random(n) < 0.10
    rate = rate_median * np.exp(rng.normal(0.0, 0.7, n)) * np.where(dormant, 0.08, 1.0)
    products = 1 + rng.poisson(np.array([0.8, 1.8, 1.5])[segment])
    mobile = rng.random(n) < np.array([0.85, 0.85, 0.75, 0.65, 0.45, 0.25])[age]
    loan = rng.random(n) < np.array([0.20, 0.30, 0.45])[segment]
    effect = np.clip(np.array([0.30, 0.50, 0.15])[segment] + rng.normal(0.0, 0.12, n), 0.0, 0.9)
    order = rng.permutation(n)  # ids carry no information about the customer
    width = max(7, len(str(n)) + 1)
    ids = np.array([f"C{i:0{width}d}" for i in order + 1], dtype=object)
    return Population(
        ids=ids, signup_day=signup, segment=segment,
        region=rng.choice(len(REGIONS), size=n, p=(0.22, 0.24, 0.18, 0.16, 0.20)),
        age_band=age, products_held=products,
        acquisition=rng.choice(len(ACQUISITION), size=n, p=(0.45, 0.35, 0.12, 0.08)),
        transaction_rate=rate, amount_median=amount_median,
        frailty=rng.normal(0.0, FRAILTY_SD, n), mobile_user=mobile, has_loan=loan, contact_effect=effect,
    )


def _choose_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (rows, options) probability matrix."""
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative /= cumulative[:, -1:]
    return (rng.random((len(probabilities), 1)) > cumulative).sum(axis=1)


def _choose_by_group(rng: np.random.Generator, probabilities: np.ndarray, group: np.ndarray) -> np.ndarray:
    """`_choose_rows(rng, probabilities[group])` (same draws, same choices) without building a (rows, options) matrix.

    Each row's choice is the number of its group's cumulative shares below its uniform draw.
    """
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative /= cumulative[:, -1:]
    draw = rng.random(len(group))
    choice = np.zeros(len(group), dtype=np.int64)
    for g in range(len(probabilities)):
        rows = group == g
        choice[rows] = np.searchsorted(cumulative[g], draw[rows], side="left")
    return choice


def top_scores(score: np.ndarray, k: int) -> np.ndarray:
    """`np.argsort(-score, kind="stable")[:k]` (the k highest, ties in row order) without sorting every row:
    a partition finds the k-th score, then only the chosen are sorted (the bank's monthly campaign picks 1.5%
    of millions of candidates)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= len(score) or np.isnan(score).any():
        return np.argsort(-score, kind="stable")[:k]
    negated = -score
    kth = np.partition(negated, k - 1)[k - 1]
    chosen = np.flatnonzero(negated < kth)
    chosen = np.concatenate([chosen, np.flatnonzero(negated == kth)[: k - len(chosen)]])
    return chosen[np.lexsort((chosen, negated[chosen]))]


@dataclass
class MonthComplaints:
    """Complaints raised in one month (arrays of equal length)."""

    customer: np.ndarray
    day: np.ndarray
    category: np.ndarray
    chain: np.ndarray  # index into CHAINS, -1 for background complaints
    chain_id: np.ndarray  # which chain instance, -1 for background
    step: np.ndarray


def draw_complaints(pop: Population, rng: np.random.Generator, who: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray, dissatisfaction: np.ndarray, month: int, chain_counter: int,
                    season: float = 1.0) -> tuple[MonthComplaints, int]:
    """Background complaints (more when unhappy; `season`: the calendar month's factor) and the start of planted chains."""
    rate = (0.030 + 0.060 * dissatisfaction[who]) * np.where(pop.segment[who] == 2, 1.3, 1.0) * season
    rate *= (hi - lo) / 30.4
    counts = rng.poisson(rate)
    owner = np.repeat(np.arange(len(who)), counts)
    weights = np.array([c.weight for c in CATEGORIES])
    elderly = pop.age_band[who[owner]] == len(AGE_BANDS) - 1
    probs = np.broadcast_to(weights, (len(owner), len(weights))).copy()
    probs[elderly, CATEGORY_INDEX["accessibility"]] *= 4.0
    probs[elderly, CATEGORY_INDEX["branch_queue"]] *= 2.0
    parts = [MonthComplaints(who[owner], rng.uniform(lo[owner], hi[owner]), _choose_rows(rng, probs),
                             np.full(len(owner), -1), np.full(len(owner), -1), np.zeros(len(owner), int))]
    for index, chain in enumerate(CHAINS):
        if chain.who == "mobile":
            if month % APP_RELEASE_EVERY_MONTHS != 1:
                continue
            eligible = pop.mobile_user[who]
        else:
            eligible = pop.has_loan[who]
        starts = eligible & (rng.random(len(who)) < chain.monthly_start_probability)
        customer = who[starts]
        day = rng.uniform(lo[starts], np.minimum(hi[starts], lo[starts] + 12.0))
        instance = chain_counter + np.arange(len(customer))
        chain_counter += len(customer)
        alive = np.ones(len(customer), dtype=bool)
        for step, name in enumerate(chain.steps):
            if step > 0:
                alive &= rng.random(len(customer)) < chain.continue_probability[step - 1]
                low, high = chain.gap_days[step - 1]
                day = day + rng.uniform(low, high, len(customer))
            parts.append(MonthComplaints(customer[alive], day[alive], np.full(alive.sum(), CATEGORY_INDEX[name]),
                                         np.full(alive.sum(), index), instance[alive], np.full(alive.sum(), step)))
    merged = MonthComplaints(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                               ("customer", "day", "category", "chain", "chain_id", "step")))
    return merged, chain_counter


@dataclass
class ServiceOutcome:
    """How a batch of complaints was handled."""

    tier: np.ndarray
    channel: np.ndarray
    response_hours: np.ndarray
    resolution_hours: np.ndarray
    satisfaction: np.ndarray  # NaN when not given
    response_breached: np.ndarray
    resolution_breached: np.ndarray


def serve_complaints(c: MonthComplaints, rng: np.random.Generator, dissatisfaction: np.ndarray,
                     busy: float, place: Callable[[MonthComplaints, np.ndarray], np.ndarray] | None = None
                     ) -> ServiceOutcome:
    """Tier, channel, response and resolution times against the targets, satisfaction at closure.

    `place(c, channel)`, once the channel is known, moves `c.day` to its weekday and hour and
    returns each complaint's handling slowdown (weekends); it draws from its own stream.
    """
    n = len(c.customer)
    tier = _choose_by_group(rng, np.array([cat.tiers for cat in CATEGORIES]), c.category)
    channel = _choose_by_group(rng, np.array([cat.channels for cat in CATEGORIES]), c.category)
    slow = busy * (place(c, channel) if place is not None else 1.0)
    response = RESPONSE_TARGET_HOURS[tier] * RESPONSE_MEDIAN_SHARE[tier] * slow * np.exp(rng.normal(0, 0.75, n))
    resolution = np.maximum(
        response * 1.2,
        RESOLUTION_TARGET_HOURS[tier] * RESOLUTION_MEDIAN_SHARE[tier] * slow * np.exp(rng.normal(0, 0.8, n)))
    response_breached = response > RESPONSE_TARGET_HOURS[tier]
    resolution_breached = (resolution > RESOLUTION_TARGET_HOURS[tier]) & (tier < 3)
    mood = (4.3 - 1.3 * resolution_breached - 0.7 * response_breached - 0.35 * dissatisfaction[c.customer]
            + rng.normal(0.0, 0.7, n))
    satisfaction = np.clip(np.round(mood), 1, 5).astype(float)
    satisfaction[rng.random(n) < 0.3] = np.nan  # not everyone answers the closing question
    return ServiceOutcome(tier, channel, response, resolution, satisfaction, response_breached,
                          resolution_breached)


def month_transactions(rng: np.random.Generator, pop: Population, ids: pa.Array, present: np.ndarray,
                       lo_p: np.ndarray, hi_p: np.ndarray, share: np.ndarray, dissatisfaction: np.ndarray,
                       shock: np.ndarray, shock_day: np.ndarray, decided_day: np.ndarray, closed_day: np.ndarray,
                       decides: np.ndarray, silent: np.ndarray, month_start: pd.Timestamp, hi_day: float,
                       end_day: float, origin: pd.Timestamp) -> pa.Table:
    """One month's transactions in time order: engagement falls with dissatisfaction; year-end peak; soft churn.

    `present`, `lo_p`, `hi_p`, `share`: the customers around this month and their days in it; `ids`:
    every customer's id (Arrow, taken by index).
    """
    n = len(decided_day)
    season = 1.0 + 0.15 * np.cos(2 * np.pi * (month_start.month - 12) / 12.0)
    engagement = np.exp(-1.4 * dissatisfaction[present])
    counts = rng.poisson(pop.transaction_rate[present] * engagement * season * share)
    owner = np.repeat(present.astype(np.int32), counts)
    total = len(owner)
    day = rng.uniform(np.repeat(lo_p, counts), np.repeat(hi_p, counts))
    # From the day of a silent shock or of the decision to leave, fewer transactions happen.
    keep = (day <= shock_day[owner]) | (rng.random(total) < np.exp(-1.4 * shock[owner]))
    keep &= (day <= decided_day[owner]) | (rng.random(total) < LEAVER_USE_KEPT)
    owner, day = owner[keep], day[keep]
    del keep
    total = len(owner)
    amount = pop.amount_median[owner] * np.exp(rng.normal(0.0, 0.9, total) - 0.3 * dissatisfaction[owner])
    # Refunds, and outflows that grow as an unhappy customer moves money elsewhere.
    leaving_tx = day > decided_day[owner]
    outflow = rng.random(total) < 0.06 + 0.12 * np.minimum(dissatisfaction[owner], 2.0) + 0.3 * leaving_tx
    del leaving_tx
    amount = np.where(outflow, -(0.5 + np.minimum(dissatisfaction[owner], 2.0)) * amount, amount)
    del outflow
    # Most leavers move their money out in one go soon after deciding.
    movers = np.flatnonzero(decides & (rng.random(n) < MOVER_SHARE))
    move_day = np.minimum(decided_day[movers] + rng.uniform(0.0, MOVE_WITHIN_DAYS, len(movers)),
                          np.minimum(closed_day[movers], end_day) - 0.01)
    # Most silently disengaged customers first move part of their money to another provider.
    shifters = np.flatnonzero(silent & (rng.random(n) < SHIFT_SHARE) & (shock_day > pop.signup_day))
    shift_day = np.minimum(shock_day[shifters] + rng.uniform(0.0, SHIFT_WITHIN_DAYS, len(shifters)), hi_day - 0.01)
    owner = np.concatenate([owner, movers.astype(np.int32), shifters.astype(np.int32)])
    day = np.concatenate([day, move_day, shift_day])
    amount = np.concatenate([amount, -pop.amount_median[movers] * rng.uniform(*MOVE_SIZE, len(movers)),
                             -pop.amount_median[shifters] * rng.uniform(*SHIFT_SIZE, len(shifters))])
    amount = np.round(amount, 2)
    order = np.lexsort((owner, day))
    owner, day, amount = owner[order], day[order], amount[order]
    del order
    seconds = np.floor(day * SECONDS_PER_DAY).astype("int64")
    del day
    stamps = (np.datetime64(origin.to_datetime64(), "s") + seconds.astype("timedelta64[s]")).astype("datetime64[ms]")
    del seconds
    segment = pop.segment[owner]
    return pa.table({
        "customer_id": pc.take(ids, pa.array(owner)),
        "timestamp": pa.array(stamps),
        "amount": pa.array(amount),
        "channel": pc.take(pa.array(TX_CHANNELS, type=pa.string()),
                           pa.array(_choose_by_group(rng, TX_CHANNEL_MIX, segment))),
        "product": pc.take(pa.array(TX_PRODUCTS, type=pa.string()),
                           pa.array(_choose_by_group(rng, TX_PRODUCT_MIX, segment))),
    })


def simulate(n_customers: int, seed: int, start: str, months: int, write: Callable[[str, Piece], None],
             progress: Callable[[str], None] | None = None,
             contact_share: float = CONTACT_SHARE_PER_MONTH, control_share: float = CONTROL_SHARE) -> None:
    """Run the bank for `months` months, handing every input and truth table to `write(name, piece)`.

    Each table arrives in row order in pieces (`TableFiles.write` puts them in one file):
    transactions and the monthly hazard month by month, the other tables in pieces of at most
    `ROW_GROUP_ROWS` rows, so no table of a 10-million-customer bank is held whole. The events
    (complaints, surveys, contacts) are kept in compact arrays until the end, as their order and
    numbering are over the whole history. `contact_share` and `control_share` size the bank's
    randomised retention campaign (how much evidence about a contact's effect its history holds);
    the bank's behaviour is otherwise the same.
    """
    say = progress or (lambda message: None)
    history = simulate_months(n_customers, seed, start, months, write, say, contact_share, control_share)
    say("writing customers, complaints, surveys and contacts")
    pop, origin, end_day, closed_day = history.pop, history.origin, history.end_day, history.closed_day
    write_customers(write, pop, origin, end_day, closed_day, history.silent_shock_month)
    no_contacts = {"customer": np.zeros(0, np.int32), "day": np.zeros(0), "action": np.zeros(0, np.int8),
                   "treatment": np.zeros(0, np.int8)}
    write_events(write, pop, origin, end_day, seed, living_events(history.complaint_parts, closed_day, end_day),
                 living_events(history.survey_parts, closed_day, end_day),
                 living_events(history.contact_parts or [no_contacts], closed_day, end_day))


@dataclass
class History:
    """What writing the remaining tables needs once every month is simulated (the months' own arrays are freed)."""

    pop: Population
    origin: pd.Timestamp
    end_day: float
    closed_day: np.ndarray
    silent_shock_month: np.ndarray
    complaint_parts: list[dict[str, np.ndarray]]  # one dict of compact arrays a month
    survey_parts: list[dict[str, np.ndarray]]
    contact_parts: list[dict[str, np.ndarray]]


def simulate_months(n_customers: int, seed: int, start: str, months: int, write: Callable[[str, Piece], None],
                    say: Callable[[str], None], contact_share: float, control_share: float) -> History:
    """The monthly loop of `simulate`: transactions and the monthly hazard go to `write`, the events are returned."""
    rng = np.random.default_rng(seed)
    edges = month_starts(start, months)
    origin = edges[0]
    edge_days = np.asarray((edges - origin).days, dtype=float)
    end_day = edge_days[-1]
    pop = make_population(n_customers, rng, end_day)
    n = n_customers
    ids_arrow = pa.array(pop.ids, type=pa.string())

    closed_day = np.full(n, np.inf)
    decided_day = np.full(n, np.inf)  # when a customer made up their mind to leave
    dissatisfaction = rng.exponential(0.15, n)
    open_breach_until = np.full(n, -np.inf)  # day the latest breached complaint gets resolved
    contact_until = np.full(n, -np.inf)  # a treated contact lowers the hazard until this day
    complaint_parts: list[dict[str, np.ndarray]] = []
    survey_parts: list[dict[str, np.ndarray]] = []
    contact_parts: list[dict[str, np.ndarray]] = []
    silent_shock_month = np.full(n, -1)
    chain_counter = 0
    timing_rng = stream(seed, TIMING_STREAM)  # weekday and hour of complaints (no draw of `rng`)

    for month in range(months):
        lo_day, hi_day = edge_days[month], edge_days[month + 1]
        month_start = edges[month]
        at_risk = (pop.signup_day < lo_day) & (decided_day == np.inf)
        # --- the hazard of closing this month, from the state at the month's start
        tenure_months = (lo_day - pop.signup_day) / 30.44
        patience = np.where(tenure_months > LOYAL_AFTER_MONTHS, LOYAL_DISSATISFACTION_WEIGHT, 1.0)
        logit = (-5.7 + 1.7 * patience * dissatisfaction + pop.frailty
                 + np.array([0.0, -0.45, 0.15])[pop.segment]
                 + np.where(tenure_months < 12, 0.55, 0.0) + np.where(tenure_months < 4, 0.35, 0.0)
                 - 0.18 * np.log1p(pop.transaction_rate * pop.amount_median / 200.0)
                 + 0.6 * (open_breach_until > lo_day) * np.where(pop.segment == 1, 1.8, 1.0)
                 # single-product customers leave more easily; young ones shop around
                 + np.where(pop.products_held == 1, 0.5, np.where(pop.products_held >= 4, -0.4, 0.0))
                 + np.array([0.35, 0.1, 0.0, 0.0, -0.15, -0.3])[pop.age_band]
                 # customers bought through a partner promotion leave when it ends
                 + np.where((pop.acquisition == 3) & (tenure_months >= PROMO_END_MONTHS[0])
                            & (tenure_months < PROMO_END_MONTHS[1]), PROMO_END_LOGIT, 0.0))
        hazard = 1.0 / (1.0 + np.exp(-logit))
        hazard *= np.where(contact_until > lo_day, 1.0 - pop.contact_effect, 1.0)
        # Customers who already decided to leave (closing soon) are certain to close: hazard 1.
        leaving = (decided_day < lo_day) & (closed_day > lo_day)
        hazard = np.where(leaving, 1.0, hazard)
        risk_idx = np.flatnonzero(at_risk | leaving)
        write("_truth/monthly_hazard", pa.Table.from_arrays([
            pc.take(ids_arrow, pa.array(risk_idx)).cast(pa.large_string()),
            pa.array(np.full(len(risk_idx), month_start.to_datetime64().astype("datetime64[ms]"))),
            pa.array(hazard[risk_idx]), pa.array(np.round(dissatisfaction[risk_idx], 4)), pa.array(leaving[risk_idx]),
        ], schema=HAZARD_SCHEMA))
        # A customer decides to leave, then winds the relationship down (moving the salary, spending
        # elsewhere, taking money out) for a few weeks or months before the account closes.
        decides = at_risk & (rng.random(n) < hazard)
        decided_day[decides] = rng.uniform(lo_day, hi_day, decides.sum())
        closed_day[decides] = np.floor(decided_day[decides] + rng.uniform(*CLOSE_AFTER_DECISION_DAYS, decides.sum()))

        # --- silent disengagement: no complaint, just a customer drifting away from a day in the month
        silent = (rng.random(n) < SILENT_SHOCK_PER_MONTH) & (decided_day == np.inf) & (pop.signup_day < hi_day)
        silent_shock_month[silent & (silent_shock_month < 0)] = month
        shock = np.where(silent, rng.uniform(*SILENT_SHOCK_SIZE, n), 0.0)
        shock_day = np.where(silent, rng.uniform(lo_day, hi_day, n), np.inf)

        # --- who is around this month, and for which part of it
        lo = np.maximum(lo_day, np.ceil(pop.signup_day))
        hi = np.minimum(hi_day, closed_day)
        present = np.flatnonzero((lo < hi) & (pop.signup_day < hi_day))
        lo_p, hi_p = lo[present], hi[present]
        share = (hi_p - lo_p) / (hi_day - lo_day)

        # --- transactions (a function: a month's arrays are freed before the next month's are made)
        tx = month_transactions(rng, pop, ids_arrow, present, lo_p, hi_p, share, dissatisfaction, shock, shock_day,
                                decided_day, closed_day, decides, silent, month_start, hi_day, end_day, origin)
        total = tx.num_rows
        write("transactions", tx)
        del tx

        # --- complaints, their handling, and what they do to the customer's mood
        complaints, chain_counter = draw_complaints(pop, rng, present, lo_p, hi_p, dissatisfaction, month,
                                                    chain_counter, COMPLAINT_SEASON[month_start.month - 1])
        busy = 1.25 if month_start.month in (12, 1) else 1.0

        def place(c: MonthComplaints, channel: np.ndarray) -> np.ndarray:
            c.day, slow = place_complaints(timing_rng, c.day, channel, c.chain >= 0, lo[c.customer],
                                           hi[c.customer], origin.day_of_week, COMPLAINT_CHANNELS)
            return slow

        service = serve_complaints(complaints, rng, dissatisfaction, busy, place)
        complaint_parts.append({  # compact types (values unchanged): 49 bytes a complaint
            "customer": complaints.customer.astype(np.int32), "day": complaints.day,
            "category": complaints.category.astype(np.int8), "chain": complaints.chain.astype(np.int8),
            "chain_id": complaints.chain_id.astype(np.int32), "step": complaints.step.astype(np.int8),
            "tier": service.tier.astype(np.int8), "channel": service.channel.astype(np.int8),
            "response_hours": service.response_hours, "resolution_hours": service.resolution_hours,
            "satisfaction": service.satisfaction.astype(np.float32),  # 1-5 or NaN
            "mood": dissatisfaction[complaints.customer],  # read only by the unit/text stream (no draw)
        })
        bad = np.zeros(n)
        np.add.at(bad, complaints.customer, 0.08 + 0.35 * service.resolution_breached
                  + 0.2 * service.response_breached + 0.3 * (np.nan_to_num(service.satisfaction, nan=3) < 3))
        breached = service.resolution_breached | service.response_breached
        resolved_day = complaints.day + service.resolution_hours / 24.0
        np.maximum.at(open_breach_until, complaints.customer[breached], resolved_day[breached])

        dissatisfaction = np.maximum(0.0, 0.92 * dissatisfaction + bad + shock + rng.normal(0.0, 0.03, n))

        # --- surveys: a random sample, plus a post-closure survey after some complaints
        asked = present[rng.random(len(present)) < SURVEY_SHARE_PER_MONTH]
        followed = np.unique(complaints.customer[rng.random(len(complaints.customer)) < 0.25])
        asked = np.union1d(asked, followed)
        ask_lo, ask_hi = lo[asked], hi[asked]
        mood = dissatisfaction[asked]
        survey_parts.append({  # compact types; float32 keeps the whole scores exactly (and a rounded -0.0)
            "customer": asked.astype(np.int32), "day": rng.uniform(ask_lo, ask_hi),
            "nps": np.clip(np.round(8.4 - 2.3 * mood + rng.normal(0, 1.4, len(asked))), 0, 10).astype(np.float32),
            "csat": np.clip(np.round(4.3 - 0.8 * mood + rng.normal(0, 0.6, len(asked))), 1, 5).astype(np.float32),
            "which": rng.choice(3, size=len(asked), p=(0.6, 0.2, 0.2)).astype(np.int8),  # both, NPS only, CSAT only
        })

        # --- the bank's own retention campaign: a rough risk score, randomised hold-out
        candidates = np.flatnonzero((pop.signup_day < lo_day) & (closed_day > lo_day + 20.0))
        if len(candidates):
            score = (dissatisfaction[candidates] + rng.normal(0, 0.7, len(candidates))
                     + 0.3 * (pop.segment[candidates] == 1))
            take = candidates[top_scores(score, int(len(candidates) * contact_share))]
            treated = rng.random(len(take)) >= control_share
            action = np.where(pop.segment[take] == 1, 2, rng.choice(2, size=len(take), p=(0.6, 0.4)))
            when = rng.uniform(lo_day, min(hi_day, lo_day + 20.0), len(take))
            contact_until[take[treated]] = when[treated] + 91.0
            contact_parts.append({"customer": take.astype(np.int32), "day": when, "action": action.astype(np.int8),
                                  "treatment": treated.astype(np.int8)})
        say(f"simulated month {month + 1}/{months} ({month_start:%Y-%m}): {total:,} transactions, "
            f"{len(complaints.customer):,} complaints")

    return History(pop, origin, end_day, closed_day, silent_shock_month, complaint_parts, survey_parts, contact_parts)


Piece = pd.DataFrame | pa.Table
"""A run of consecutive rows of one generated table."""
HAZARD_SCHEMA = pa.Table.from_pandas(pd.DataFrame({
    "customer_id": pd.Series([], dtype="str"), "month_start": pd.Series([], dtype="datetime64[ms]"),
    "hazard": pd.Series([], dtype=float), "dissatisfaction": pd.Series([], dtype=float),
    "decided_to_leave": pd.Series([], dtype=bool)}), preserve_index=False).schema
"""`_truth/monthly_hazard` as a pandas frame of its columns converts (its pieces are built in Arrow: ids by `take`)."""
ROW_GROUP_ROWS = 1024 * 1024
"""Rows per piece of a table built in pieces and per Parquet row group: pyarrow's default row group,
so a table written piece by piece has the same row groups (and bytes) as one written whole."""


def pieces(rows: int) -> Iterator[slice]:
    """Consecutive row ranges of at most `ROW_GROUP_ROWS` rows covering `rows` (one empty range when 0)."""
    for first in range(0, max(rows, 1), ROW_GROUP_ROWS):
        yield slice(first, min(first + ROW_GROUP_ROWS, rows))


def _arrow_strings(dtype: pa.DataType) -> object:
    return pd.StringDtype("pyarrow") if dtype == pa.string() else None


def _stamp(origin: pd.Timestamp, day: np.ndarray) -> pd.Series:
    """Days since the start as timestamps to the second (NaN stays empty)."""
    seconds = np.floor(np.asarray(day, dtype=float) * SECONDS_PER_DAY)
    return pd.Series(origin + pd.to_timedelta(seconds, unit="s")).astype("datetime64[ms]")


def living_events(parts: list[dict[str, np.ndarray]], closed_day: np.ndarray, end_day: float) -> dict[str, np.ndarray]:
    """One event table's monthly parts joined in time order, without events at or after a closure or the data's end.

    Empties `parts` column by column as it goes, so the parts and the joined table are not held twice.
    """
    customer = np.concatenate([part.pop("customer") for part in parts])
    day = np.concatenate([part.pop("day") for part in parts])
    keep = np.flatnonzero(day < np.minimum(closed_day[customer], end_day))
    order = keep[np.lexsort((customer[keep], day[keep]))]
    events = {"customer": customer[order], "day": day[order]}
    del customer, day, keep
    for key in list(parts[0]):
        events[key] = np.concatenate([part.pop(key) for part in parts])[order]
    parts.clear()
    return events


def write_customers(write: Callable[[str, Piece], None], pop: Population, origin: pd.Timestamp, end_day: float,
                    closed_day: np.ndarray, silent_shock_month: np.ndarray) -> None:
    """The customers table (nothing after a closure) and `_truth/customers`, piece by piece."""
    for part in pieces(len(pop.ids)):
        ids = pd.Series(pop.ids[part], dtype="str")
        closed = closed_day[part] < end_day  # a closure after the data's end is not known yet
        write("customers", pd.DataFrame({
            "customer_id": ids,
            "signup_date": _stamp(origin, np.floor(pop.signup_day[part])),
            "closed_date": _stamp(origin, np.where(closed, closed_day[part], np.nan)),
            "segment": pd.Series(np.array(SEGMENTS)[pop.segment[part]], dtype="str"),
            "region": pd.Series(np.array(REGIONS)[pop.region[part]], dtype="str"),
            "age_band": pd.Series(np.array(AGE_BANDS)[pop.age_band[part]], dtype="str"),
            "products_held": pop.products_held[part].astype("int64"),
            "acquisition_channel": pd.Series(np.array(ACQUISITION)[pop.acquisition[part]], dtype="str"),
        }))
        write("_truth/customers", pd.DataFrame({
            "customer_id": ids,
            "frailty": pop.frailty[part], "transaction_rate": pop.transaction_rate[part],
            "amount_median": pop.amount_median[part], "mobile_user": pop.mobile_user[part],
            "has_loan": pop.has_loan[part], "silent_shock_month": silent_shock_month[part],
            "true_contact_effect": pop.contact_effect[part],
        }))


def _numbered(prefix: str, first: int, last: int, width: int) -> pd.Series:
    """Ids `prefix` + the numbers first..last zero-padded to `width` digits (e.g. K00000001), built vectorised."""
    digits = np.strings.zfill(np.arange(first, last + 1).astype(str), width)
    return pd.Series(np.strings.add(prefix, digits), dtype="str")


def write_events(write: Callable[[str, Piece], None], pop: Population, origin: pd.Timestamp, end_day: float,
                 seed: int, c: dict[str, np.ndarray], s: dict[str, np.ndarray], k: dict[str, np.ndarray]) -> None:
    """The complaints, surveys and contacts tables and `_truth/complaint_origin` and `_truth/branches`, piece by piece.

    `c`, `s`, `k`: the living complaints, surveys and contacts in row order (`living_events`).
    Branch, business line and complaint text come from their own random stream (`CareColumns`).
    """
    ids = pop.ids
    resolved = c["day"] + c["resolution_hours"] / 24.0
    satisfaction = np.where(resolved < end_day, c["satisfaction"].astype(float), np.nan)
    del resolved
    nps = np.where(s["which"] == 2, np.nan, s["nps"].astype(float))
    csat = np.where(s["which"] == 1, np.nan, s["csat"].astype(float))
    care = CareColumns(seed, pop.region, pop.segment, pop.has_loan, REGIONS, tuple(cat.name for cat in CATEGORIES),
                       tuple(PRODUCTS[cat.product] for cat in CATEGORIES), c, satisfaction, s, csat, nps)
    n_complaints = len(c["day"])
    width = max(8, len(str(n_complaints)) + 1)
    names = np.array([cat.name for cat in CATEGORIES])
    products = np.array(PRODUCTS)[np.array([cat.product for cat in CATEGORIES])]
    chain_names = np.array([ch.name for ch in CHAINS] + [""])
    for part in pieces(n_complaints):
        day = c["day"][part]
        responded = day + c["response_hours"][part] / 24.0
        resolved = day + c["resolution_hours"][part] / 24.0
        complaint_id = _numbered("K", part.start + 1, part.stop, width)
        category, chain = c["category"][part], c["chain"][part]
        write("complaints", pd.DataFrame({
            "complaint_id": complaint_id,
            "customer_id": pd.Series(ids[c["customer"][part]], dtype="str"),
            "opened_at": _stamp(origin, day),
            "category": pd.Series(names[category], dtype="str"),
            "priority": pd.Series(np.array(TIERS)[c["tier"][part]], dtype="str"),
            "channel": pd.Series(np.array(COMPLAINT_CHANNELS)[c["channel"][part]], dtype="str"),
            "product": pd.Series(products[category], dtype="str"),
            "first_response_at": _stamp(origin, np.where(responded < end_day, responded, np.nan)),
            "resolved_at": _stamp(origin, np.where(resolved < end_day, resolved, np.nan)),
            "satisfaction": satisfaction[part],
            **care.complaints(part),
        }))
        write("_truth/complaint_origin", pd.DataFrame({
            "complaint_id": complaint_id,
            "chain": pd.Series(np.where(chain >= 0, chain_names[chain], None), dtype="str"),
            "chain_instance": c["chain_id"][part].astype("int64"),
            "chain_step": np.where(chain >= 0, c["step"][part], -1).astype("int64"),
        }))

    for part in pieces(len(s["day"])):
        write("surveys", pd.DataFrame({
            "customer_id": pd.Series(ids[s["customer"][part]], dtype="str"),
            "answered_at": _stamp(origin, s["day"][part]),
            "nps": nps[part], "csat": csat[part],
            **care.surveys(part),
        }))
    write("_truth/branches", care.branch_truth())

    costs = np.array([a[2] for a in RETENTION_ACTIONS])
    for part in pieces(len(k["day"])):
        action, treatment = k["action"][part], k["treatment"][part].astype("int64")
        write("contacts", pd.DataFrame({
            "customer_id": pd.Series(ids[k["customer"][part]], dtype="str"),
            "contacted_at": _stamp(origin, k["day"][part]),
            "action": pd.Series(np.array([a[0] for a in RETENTION_ACTIONS])[action], dtype="str"),
            "treatment": treatment,
            "channel": pd.Series(np.array([a[1] for a in RETENTION_ACTIONS])[action], dtype="str"),
            "cost": np.where(treatment == 1, costs[action], 0.0),
        }))


def planted_chains() -> list[dict[str, object]]:
    """The planted chains as plain data, for `_truth/chains.json`."""
    return [{"name": c.name, "steps": list(c.steps), "continue_probability": list(c.continue_probability),
             "gap_days": [list(g) for g in c.gap_days], "who": c.who,
             "monthly_start_probability": c.monthly_start_probability,
             "months": (f"every {APP_RELEASE_EVERY_MONTHS} months (app releases)" if c.who == "mobile"
                        else "every month")} for c in CHAINS]


class TableFiles:
    """The generated tables' files in `folder`, each filled piece by piece in row order: one file per table.

    Input tables in `fmt` (Parquet with zstd, or UTF-8 CSV with ISO dates), `_truth/` tables always
    Parquet. Parquet pieces are buffered into row groups of `ROW_GROUP_ROWS` rows (the layout of a
    table written whole), except transactions, whose monthly pieces are written as they come (row
    groups of at most 1,000,000 rows within a month); CSV pieces are appended. Memory holds at most
    one row group per table.
    """

    AS_GIVEN = {"transactions": 1_000_000}  # table -> largest row group of a piece written as it comes

    def __init__(self, folder: Path, fmt: str) -> None:
        self.folder, self.fmt = folder, fmt
        self.rows: dict[str, int] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._buffers: dict[str, list[pa.Table]] = {}

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.{'parquet' if name.startswith('_truth/') else self.fmt}"

    def write(self, name: str, piece: Piece) -> None:
        """Append the next rows of table `name`."""
        path = self.path(name)
        first = name not in self.rows
        self.rows[name] = self.rows.get(name, 0) + (piece.num_rows if isinstance(piece, pa.Table) else len(piece))
        if first:
            path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            frame = piece.to_pandas(types_mapper=_arrow_strings) if isinstance(piece, pa.Table) else piece
            to_safe_csv(frame, path, mode="w" if first else "a", header=first, date_format="%Y-%m-%d %H:%M:%S")
            return
        table = piece if isinstance(piece, pa.Table) else pa.Table.from_pandas(piece, preserve_index=False)
        if name in self.AS_GIVEN:
            self._writer(name, table.schema).write_table(table, row_group_size=self.AS_GIVEN[name])
            return
        buffer = self._buffers.setdefault(name, [])
        buffer.append(table)
        if sum(t.num_rows for t in buffer) >= ROW_GROUP_ROWS:
            joined = pa.concat_tables(buffer)
            whole = joined.num_rows // ROW_GROUP_ROWS * ROW_GROUP_ROWS
            writer = self._writer(name, joined.schema)
            for first_row in range(0, whole, ROW_GROUP_ROWS):
                writer.write_table(joined.slice(first_row, ROW_GROUP_ROWS).combine_chunks())
            buffer[:] = [joined.slice(whole)] if whole < joined.num_rows else []

    def _writer(self, name: str, schema: pa.Schema) -> pq.ParquetWriter:
        if name not in self._writers:
            self._writers[name] = pq.ParquetWriter(self.path(name), schema, compression="zstd")
        return self._writers[name]

    def close(self, complete: bool = True) -> None:
        """Write the last (partial) row groups when `complete` (an empty table gets its empty row group), close all."""
        try:
            if complete:
                for name, buffer in self._buffers.items():
                    rest = pa.concat_tables(buffer) if buffer else None
                    if rest is not None and (rest.num_rows or name not in self._writers):
                        self._writer(name, rest.schema).write_table(rest.combine_chunks())
        finally:
            for writer in self._writers.values():
                writer.close()
            self._buffers.clear()


def run(customers: int, seed: int, out: str | Path, start: str = "2023-01-01", months: int = 30,
        fmt: str = "parquet", progress: Callable[[str], None] | None = None,
        contact_share: float = CONTACT_SHARE_PER_MONTH, control_share: float = CONTROL_SHARE) -> dict[str, int]:
    """Generate the dataset into `out` (replaced atomically); return the row count of each table.

    Every table is streamed to its file (`TableFiles`), so memory does not grow with customers x months.
    `contact_share`, `control_share`: the size of the bank's randomised retention campaign (see `simulate`).
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError("fmt must be 'parquet' or 'csv'")
    if not 0 <= contact_share <= 1 or not 0 <= control_share <= 1:
        raise ValueError("contact_share and control_share are shares between 0 and 1")
    say = progress or (lambda message: None)
    for leftover in clean_leftovers([Path(out)]):  # half-written folders of killed runs beside `out`
        say(f"removed {leftover}, left by a killed run")
    with atomic_dir(out) as tmp:
        files = TableFiles(tmp, fmt)
        complete = False
        try:
            simulate(customers, seed, start, months, files.write, progress=say,
                     contact_share=contact_share, control_share=control_share)
            complete = True
        finally:
            files.close(complete)
        (tmp / "_truth" / "chains.json").write_text(json.dumps(planted_chains(), indent=2) + "\n", encoding="utf-8")
        (tmp / "_truth" / "README.md").write_text(TRUTH_README, encoding="utf-8")
    ordered = {name: files.rows[name] for name in ("customers", "transactions", "complaints", "surveys", "contacts")}
    say(f"wrote {out}: " + ", ".join(f"{name} {rows:,}" for name, rows in ordered.items()))
    return ordered


TRUTH_README = """# Ground truth of the generated data (never an input to the pipeline)

- `monthly_hazard.parquet`: for each open customer at the start of each month, the
  probability of deciding to leave in that month (`hazard`; 1 for customers who already
  decided, `decided_to_leave`, and close 15-75 days after deciding) and the hidden
  dissatisfaction level that drives it. A model's ceiling: P(close within h days) = 1 - (1 - hazard)^(h/30.44).
- `customers.parquet`: hidden traits (frailty, transaction rate, typical amount, app
  use, loan holder), the month of a silent disengagement shock (-1: none), and the true
  effect of a retention contact (relative cut in the monthly hazard for 91 days).
- `complaint_origin.parquet`: which planted chain, instance and step each complaint
  belongs to (empty chain: a background complaint).
- `chains.json`: the planted root-cause chains, in order, with their probabilities.
- `branches.parquet`: every branch, its region, whether it is planted as truly worse
  (`truly_worse`, `planted_tilt_sd`: answers there are lower by about that many standard
  deviations) and the realised mean complaint satisfaction, CSAT and NPS per branch.
- Complaint timing (planted, not in a file): background complaints follow the calendar
  month (`pipelines.generate.COMPLAINT_SEASON`: about 1.4 times as many in November and
  December as in the rest of the year, fewest in summer) and the planted chains their own
  rhythm (app releases every four months). Within the week and the day each complaint
  channel has its profile (`pipelines.generate_care.CHANNEL_TIMING`): branches open
  9-17 on weekdays and 9-13 on Saturday, their busiest day, closed on Sunday; phones busiest
  on Monday; app, online and social complaints into the evening. Handling is slower for
  complaints opened at the weekend (x1.4; branch complaints on Saturday x1.8) and in
  December and January (x1.25), so those have more breaches.
"""

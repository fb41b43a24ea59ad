"""Point-in-time feature tables: one row per customer in the population at each cutoff.

Training and scoring share one code path: both `prepare` the tables once (customer ids
factorised, times as integers) and call `features_at` per cutoff, so the scoring row of
customer X at cutoff C is the training row of X at C. Every feature uses only events
strictly before the cutoff; labels use only the window [cutoff, cutoff + horizon). One
half-open convention everywhere: an event stamped at the cutoff (with date-only data, on the
cutoff day) is after it, so it is in this cutoff's label and the next cutoff's features.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pandas as pd

from features._grouping import (BLOCK_DAYS, NEVER, US_PER_DAY, Events, IdLookup, Prepared, cutoff_us, datetimes_us,
                                event_codes, floats, parallel_map, sorted_ids)
from features.btyd import BtydFit, btyd_features, fit_btyd, purchase_history
from features.catalogue import catalogue
from features.complaints import complaint_columns, complaint_features, complaint_inputs
from features.contacts import contact_features, contacted_rows
from features.contract import EVENT_TABLES, TABLES, EarlierTransactions, Tables
from features.ids import is_in, training_sample
from features.labels import (EXCLUSION_REASONS, RULE_EXCLUSIONS, days_to_closure, label_arrays, population_mask,
                             population_reasons)
from features.lifecycle import lifecycle_features, tenure_days
from features.rfm import (RfmBreakpoints, bin_edges, rfm_breakpoints, rfm_scores, summarise_transactions,
                          transaction_features)
from features.settings import FeatureSettings, LabelSettings, SettingsProblem
from features.static import customer_value_per_month, static_attributes
from features.surveys import SCORES, survey_columns, survey_features
from features.validation import data_as_of

DEFAULT_HORIZON_DAYS = LabelSettings().horizon_days

log = logging.getLogger("features")

KEY_COLUMNS: tuple[str, ...] = ("customer_id", "cutoff")
LABEL_COLUMNS: tuple[str, ...] = ("churned", "future_value", "days_to_churn")
FAMILY_NEEDS = {"transactions": "RFM and lifecycle (except tenure_days)", "complaints": "complaint",
                "surveys": "survey", "contacts": "retention-contact"}


# ---------------------------------------------------------------- preparation (once per table set)

def prepare(tables: Tables, settings: FeatureSettings, value_column: str = "amount",
            include: tuple[str, ...] = EVENT_TABLES, many_cutoffs: bool = False,
            customer_value_column: str | None = None, all_customers: pd.DataFrame | None = None) -> Prepared:
    """Factorise customer ids and turn the tables into flat arrays, once for all cutoffs.

    `include` names the event tables to prepare (the others are treated as absent).
    `many_cutoffs` reorders the transactions into time blocks once (faster per cutoff);
    otherwise only a row index is kept (less memory). Results are identical either way.
    `all_customers`: the whole customers table when `tables` holds a sample of it (`sampled_tables`):
    the static attributes are read as on the whole table (their levels and types), as for scoring.
    """
    return prepare_taking([tables], settings, value_column, include, many_cutoffs, customer_value_column,
                          all_customers)


def prepare_taking(owner: list[Tables], settings: FeatureSettings, value_column: str = "amount",
                   include: tuple[str, ...] = EVENT_TABLES, many_cutoffs: bool = False,
                   customer_value_column: str | None = None, all_customers: pd.DataFrame | None = None) -> Prepared:
    """`prepare` of the tables in `owner`, a one-item list that it empties: when it held the only reference,
    each event table is freed once its arrays are made (the arrays keep only the columns they view), so
    the tables and their prepared arrays are never all held at once (on the 1M bank the transactions'
    46M customer-id strings, 0.8 GB, go before the next table is prepared)."""
    tables = owner.pop()
    earlier = tables.earlier_transactions
    unsorted = tables.customers
    for column in ("customer_id", "signup_date"):
        if column not in unsorted.columns:
            raise ValueError(f"the customers table has no {column} column")
    order, ids = sorted_ids(unsorted["customer_id"])
    present = {name: getattr(tables, name) for name in include if getattr(tables, name) is not None}
    del tables
    has_transactions = "transactions" in present
    if include == EVENT_TABLES:
        for name, family in FAMILY_NEEDS.items():
            if name not in present:
                log.info("no %s table: %s features are left out", name, family)

    events: dict[str, Events] = {}
    if "transactions" in present:
        frame = present.pop("transactions")
        if value_column not in frame.columns:
            raise ValueError(f"labels.value_column {value_column!r} is not a column of the transactions table")
        code, known = event_codes(frame, ids)
        columns = {"amount": floats(frame["amount"])}
        columns["label_value"] = columns["amount"] if value_column == "amount" else floats(frame[value_column])
        plain = _events(code, datetimes_us(frame["timestamp"]), known, columns)
        del frame  # before the time blocks: their sort is this step's peak
        events["transactions"] = plain.in_time_blocks(materialise=many_cutoffs)
        if earlier is not None:  # only the recent rows were read: the older ones as each customer's latest time
            events["transactions"] = events["transactions"].with_earlier(
                cutoff_us(earlier.since), earlier_latest(earlier, ids, len(unsorted)))
    if "complaints" in present:
        frame = present.pop("complaints")
        code, known = event_codes(frame, ids)
        plain = _events(code, datetimes_us(frame["opened_at"]), known, {})
        events["complaints"] = Events(plain.code, plain.time, complaint_columns(frame, known, settings))
    if "surveys" in present:
        frame = present.pop("surveys")
        code, known = event_codes(frame, ids)
        plain = _events(code, datetimes_us(frame["answered_at"]), known, {})
        events["surveys"] = Events(plain.code, plain.time, survey_columns(frame, code, known))
    if "contacts" in present:
        frame = present.pop("contacts")
        code, known = event_codes(frame, ids)
        events["contacts"] = _events(code, datetimes_us(frame["contacted_at"]), known & contacted_rows(frame), {})
    # the customers in id order last: their copy is not held beside the event tables
    customers = unsorted.iloc[order].reset_index(drop=True)
    del unsorted
    signup = datetimes_us(customers["signup_date"], missing=NEVER)
    closed = (datetimes_us(customers["closed_date"], missing=NEVER) if "closed_date" in customers.columns
              else np.full(len(customers), NEVER, dtype=np.int64))
    static: dict[str, np.ndarray | pd.Categorical] = {}
    if include == EVENT_TABLES and all_customers is None:
        static = static_attributes(customers, settings)
    elif include == EVENT_TABLES:
        where = pd.Index(all_customers["customer_id"].astype("str")).get_indexer(customers["customer_id"].astype("str"))
        static = {name: values[where] for name, values in static_attributes(all_customers, settings).items()}
    customer_value = (customer_value_per_month(customers, customer_value_column)
                      if customer_value_column is not None and not has_transactions else None)
    return Prepared(
        customer_ids=customers["customer_id"].astype("str"), signup=signup, closed=closed, static=static,
        transactions=events.get("transactions"), complaints=events.get("complaints"),
        surveys=events.get("surveys"), contacts=events.get("contacts"), customer_value=customer_value,
    )


def feature_inputs(settings: FeatureSettings, labels: LabelSettings) -> dict[str, tuple[str, ...]]:
    """The columns of each event table that `prepare` (every feature family) and the labels read; a stage
    that needs nothing else reads only these (`load_tables(columns=...)`), and the customers whole."""
    return {
        "transactions": tuple(dict.fromkeys(("customer_id", "timestamp", "amount", labels.value_column))),
        "complaints": complaint_inputs(settings),
        "surveys": ("customer_id", "answered_at", *SCORES),
        "contacts": ("customer_id", "contacted_at", "treatment"),
    }


def uplift_stage_inputs(settings: FeatureSettings, labels: LabelSettings) -> dict[str, tuple[str, ...]]:
    """`feature_inputs` without the contacts: a stage that also builds uplift rows (`churn features`,
    `churn backtest`) reads every contacts column (the rows record each contact's action)."""
    return {name: columns for name, columns in feature_inputs(settings, labels).items() if name != "contacts"}


def earlier_latest(earlier: EarlierTransactions, ids: IdLookup, n_customers: int) -> np.ndarray:
    """Each customer's latest transaction time before `earlier.since` (microseconds, by customer code;
    int64 minimum where none; unknown customers' rows left out, as every event table's are)."""
    latest = np.full(n_customers, np.iinfo(np.int64).min, dtype=np.int64)
    code, known = event_codes(earlier.customers, ids)
    times = datetimes_us(earlier.customers["latest"], missing=np.iinfo(np.int64).min)
    np.maximum.at(latest, code[known], times[known])
    return latest


def transactions_read_from(cutoff: pd.Timestamp, settings: FeatureSettings, labels: LabelSettings
                           ) -> pd.Timestamp | None:
    """The earliest transaction time the features and the population at `cutoff` look at, rounded down to
    the time-block grid (`BLOCK_DAYS`), or None when they read the whole history (BTYD over every purchase:
    `features.btyd_history_days` empty). Before it, only each customer's latest time counts (days since the
    last transaction), so a stage that scores one cutoff reads the rows from here on (`EarlierTransactions`).
    """
    days = [int(bin_edges(settings)[-1])]
    if settings.btyd:
        if settings.btyd_history_days is None:
            return None
        days.append(settings.btyd_history_days)
    if labels.definition == "inactivity":
        days.append(labels.inactivity_lookback_days)
    width = BLOCK_DAYS * US_PER_DAY
    start = (cutoff_us(cutoff) - max(days) * US_PER_DAY) // width * width
    return pd.Timestamp(start, unit="us")


def _events(code: np.ndarray, time: np.ndarray, keep: np.ndarray, columns: dict[str, np.ndarray]) -> Events:
    """Events of the rows in `keep` (no copy when every row is kept)."""
    if keep.all():
        return Events(code, time, columns)
    return Events(code[keep], time[keep], {name: values[keep] for name, values in columns.items()})


# ---------------------------------------------------------------- features at one cutoff

FeatureValues = dict[str, np.ndarray | pd.Categorical]
"""Every feature of every prepared customer at one cutoff, by name (arrays in customer order: `feature_values`)."""


def feature_values(prepared: Prepared, cutoff: int, settings: FeatureSettings, population: np.ndarray,
                   breakpoints: RfmBreakpoints | None = None, *, horizon_days: int = DEFAULT_HORIZON_DAYS,
                   btyd_fit: BtydFit | None = None) -> FeatureValues:
    """Every feature of every prepared customer at the cutoff (arrays in customer order).

    `horizon_days` is the label horizon the BTYD predictions look ahead; `btyd_fit` fixes the
    BTYD models (default: fitted on every customer with a purchase before the cutoff).
    """
    n = prepared.n_customers

    def transaction_family() -> dict[str, np.ndarray | pd.Categorical]:
        out: dict[str, np.ndarray | pd.Categorical] = {"tenure_days": tenure_days(prepared.signup, cutoff)}
        if prepared.transactions is not None:
            summary = summarise_transactions(prepared.transactions, n, cutoff, settings)
            out.update(transaction_features(summary, settings))
            out.update(lifecycle_features(summary, prepared.signup, cutoff, settings.lifecycle))
            out.update(rfm_scores(out, breakpoints or rfm_breakpoints(out, population, settings), settings))
        return out

    def service_families() -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if prepared.transactions is not None and settings.btyd:
            history = purchase_history(prepared.transactions, n, cutoff, settings.btyd_history_days)
            out.update(btyd_features(history, btyd_fit or fit_btyd(history), horizon_days))
        if prepared.complaints is not None:
            out.update(complaint_features(prepared.complaints, n, cutoff, settings))
        if prepared.surveys is not None:
            out.update(survey_features(prepared.surveys, n, cutoff))
        if prepared.contacts is not None:
            out.update(contact_features(prepared.contacts, n, cutoff))
        return out

    # independent families: computed side by side (each writes only its own arrays)
    values: dict[str, np.ndarray | pd.Categorical] = {}
    for part in parallel_map(lambda family: family(), [transaction_family, service_families]):
        values.update(part)
    ordered = {info.name: values[info.name] for info in catalogue(settings) if info.name in values}
    ordered.update(prepared.static)
    return ordered


def features_at(prepared: Prepared, cutoff: pd.Timestamp, settings: FeatureSettings, population: np.ndarray,
                breakpoints: RfmBreakpoints | None = None, *, horizon_days: int = DEFAULT_HORIZON_DAYS,
                btyd_fit: BtydFit | None = None, values: FeatureValues | None = None) -> pd.DataFrame:
    """The feature table of the customers in `population` at `cutoff`, sorted by customer_id.

    `values`: this cutoff's `feature_values` over this population, already computed by a caller that shares them
    with another table of the same cutoff; they are taken (moved into the frame, the dict left empty).
    """
    moment = cutoff_us(cutoff)
    if values is None:
        values = feature_values(prepared, moment, settings, population, breakpoints, horizon_days=horizon_days,
                                btyd_fit=btyd_fit)
    positions = np.flatnonzero(population)
    columns: dict[str, object] = {
        "customer_id": prepared.customer_ids.iloc[positions].reset_index(drop=True),
        "cutoff": np.full(len(positions), moment, dtype=np.int64).view("datetime64[us]"),
    }
    for name in list(values):  # each customer-order array dropped as its column is taken: not all held twice
        columns[name] = values.pop(name)[positions]
    # copy=False: the columns are fresh arrays; skipping consolidation saves a full copy
    return pd.DataFrame(columns, copy=False)


def _population(prepared: Prepared, cutoff: pd.Timestamp, labels: LabelSettings | None) -> np.ndarray:
    return population_mask(prepared, cutoff_us(cutoff), labels or LabelSettings())


def build_features(tables: Tables, cutoff: pd.Timestamp, settings: FeatureSettings, *,
                   labels: LabelSettings | None = None,
                   rfm_breakpoints: RfmBreakpoints | None = None, btyd_fit: BtydFit | None = None) -> pd.DataFrame:
    """Features of the population at `cutoff`: customer_id, cutoff, then the feature columns.

    `labels` selects the population rule (default: the `closure` rule) and the horizon of the
    BTYD predictions; `rfm_breakpoints` fixes the RFM quintile edges (default: computed within
    this population) and `btyd_fit` the BTYD models (default: fitted on these tables).
    """
    cutoff = pd.Timestamp(cutoff)
    prepared = prepare(tables, settings)
    population = _population(prepared, cutoff, labels)
    return features_at(prepared, cutoff, settings, population, rfm_breakpoints,
                       horizon_days=(labels or LabelSettings()).horizon_days, btyd_fit=btyd_fit)


def population_btyd_fit(tables: Tables, cutoff: pd.Timestamp, settings: FeatureSettings) -> BtydFit | None:
    """The BTYD models of the whole customer base at `cutoff` (for building partitions separately)."""
    prepared = prepare(tables, settings)
    if prepared.transactions is None:
        return None
    return fit_btyd(purchase_history(prepared.transactions, prepared.n_customers, cutoff_us(cutoff),
                                      settings.btyd_history_days))


def population_breakpoints(tables: Tables, cutoff: pd.Timestamp, settings: FeatureSettings,
                           labels: LabelSettings | None = None) -> RfmBreakpoints | None:
    """The RFM quintile edges of the whole population (for building partitions separately)."""
    prepared = prepare(tables, settings)
    if prepared.transactions is None:
        return None
    population = _population(prepared, pd.Timestamp(cutoff), labels)
    moment = cutoff_us(cutoff)
    summary = summarise_transactions(prepared.transactions, prepared.n_customers, moment, settings)
    return rfm_breakpoints(transaction_features(summary, settings), population, settings)


def eligible_customers(tables: Tables, cutoff: pd.Timestamp, labels: LabelSettings) -> pd.Series:
    """The ids of the customers in the population at `cutoff`, sorted."""
    include = ("transactions",) if labels.definition == "inactivity" else ()
    prepared = prepare(tables, FeatureSettings(), labels.value_column, include)
    mask = population_mask(prepared, cutoff_us(cutoff), labels)
    return prepared.customer_ids[mask].reset_index(drop=True).rename("customer_id")


def labels_at(prepared: Prepared, cutoff: pd.Timestamp, labels: LabelSettings,
              population: np.ndarray) -> pd.DataFrame:
    """customer_id, churned, future_value of the customers in `population`."""
    churned, value = label_arrays(prepared, cutoff_us(cutoff), labels)
    positions = np.flatnonzero(population)
    return pd.DataFrame({
        "customer_id": prepared.customer_ids.iloc[positions].reset_index(drop=True),
        "churned": churned[positions],
        "future_value": value[positions],
    })


def build_labels(tables: Tables, cutoff: pd.Timestamp, labels: LabelSettings) -> pd.DataFrame:
    """customer_id, churned (0/1), future_value of the population at `cutoff`."""
    cutoff = pd.Timestamp(cutoff)
    prepared = prepare(tables, FeatureSettings(), labels.value_column, ("transactions",),
                       customer_value_column=labels.customer_value_column)
    return labels_at(prepared, cutoff, labels, population_mask(prepared, cutoff_us(cutoff), labels))


# ---------------------------------------------------------------- cutoffs and tables

def tables_as_of(tables: Tables) -> pd.Timestamp:
    """The exclusive end of the data: `tables.as_of`, else midnight after the latest date."""
    if tables.as_of is not None:
        return pd.Timestamp(tables.as_of)
    frames = {name: getattr(tables, name) for name in TABLES if getattr(tables, name) is not None}
    return data_as_of(frames, None)


def training_cutoffs(tables: Tables, labels: LabelSettings, first_event: pd.Timestamp | None = None
                     ) -> list[pd.Timestamp]:
    """Training cutoffs whose label window [cutoff, cutoff + horizon) ends by as_of, oldest first.

    The latest is the last month start with cutoff + horizon <= as_of (`cutoffs.anchor:
    month_start`) or exactly as_of - horizon (`as_of`); then `cutoffs.count` cutoffs back,
    `spacing_months` apart, keeping only those after the earliest event (or, for a
    customers-only snapshot, after the earliest signup). `first_event`: as `earliest_event`'s (the tables
    hold some customers' events only: the whole data's first event day).
    """
    return cutoffs_between(earliest_event(tables, first_event), tables_as_of(tables), labels)


def cutoffs_between(earliest: pd.Timestamp, as_of: pd.Timestamp, labels: LabelSettings) -> list[pd.Timestamp]:
    """`training_cutoffs` from the start of the history (`earliest_event`) and the end of the data.

    With `labels.churn_flag` the one cutoff is the flag's window start whatever the events: the
    snapshot's attributes are the history, and events from that day on (a campaign's contacts in
    the window) are after the cutoff, not a later start of the history."""
    last_allowed = as_of - pd.Timedelta(days=labels.horizon_days)
    if labels.cutoffs.anchor == "as_of":
        latest = last_allowed
    else:
        latest = pd.Timestamp(year=last_allowed.year, month=last_allowed.month, day=1)
    cutoffs = []
    for k in range(labels.cutoffs.count):
        cutoff = latest - pd.DateOffset(months=k * labels.cutoffs.spacing_months)
        if labels.churn_flag is not None or (pd.notna(earliest) and cutoff > earliest):
            cutoffs.append(pd.Timestamp(cutoff).as_unit("us"))
    return sorted(cutoffs)


def earliest_event(tables: Tables, first_event: pd.Timestamp | None = None) -> pd.Timestamp:
    """Where the history starts: the earliest event of any event table, or (snapshot) the earliest signup.

    `first_event`: the earliest event time when the event tables are not loaded (found by a query)."""
    earliest = tables.customers["signup_date"].min()
    event_starts = [getattr(tables, name)[TABLES[name].event_time].min()
                    for name in ("transactions", "complaints", "surveys", "contacts")
                    if getattr(tables, name) is not None and len(getattr(tables, name))]
    if first_event is not None:
        event_starts.append(first_event)
    if tables.earlier_transactions is not None and len(tables.earlier_transactions.customers):
        event_starts.append(tables.earlier_transactions.customers["first"].min())
    if event_starts:
        earliest = max(earliest, min(event_starts))
    return pd.Timestamp(earliest)


def no_cutoff_message(tables: Tables, labels: LabelSettings, first_event: pd.Timestamp | None = None) -> str:
    """Why there is no training cutoff, with the dates and the keys that decide it."""
    as_of = tables_as_of(tables)
    return (f"no training cutoff: a cutoff needs a full {labels.horizon_days}-day label window before "
            f"data.as_of ({as_of.date()}) and must fall after the start of the history "
            f"({earliest_event(tables, first_event).date()}). Set data.as_of to the date the data is complete up to, "
            f"shorten labels.horizon_days, or use labels.cutoffs.anchor: as_of (latest cutoff = as_of - horizon)")


def excluded_at(customer_ids: pd.Series, cutoff: pd.Timestamp, reasons: np.ndarray
                ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Customers a configurable rule leaves out at `cutoff` (customer_id, cutoff, reason, setting),
    and the count of every reason (those not yet signed up or already closed included).
    `reasons`: `population_reasons` of the customers `customer_ids`, in that order."""
    names = list(EXCLUSION_REASONS)
    counts = np.bincount(reasons[reasons >= 0], minlength=len(names))
    by_reason = {name: int(count) for name, count in zip(names, counts)}
    rule = np.isin(reasons, [names.index(r) for r in RULE_EXCLUSIONS])
    positions = np.flatnonzero(rule)
    frame = pd.DataFrame({
        "customer_id": customer_ids.iloc[positions].reset_index(drop=True),
        "cutoff": np.full(len(positions), cutoff_us(cutoff), dtype=np.int64).view("datetime64[us]"),
        "reason": pd.Categorical.from_codes(reasons[positions].astype(np.int64), categories=names),
        "setting": pd.Categorical.from_codes(reasons[positions].astype(np.int64),
                                             categories=[EXCLUSION_REASONS[n][1] for n in names]),
    })
    return frame, by_reason


ExclusionSink = Callable[[pd.DataFrame, dict[str, int]], None]


def iter_training_tables(tables: Tables, features: FeatureSettings, labels: LabelSettings,
                         on_excluded: ExclusionSink | None = None, first_event: pd.Timestamp | None = None
                         ) -> Iterator[pd.DataFrame]:
    """The training rows one cutoff at a time (features + churned + future_value), oldest first.

    Lets a caller write a large table cutoff by cutoff instead of holding it all.
    `on_excluded` receives, per cutoff, the customers a rule left out and every reason's count.
    With `labels.max_training_customers`, every table is cut to the customers of `training_sample` first
    (`sampled_tables`): only they have rows, and their population-relative features (RFM quintiles, the
    BTYD fits) are the sample's; the rule exclusions are reported for them. `first_event`: as `training_cutoffs`'.
    """
    cutoffs = training_cutoffs(tables, labels, first_event)
    if not cutoffs:
        raise SettingsProblem("labels.horizon_days", no_cutoff_message(tables, labels, first_event))
    sampled, everyone = sampled_tables(tables, labels)
    prepared = prepare(sampled, features, labels.value_column, many_cutoffs=len(cutoffs) > 1,
                       customer_value_column=labels.customer_value_column, all_customers=everyone)
    for cutoff in cutoffs:
        frame = training_rows_at(prepared, cutoff, features, labels, on_excluded)
        if frame is not None:
            yield frame


def training_rows_at(prepared: Prepared, cutoff: pd.Timestamp, features: FeatureSettings, labels: LabelSettings,
                     on_excluded: ExclusionSink | None = None,
                     values: FeatureValues | None = None) -> pd.DataFrame | None:
    """One cutoff's training rows (features, churned, future_value, days_to_churn under the closure rule);
    None, said in the log, when no customer is in the population. `on_excluded` as `iter_training_tables`;
    `values`: the cutoff's `feature_values` over its population (with `labels.horizon_days`), computed already
    for another table of the cutoff (taken, see `features_at`)."""
    reasons = population_reasons(prepared, cutoff_us(cutoff), labels)
    population = reasons < 0
    if on_excluded is not None:
        on_excluded(*excluded_at(prepared.customer_ids, cutoff, reasons))
    if not population.any():
        log.info("cutoff %s: no customers in the population, skipped", cutoff.date())
        return None
    frame = features_at(prepared, cutoff, features, population, horizon_days=labels.horizon_days, values=values)
    churned, value = label_arrays(prepared, cutoff_us(cutoff), labels)
    positions = np.flatnonzero(population)
    frame = frame.assign(churned=churned[positions], future_value=value[positions])
    # time to churn: the label of every shorter horizon; a churn flag says who left in the window, not when
    if labels.definition == "closure" and labels.churn_flag is None:
        frame["days_to_churn"] = days_to_closure(prepared, cutoff_us(cutoff), labels)[positions]
    return frame


def build_training_table(tables: Tables, features: FeatureSettings, labels: LabelSettings) -> pd.DataFrame:
    """Rows (customer_id, cutoff) for every training cutoff, features, churned and future_value."""
    frames = list(iter_training_tables(tables, features, labels))
    if not frames:
        raise ValueError("no training rows: every training cutoff has an empty population")
    return pd.concat(frames, ignore_index=True)


def build_scoring_table(tables: Tables, features: FeatureSettings, labels: LabelSettings,
                        as_of: pd.Timestamp | None = None, on_excluded: ExclusionSink | None = None) -> pd.DataFrame:
    """Features of the population at `as_of` (default: the end of the data); no label columns.

    `on_excluded` receives the customers a rule left out and every reason's count.
    """
    cutoff = pd.Timestamp(as_of) if as_of is not None else tables_as_of(tables)
    return scoring_table_of(prepare(tables, features, labels.value_column), cutoff, features, labels, on_excluded)


def scoring_table_of(prepared: Prepared, cutoff: pd.Timestamp, features: FeatureSettings, labels: LabelSettings,
                     on_excluded: ExclusionSink | None = None) -> pd.DataFrame:
    """`build_scoring_table` from tables already prepared (`prepare`), so that a caller can free the
    tables first: on the 1M bank they are 1.5 GB that the feature build does not read."""
    reasons = population_reasons(prepared, cutoff_us(cutoff), labels)
    if on_excluded is not None:
        on_excluded(*excluded_at(prepared.customer_ids, cutoff, reasons))
    return features_at(prepared, cutoff, features, reasons < 0, horizon_days=labels.horizon_days)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model input columns of a training or scoring table (everything but keys and labels)."""
    return [c for c in frame.columns if c not in KEY_COLUMNS and c not in LABEL_COLUMNS]


def sampled_tables(tables: Tables, labels: LabelSettings) -> tuple[Tables, pd.DataFrame | None]:
    """The tables the training side reads under `labels.max_training_customers`: every table cut to the
    customers of `training_sample` (as_of kept: the data's end does not move), and the whole customers
    table (for `prepare`'s static attributes); the tables as they are, and None, without a sample.
    Call it after the cutoffs are known: they come from the whole data."""
    ids = tables.customers["customer_id"].astype("str")
    sample = training_sample(ids, labels.max_training_customers)
    if sample is None:
        return tables, None
    kept = ids[sample]

    def cut(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        return None if frame is None else frame[is_in(frame["customer_id"], kept)].reset_index(drop=True)

    return replace(tables, customers=tables.customers[sample].reset_index(drop=True), transactions=cut(tables.transactions),
                   complaints=cut(tables.complaints), surveys=cut(tables.surveys), contacts=cut(tables.contacts),
                   as_of=tables_as_of(tables)), tables.customers


def tables_before(tables: Tables, moment: pd.Timestamp) -> Tables:
    """The tables as they were known at `moment`: nothing at or after it (for backtests).

    Customers who signed up at or after `moment` are dropped; a closure, a complaint's first
    response or resolution (and the satisfaction given at resolution) at or after it is not known
    yet (empty); event rows at or after it are dropped; as_of becomes `moment`. Never mutates `tables`.
    """
    moment = pd.Timestamp(moment)

    def known(frame: pd.DataFrame | None, column: str) -> pd.DataFrame | None:
        if frame is None:
            return None
        return frame[frame[column] < moment].reset_index(drop=True)

    customers = tables.customers[tables.customers["signup_date"] < moment].reset_index(drop=True)
    if "closed_date" in customers:
        customers = customers.assign(closed_date=customers["closed_date"].where(customers["closed_date"] < moment))
    complaints = known(tables.complaints, "opened_at")
    if complaints is not None:
        changes: dict[str, pd.Series] = {}
        for column in ("first_response_at", "resolved_at"):
            if column in complaints:
                changes[column] = complaints[column].where(complaints[column] < moment)
        if "satisfaction" in complaints and "resolved_at" in complaints:
            changes["satisfaction"] = complaints["satisfaction"].where(complaints["resolved_at"] < moment)
        complaints = complaints.assign(**changes)
    return Tables(customers=customers, transactions=known(tables.transactions, "timestamp"), complaints=complaints,
                  surveys=known(tables.surveys, "answered_at"), contacts=known(tables.contacts, "contacted_at"),
                  as_of=moment)

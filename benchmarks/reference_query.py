"""A hand-written DuckDB query of the relational engine's full feature set at one cutoff: the speed reference
of the feature benchmarks (issue 15: "the features stage for one cutoff, from the files, at most 1.2x the
full-set DuckDB reference").

`reference_sql` returns ONE SQL statement that reads the Parquet files (read_parquet) and computes, for one
cutoff, every column `pipelines.relational.build_frames(cfg, [cutoff], families=PORTED_FAMILIES)` returns:
the features of rfm, lifecycle, complaints, surveys and contacts, then the labels. Written as one would
write it by hand for speed, not from the Ibis definitions:

- the cutoff is a literal, so every window is a comparison with a constant (DuckDB prunes the Parquet row
  groups by their min/max statistics: the transactions are stored roughly in time order);
- ONE hash aggregate per event table over one scan of its rows: every window, 30-day month, money sum,
  the latest event, the largest outflow (max of an (amount, time) struct: its most recent one on ties),
  the active days (bit_or of one bit per day, 64 days per BIGINT, then bit_count), the label window
  (the transactions after the cutoff) are conditional aggregates (FILTER) of that one pass. Transactions
  older than the longest look-back (needed only for the latest one) are a second, one-column aggregate
  over the other row groups, so the wide aggregate sees only the rows of the windows. The two latest
  survey answers per score are max_by(score, key, 2), key = (time, file row) as one exact HUGEINT;
- the population joins the per-customer aggregates; the quintile edges are one aggregate over it (the
  sorted values, edge q at 1-based position ceil(q * n), q * n in double precision as numpy's
  inverted_cdf), the scores counting the edges below the value.

Semantics are the engine's (features/relational/*.py): windows [cutoff - N days, cutoff); `back` = whole
24-hour steps back from the cutoff (0: the last 24 hours), so "in the last N days" is back < N; 30-day
months are back // 30; days since = (cutoff - time) // 1 day. Money: `amount` cast to DECIMAL(18, 6) and
summed exactly (money="decimal", the default: the same values as the engine's DECIMAL(38, 6) for
|amount| < 10^12, a larger amount fails the cast), or read as DOUBLE and summed in floating point
(money="double": the money columns may then differ from the engine's in the last bits).

Assumes the contract's column names in the files (no column mapping) and the contract's optional
columns of the complaints table present (category, priority, channel, first_response_at, resolved_at,
satisfaction; the generated banks have them); `closed_date` and the contacts' `treatment` may be absent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
QUINTILES = (0.2, 0.4, 0.6, 0.8)
TABLES = ("customers", "transactions", "complaints", "surveys", "contacts")
_LIST = ",\n             "
_OUT = ",\n       "


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ts(moment: pd.Timestamp) -> str:
    return f"TIMESTAMP '{moment.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def _columns(path: str) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.read_schema(path).names)


def _sum_left(terms: list[str]) -> str:
    """t0 + t1 + ... added left to right (the engine's and numpy's order), parenthesised."""
    out = terms[0]
    for term in terms[1:]:
        out = f"({out} + {term})"
    return out


def reference_sql(files: Mapping[str, str], cutoff: str | pd.Timestamp, settings=None, labels=None,
                  money: str = "decimal") -> str:
    """One DuckDB statement: customer_id, cutoff, the features of the five ported families in catalogue
    order, then churned, future_value (and days_to_churn with `closure`) at `cutoff`, rows sorted by
    customer_id. `files`: table name -> Parquet path (customers and transactions required; complaints,
    surveys, contacts given, as the engine, whenever the feature set is to be complete). `settings`,
    `labels`: FeatureSettings and LabelSettings (default: the default config's)."""
    from features.catalogue import (ACTIVE_DAYS_WINDOW, ACTIVITY_MONTHS, CONTACT_WINDOW, MONTH_DAYS, OUTFLOW_WINDOW,
                                    REPEAT_WINDOW, RFM_SEGMENT_RULES, SLOPE_MONTHS, TREND_DAYS, catalogue)
    from features.contract import PRIORITY_TIERS
    from features.relational.engine import PORTED_FAMILIES
    from features.settings import FeatureSettings, LabelSettings

    settings = settings or FeatureSettings()
    labels = labels or LabelSettings()
    if money not in ("decimal", "double"):
        raise ValueError("money is 'decimal' or 'double'")
    missing = [t for t in TABLES if t not in files]
    if missing:
        raise ValueError(f"the full feature set needs every table; missing {missing}")
    amount_type = "DECIMAL(18, 6)" if money == "decimal" else "DOUBLE"
    c = pd.Timestamp(cutoff).as_unit("us")
    c_us = int(c.value // 1000)
    C = _ts(c)
    horizon_end = _ts(c + pd.Timedelta(days=labels.horizon_days))
    windows = tuple(settings.windows_days)
    longest = settings.longest_window
    months = ACTIVITY_MONTHS
    back = f"(({c_us} - epoch_us(ts) - 1) // {US_PER_DAY})"  # whole days back (0: the last 24 hours)
    days = f"(({c_us} - epoch_us({{t}})) // {US_PER_DAY})"  # whole days since time t (> 0 elapsed)
    customer_columns = _columns(files["customers"])
    has_closed = "closed_date" in customer_columns
    has_treatment = "treatment" in _columns(files["contacts"])

    # ---- transactions: the rows of the longest look-back and the label window in one aggregate; older
    # history only for the latest transaction (a second aggregate over the older row groups, one column)
    lookback = max((*windows, ACTIVE_DAYS_WINDOW, OUTFLOW_WINDOW, MONTH_DAYS * months, *(2 * d for d in TREND_DAYS),
                    *((labels.inactivity_lookback_days,) if labels.definition == "inactivity" else ())))
    lower = _ts(c - pd.Timedelta(days=lookback))
    needed = sorted(set(windows) | set(TREND_DAYS) | {2 * d for d in TREND_DAYS})
    remainders: dict[int, str] = {}  # window -> count of its days past the last whole month
    window_sums: dict[int, str] = {}
    for w in needed:  # a window's count: its whole 30-day months, plus the days beyond them
        full = min(w // MONTH_DAYS, months)
        terms = [f"m{k}" for k in range(full)]
        if w > full * MONTH_DAYS:
            remainders[w] = f"count(*) FILTER (WHERE back >= {full * MONTH_DAYS} AND back < {w}) AS r{w}"
            terms.append(f"r{w}")
        window_sums[w] = " + ".join(terms)
    segments = math.ceil(ACTIVE_DAYS_WINDOW / 64)  # active days: one bit per day, 64 days per BIGINT
    day_bits = [f"bit_or(CASE WHEN back >= {64 * i} AND back < {min(64 * (i + 1), ACTIVE_DAYS_WINDOW)} "
                f"THEN 1::UBIGINT << (back - {64 * i})::UBIGINT END) AS d{i}" for i in range(segments)]
    tx_aggs = [
        "max(ts) FILTER (WHERE back >= 0) AS last_ts",
        *[f"count(*) FILTER (WHERE mon = {k}) AS m{k}" for k in range(months)],
        *remainders.values(),
        *[f"sum(amount) FILTER (WHERE back < {w}) AS s{w}" for w in sorted(set(windows) | {OUTFLOW_WINDOW})],
        *day_bits,
        f"sum(amount) FILTER (WHERE back < {OUTFLOW_WINDOW} AND amount < 0) AS outflows",
        f"max({{'o': -amount, 't': ts}}) FILTER (WHERE back < {OUTFLOW_WINDOW} AND amount < 0) AS largest",
        f"sum(abs(amount)) FILTER (WHERE back < {longest}) AS absolute",
        "sum(amount) FILTER (WHERE back IS NULL) AS future_value",
        "count(*) FILTER (WHERE back IS NULL) AS seen",
    ]
    if labels.definition == "inactivity":
        tx_aggs.append(f"count(*) FILTER (WHERE back < {labels.inactivity_lookback_days}) AS recent")
    tx_derived = [f"{expr} AS n{w}" for w, expr in window_sums.items()]
    tx_derived.append(" + ".join(f"bit_count(coalesce(d{i}, 0::UBIGINT))::BIGINT" for i in range(segments)) + " AS active_days")
    tx = f"""
    tx AS (
      SELECT *, {", ".join(tx_derived)}
      FROM (SELECT customer_id, {_LIST.join(tx_aggs)}
            FROM (SELECT customer_id::VARCHAR AS customer_id, ts, amount,
                         CASE WHEN ts < {C} THEN {back} END AS back,
                         CASE WHEN ts < {C} AND ts >= {_ts(c - pd.Timedelta(days=MONTH_DAYS * months))}
                              THEN {back} // {MONTH_DAYS} END AS mon
                  FROM (SELECT customer_id, "timestamp"::TIMESTAMP AS ts, amount::{amount_type} AS amount
                        FROM read_parquet({_quote(files["transactions"])}))
                  WHERE ts >= {lower} AND ts < {horizon_end})
            GROUP BY customer_id)),
    tx_before AS (
      SELECT customer_id::VARCHAR AS customer_id, max("timestamp"::TIMESTAMP) AS last_ts
      FROM read_parquet({_quote(files["transactions"])})
      WHERE "timestamp"::TIMESTAMP < {lower}
      GROUP BY customer_id)"""

    # ---- complaints: one scan of every complaint opened before the cutoff
    response = _targets(settings, "first_response_hours", PRIORITY_TIERS)
    resolution = _targets(settings, "resolution_hours", PRIORITY_TIERS)

    def target(targets: dict[str, int]) -> str:
        if not targets:
            return "NULL::BIGINT"
        return "CASE priority " + " ".join(f"WHEN {_quote(t)} THEN {us}" for t, us in targets.items()) + " END"

    own, channels = settings.own_column_categories, settings.complaint_channels
    in_long = f"back < {longest}"
    cx_aggs = [f"count(*) FILTER (WHERE back < {w}) AS n{w}" for w in windows]
    cx_aggs += [f"count(*) FILTER (WHERE {in_long} AND category = {_quote(k)}) AS cat_{k}" for k in own]
    cx_aggs.append(f"count(*) FILTER (WHERE {in_long} AND (category IS NULL OR category NOT IN "
                   f"({', '.join(map(_quote, own))}))) AS cat_other")
    cx_aggs += [f"count(*) FILTER (WHERE {in_long} AND priority = {_quote(t)}) AS tier_{t}" for t in PRIORITY_TIERS]
    cx_aggs += [f"count(*) FILTER (WHERE {in_long} AND channel = {_quote(k)}) AS via_{k}" for k in channels]
    cx_aggs.append(f"count(*) FILTER (WHERE {in_long} AND (channel IS NULL OR channel NOT IN "
                   f"({', '.join(map(_quote, channels))}))) AS via_other")
    cx_aggs += [
        "count(*) FILTER (WHERE is_open) AS open_n",
        "max(elapsed) FILTER (WHERE is_open) AS oldest_open_us",
        f"sum(response_us) FILTER (WHERE {in_long} AND resolved AND responded) AS response_sum",
        f"count(*) FILTER (WHERE {in_long} AND resolved AND responded) AS response_n",
        f"sum(resolution_us) FILTER (WHERE {in_long} AND resolved) AS resolution_sum",
        f"count(*) FILTER (WHERE {in_long} AND resolved) AS resolution_n",
        f"count(*) FILTER (WHERE {in_long} AND responded AND response_us > response_target) AS late_responses",
        f"count(*) FILTER (WHERE {in_long} AND resolved AND resolution_us > resolution_target) AS late_resolutions",
        "count(*) FILTER (WHERE is_open AND NOT responded AND elapsed > response_target) AS unanswered",
        "count(*) FILTER (WHERE is_open AND elapsed > resolution_target) AS open_late",
        f"sum(satisfaction) FILTER (WHERE {in_long} AND resolved AND satisfaction IS NOT NULL) AS sat_sum",
        f"count(*) FILTER (WHERE {in_long} AND resolved AND satisfaction IS NOT NULL) AS sat_n",
        f"count(*) FILTER (WHERE {in_long} AND resolved AND satisfaction < 3) AS sat_low",
        f"count(*) FILTER (WHERE back < {REPEAT_WINDOW}) AS repeat_window_n",
        f"count(DISTINCT category) FILTER (WHERE back < {REPEAT_WINDOW}) "  # + 1 if a missing category
        f"+ (count(*) FILTER (WHERE back < {REPEAT_WINDOW} AND category IS NULL) > 0)::BIGINT AS repeat_categories",
        "max(ts) AS last_ts",
    ]
    cx = f"""
    cx AS (
      SELECT customer_id, {_LIST.join(cx_aggs)}
      FROM (SELECT customer_id, ts, category, priority, channel, satisfaction,
                   {back} AS back, {c_us} - epoch_us(ts) AS elapsed,
                   (resolved_at IS NULL OR resolved_at >= {C}) AS is_open,
                   NOT (resolved_at IS NULL OR resolved_at >= {C}) AS resolved,
                   (first_response_at IS NOT NULL AND first_response_at < {C}) AS responded,
                   epoch_us(first_response_at) - epoch_us(ts) AS response_us,
                   epoch_us(resolved_at) - epoch_us(ts) AS resolution_us,
                   {target(response)} AS response_target, {target(resolution)} AS resolution_target
            FROM (SELECT customer_id::VARCHAR AS customer_id, opened_at::TIMESTAMP AS ts,
                         category::VARCHAR AS category, priority::VARCHAR AS priority, channel::VARCHAR AS channel,
                         first_response_at::TIMESTAMP AS first_response_at, resolved_at::TIMESTAMP AS resolved_at,
                         satisfaction::DOUBLE AS satisfaction
                  FROM read_parquet({_quote(files["complaints"])}))
            WHERE ts < {C})
      GROUP BY customer_id)"""

    # ---- surveys: the two latest answers of each score, latest by (time, file row) as one exact HUGEINT key
    sv = f"""
    sv AS (
      SELECT customer_id,
             max_by(nps, k, 2) FILTER (WHERE nps IS NOT NULL) AS nps2,
             max_by(csat, k, 2) FILTER (WHERE csat IS NOT NULL) AS csat2,
             max(ts) AS last_ts
      FROM (SELECT customer_id::VARCHAR AS customer_id, answered_at::TIMESTAMP AS ts, nps::DOUBLE AS nps,
                   csat::DOUBLE AS csat, epoch_us(answered_at::TIMESTAMP)::HUGEINT * 4294967296 + file_row_number AS k
            FROM read_parquet({_quote(files["surveys"])}, file_row_number = true)
            WHERE answered_at::TIMESTAMP < {C})
      GROUP BY customer_id)"""

    # ---- retention contacts (treatment = 1 only, when the column exists)
    real = " AND treatment = 1" if has_treatment else ""
    ct = f"""
    ct AS (
      SELECT customer_id, max(ts) AS last_ts,
             count(*) FILTER (WHERE ts >= {_ts(c - pd.Timedelta(days=CONTACT_WINDOW))}) AS n{CONTACT_WINDOW}
      FROM (SELECT customer_id::VARCHAR AS customer_id, contacted_at::TIMESTAMP AS ts
            FROM read_parquet({_quote(files["contacts"])})
            WHERE contacted_at::TIMESTAMP < {C}{real})
      GROUP BY customer_id)"""

    # ---- the population and the four aggregates side by side
    closed = "closed_date::TIMESTAMP" if has_closed else "NULL::TIMESTAMP"
    feature_window = {w: f"coalesce(tx.n{w}, 0)" for w in set(windows) | {2 * d for d in TREND_DAYS} | set(TREND_DAYS)}
    f: dict[str, str] = {}
    f["days_since_last_transaction"] = f"{days.format(t='coalesce(tx.last_ts, tx_before.last_ts)')}::DOUBLE"
    for w in windows:
        f[f"transaction_count_{w}d"] = feature_window[w]
        f[f"transaction_amount_{w}d"] = f"coalesce(tx.s{w}, 0)::DOUBLE"
        f[f"average_transaction_amount_{w}d"] = (f"CASE WHEN {feature_window[w]} = 0 THEN NULL ELSE "
                                                 f"coalesce(tx.s{w}, 0)::DOUBLE / {feature_window[w]}::DOUBLE END")
    f[f"active_days_{ACTIVE_DAYS_WINDOW}d"] = "coalesce(tx.active_days, 0)"
    for d in TREND_DAYS:
        latest, previous = feature_window[d], f"({feature_window[2 * d]} - {feature_window[d]})"
        f[f"transaction_trend_{d}d"] = (f"CASE WHEN {latest} = 0 AND {previous} = 0 THEN NULL ELSE "
                                        f"({latest}::DOUBLE + 1.0) / ({previous}::DOUBLE + 1.0) END")
    net = f"coalesce(tx.s{OUTFLOW_WINDOW}, 0)"
    out = "coalesce(tx.outflows, 0)"
    f[f"outflow_share_{OUTFLOW_WINDOW}d"] = (f"CASE WHEN ({net} - 2 * {out})::DOUBLE = 0 THEN NULL ELSE "
                                             f"abs({out})::DOUBLE / ({net} - 2 * {out})::DOUBLE END")
    largest = "coalesce(tx.largest.o, 0)::DOUBLE"
    f[f"largest_outflow_{OUTFLOW_WINDOW}d"] = largest
    typical = (f"CASE WHEN {feature_window[longest]}::DOUBLE = 0 THEN NULL ELSE "
               f"coalesce(tx.absolute, 0)::DOUBLE / {feature_window[longest]}::DOUBLE END")
    f[f"largest_outflow_{OUTFLOW_WINDOW}d_vs_typical"] = (f"CASE WHEN {typical} = 0 THEN NULL ELSE "
                                                          f"{largest} / {typical} END")
    f[f"days_since_largest_outflow_{OUTFLOW_WINDOW}d"] = f"{days.format(t='tx.largest.t')}::DOUBLE"
    # lifecycle (the stage reads the days since the last transaction and the 90-day trend)
    m = [f"coalesce(tx.m{k}, 0)" for k in range(months)]
    # the slope as the engine computes it (features/relational/lifecycle.py, numpy's float operations in
    # order); what depends only on the signup date (the weights of the months after it, their mean
    # position and spread) is a column of the population, computed before the join
    usable = f"greatest(least(({c_us} - epoch_us(signup)) // {MONTH_DAYS * US_PER_DAY}, {SLOPE_MONTHS}), 0)"
    js = range(SLOPE_MONTHS)
    x = [f"{float(j)}::DOUBLE" for j in js]
    pop_slope = [f"CASE WHEN {j} >= {SLOPE_MONTHS} - _usable THEN 1.0::DOUBLE ELSE 0.0::DOUBLE END AS _w{j}" for j in js]
    pop_slope.append(f"{_sum_left([f'_w{j}' for j in js])} AS _n")
    pop_slope.append(f"{_sum_left([f'(_w{j} * {x[j]})' for j in js])} / _n AS _mean_x")
    pop_slope += [f"_w{j} * ({x[j]} - _mean_x) AS _wd{j}" for j in js]
    pop_slope.append(f"{_sum_left([f'(_wd{j} * ({x[j]} - _mean_x))' for j in js])} AS _spread")
    counts = [f"{m[SLOPE_MONTHS - 1 - j]}::DOUBLE" for j in js]  # oldest first
    mean_y = f"({_sum_left([f'(_w{j} * {counts[j]})' for j in js])} / _n)"
    slope = f"(({_sum_left([f'(_wd{j} * ({counts[j]} - {mean_y}))' for j in js])} / _spread) / {mean_y})"
    busiest = f"greatest({', '.join(m)})"
    f["tenure_days"] = f"{days.format(t='signup')}::DOUBLE"
    # complaints
    for w in windows:
        f[f"complaint_count_{w}d"] = f"coalesce(cx.n{w}, 0)"
    for k in (*own, "other"):
        f[f"complaints_about_{k}_{longest}d"] = f"coalesce(cx.cat_{k}, 0)"
    for t in PRIORITY_TIERS:
        f[f"complaints_{t}_priority_{longest}d"] = f"coalesce(cx.tier_{t}, 0)"
    for k in (*channels, "other"):
        f[f"complaints_via_{k}_{longest}d"] = f"coalesce(cx.via_{k}, 0)"
    f["open_complaints"] = "coalesce(cx.open_n, 0)"
    f["open_complaints_oldest_age_days"] = f"(cx.oldest_open_us // {US_PER_DAY})::DOUBLE"
    for name, total, count in (("first_response", "response_sum", "response_n"),
                               ("resolution", "resolution_sum", "resolution_n")):
        f[f"mean_{name}_hours_{longest}d"] = (f"CASE WHEN coalesce(cx.{count}, 0) = 0 THEN NULL ELSE "
                                              f"(cx.{total}::DOUBLE / {US_PER_HOUR}) / cx.{count}::DOUBLE END")
    f[f"late_first_responses_{longest}d"] = "coalesce(cx.late_responses, 0)"
    f[f"late_resolutions_{longest}d"] = "coalesce(cx.late_resolutions, 0)"
    f["unanswered_complaints_past_response_target"] = "coalesce(cx.unanswered, 0)"
    f["open_complaints_past_resolution_target"] = "coalesce(cx.open_late, 0)"
    f[f"mean_complaint_satisfaction_{longest}d"] = ("CASE WHEN coalesce(cx.sat_n, 0) = 0 THEN NULL ELSE "
                                                    "cx.sat_sum / cx.sat_n::DOUBLE END")
    f[f"low_satisfaction_share_{longest}d"] = ("CASE WHEN coalesce(cx.sat_n, 0) = 0 THEN NULL ELSE "
                                               "cx.sat_low::DOUBLE / cx.sat_n::DOUBLE END")
    f[f"repeat_complaints_{REPEAT_WINDOW}d"] = "coalesce(cx.repeat_window_n - cx.repeat_categories, 0)"
    f["days_since_last_complaint"] = f"{days.format(t='cx.last_ts')}::DOUBLE"
    # surveys
    f["last_nps"] = "sv.nps2[1]"
    f["nps_change"] = "sv.nps2[1] - sv.nps2[2]"
    f["nps_detractor"] = "CASE WHEN sv.nps2[1] IS NULL THEN NULL WHEN sv.nps2[1] <= 6 THEN 1.0::DOUBLE ELSE 0.0::DOUBLE END"
    f["last_csat"] = "sv.csat2[1]"
    f["csat_change"] = "sv.csat2[1] - sv.csat2[2]"
    f["days_since_last_survey"] = f"{days.format(t='sv.last_ts')}::DOUBLE"
    # contacts
    f["days_since_last_retention_contact"] = f"{days.format(t='ct.last_ts')}::DOUBLE"
    f[f"retention_contacts_{CONTACT_WINDOW}d"] = f"coalesce(ct.n{CONTACT_WINDOW}, 0)"

    # the wide row of each customer in the population (`base`), the quintile edges over it, the scores
    base_columns = dict(f)
    base_columns["_slope"] = f"CASE WHEN _n >= 3 AND {mean_y} > 0 THEN {slope} END"
    base_columns["_months_active"] = " + ".join(f"({mk} > 0)::BIGINT" for mk in m)
    base_columns["_peak"] = (f"CASE WHEN {busiest} > 0 THEN CASE "
                             + " ".join(f"WHEN {mk} = {busiest} THEN {float(k)}::DOUBLE" for k, mk in enumerate(m))
                             + " END END")
    closes = f"(closed IS NOT NULL AND closed >= {C} AND closed < {horizon_end})"
    churned = closes + (" OR coalesce(tx.seen, 0) = 0" if labels.definition == "inactivity" else "")
    base_columns["_churned"] = f"({churned})::BIGINT"
    base_columns["_future_value"] = "coalesce(tx.future_value, 0)::DOUBLE"
    label_names = ["churned", "future_value"]
    if labels.definition == "closure":
        base_columns["_days_to_churn"] = f"CASE WHEN {closes} THEN ((epoch_us(closed) - {c_us}) // {US_PER_DAY})::DOUBLE END"
        label_names.append("days_to_churn")
    select_base = _LIST.join(f"{expr} AS {name}" for name, expr in base_columns.items())
    base = f"""
    pop AS (
      SELECT customer_id, signup, closed, {usable} AS _usable, {", ".join(pop_slope)}
      FROM (SELECT customer_id::VARCHAR AS customer_id, signup_date::TIMESTAMP AS signup, {closed} AS closed
            FROM read_parquet({_quote(files["customers"])}))
      WHERE signup < {C} AND (closed IS NULL OR closed >= {C})),
    base AS (
      SELECT pop.customer_id,
             {select_base}
      FROM pop
      LEFT JOIN tx USING (customer_id)
      LEFT JOIN tx_before USING (customer_id)
      LEFT JOIN cx USING (customer_id)
      LEFT JOIN sv USING (customer_id)
      LEFT JOIN ct USING (customer_id){" WHERE tx.recent > 0" if labels.definition == "inactivity" else ""})"""

    scored = {"rfm_recency_score": ("days_since_last_transaction", False),
              "rfm_frequency_score": (f"transaction_count_{longest}d", True),
              "rfm_monetary_score": (f"transaction_amount_{longest}d", True)}
    edge_lists = ", ".join(f"list_sort(list({col}::DOUBLE) FILTER (WHERE {col} IS NOT NULL)) AS v_{name}"
                           for name, (col, _) in scored.items())
    edge_values = ", ".join(f"v_{name}[ceil({q}::DOUBLE * len(v_{name})::DOUBLE)::BIGINT] AS e{i}_{name}"
                            for name in scored for i, q in enumerate(QUINTILES))

    def score(name: str) -> str:
        """The edges below the value: quintile q's edge is at 1-based position ceil(q * n) of the sorted values."""
        col, higher = scored[name]
        below = " + ".join(f"(e{i}_{name} < {col}::DOUBLE)::BIGINT" for i in range(len(QUINTILES)))
        value = f"1 + {below}" if higher else f"5 - ({below})"
        return f"CASE WHEN {col} IS NULL THEN 1 ELSE {value} END"

    edges = f"""
    edges AS (SELECT {edge_values} FROM (SELECT {edge_lists} FROM base)),
    scored AS (
      SELECT base.*, {", ".join(f"{score(k)} AS {k}" for k in scored)}
      FROM base CROSS JOIN edges)"""

    life = settings.lifecycle
    r, fr, mo = "rfm_recency_score", "rfm_frequency_score", "rfm_monetary_score"
    rules = {"champions": f"{r} >= 4 AND {fr} >= 4 AND {mo} >= 4", "loyal": f"{r} >= 3 AND {fr} >= 4",
             "cannot_lose_them": f"{r} <= 2 AND {fr} >= 4 AND {mo} >= 4", "at_risk": f"{r} <= 2 AND {fr} >= 3",
             "promising": f"{r} >= 4 AND {fr} <= 2", "potential_loyalist": f"{r} >= 3 AND {fr} = 3",
             "hibernating": f"{r} <= 2 AND {fr} <= 2"}
    final = {
        "rfm_segment": ("CASE " + " ".join(f"WHEN {rules[k]} THEN {_quote(k)}" for k, _ in RFM_SEGMENT_RULES
                                           if k in rules) + " ELSE 'needs_attention' END"),
        "lifecycle_stage": (f"CASE WHEN tenure_days <= {life.new_max_tenure_days} THEN 'new' "
                            "WHEN days_since_last_transaction IS NULL OR days_since_last_transaction >= "
                            f"{life.dormant_min_days_inactive} THEN 'dormant' "
                            f"WHEN transaction_trend_90d <= {life.declining_max_trend_ratio!r}::DOUBLE THEN 'declining' "
                            f"WHEN transaction_trend_90d >= {life.growing_min_trend_ratio!r}::DOUBLE THEN 'growing' "
                            "ELSE 'established' END"),
        "months_active_last_12": "_months_active", "activity_slope_6m": "_slope",
        "months_since_activity_peak": "_peak",
    }
    names = [i.name for i in catalogue(settings) if i.family in PORTED_FAMILIES]
    unknown = [nm for nm in names if nm not in f and nm not in scored and nm not in final]
    if unknown:
        raise ValueError(f"the reference has no definition of {unknown}")
    outputs = [f"{final[nm]} AS {nm}" if nm in final else nm for nm in names]
    outputs += [f"_{k} AS {k}" for k in label_names]
    return f"""WITH{tx},{cx},{sv},{ct},{base},{edges}
SELECT customer_id, {C} AS cutoff,
       {_OUT.join(outputs)}
FROM scored
ORDER BY customer_id"""


def _targets(settings, field: str, tiers: tuple[str, ...]) -> dict[str, int]:
    """Tier -> target in microseconds from `features.complaint_targets` (hours); tiers without one left out."""
    out = {}
    for tier in tiers:
        target = settings.complaint_targets.get(tier)
        hours = getattr(target, field) if target is not None else None
        if hours is not None:
            out[tier] = int(round(hours * US_PER_HOUR))
    return out



def bank_files(folder: str) -> dict[str, str]:
    """Table name -> Parquet path of a generated bank's folder."""
    from pathlib import Path

    return {name: str(Path(folder) / f"{name}.parquet") for name in TABLES}


def run_reference(files: Mapping[str, str], cutoff: str | pd.Timestamp, settings=None, labels=None,
                  money: str = "decimal", threads: int | None = 2, memory_limit: str | None = None,
                  temp_directory: str = "/tmp/reference-duckdb"):
    """The reference query executed on a fresh in-memory DuckDB connection, as an Arrow table."""
    import duckdb

    config: dict[str, object] = {"temp_directory": temp_directory}
    if threads is not None:
        config["threads"] = threads
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(config=config)
    con.execute("SET enable_progress_bar = false")
    try:
        return con.sql(reference_sql(files, cutoff, settings, labels, money)).to_arrow_table()
    finally:
        con.close()


def engine_config(folder: str, threads: int = 2, memory_limit: str | None = None, labels: dict | None = None):
    """The config `build_frames` reads a generated bank's folder with (DuckDB, `threads`, `memory_limit`)."""
    from pipelines.config import parse_config

    duckdb_settings = {"threads": threads, **({"memory_limit": memory_limit} if memory_limit else {})}
    return parse_config({"data": {"tables": {name: {"path": path} for name, path in bank_files(folder).items()}},
                         "features": {"engine": "duckdb", "duckdb": duckdb_settings},
                         **({"labels": labels} if labels else {})})


def engine_frame(cfg, cutoff: str | pd.Timestamp) -> pd.DataFrame:
    """`build_frames` of the ported families at `cutoff`: features, then the label columns."""
    from features.relational.engine import PORTED_FAMILIES
    from pipelines.relational import build_frames

    features, labels = build_frames(cfg, [pd.Timestamp(cutoff)], families=PORTED_FAMILIES)
    assert (features[["customer_id", "cutoff"]].to_numpy() == labels[["customer_id", "cutoff"]].to_numpy()).all()
    return pd.concat([features, labels.drop(columns=["customer_id", "cutoff"])], axis=1)


def differences(reference: pd.DataFrame, engine: pd.DataFrame, rtol: float = 1e-12) -> dict[str, object]:
    """Cell-for-cell comparison of the reference's table with the engine's: same columns (in order), same
    rows (customer_id, cutoff), then per column the cells that differ exactly (`exact`) and beyond a
    relative `rtol` (`beyond_rtol`: floats may differ by summation order only); empty cells equal
    empty cells. `equal`: no cell beyond rtol, and the same columns, rows and dtypes."""
    import numpy as np

    out: dict[str, object] = {"rows": [len(reference), len(engine)],
                              "same_columns": list(reference.columns) == list(engine.columns)}
    if not out["same_columns"]:
        out["columns_only_in_reference"] = [c for c in reference.columns if c not in engine.columns]
        out["columns_only_in_engine"] = [c for c in engine.columns if c not in reference.columns]
    same_rows = len(reference) == len(engine) and all(
        (reference[k].to_numpy() == engine[k].to_numpy()).all() for k in ("customer_id", "cutoff"))
    out["same_rows"] = bool(same_rows)
    exact: dict[str, int] = {}
    beyond: dict[str, int] = {}
    dtypes: dict[str, list[str]] = {}
    if same_rows:
        for column in [c for c in reference.columns if c in engine.columns]:
            a, b = reference[column], engine[column]
            if str(a.dtype) != str(b.dtype):
                dtypes[column] = [str(a.dtype), str(b.dtype)]
            if a.dtype.kind == "f" or b.dtype.kind == "f":
                x, y = a.to_numpy(dtype="float64", na_value=np.nan), b.to_numpy(dtype="float64", na_value=np.nan)
                both_empty = np.isnan(x) & np.isnan(y)
                same = (x == y) | both_empty
                close = np.isclose(x, y, rtol=rtol, atol=0.0) | both_empty
                exact[column], beyond[column] = int((~same).sum()), int((~close).sum())
            else:
                x, y = a.astype("object").to_numpy(), b.astype("object").to_numpy()
                same = np.array([(p == q) or (pd.isna(p) and pd.isna(q)) for p, q in zip(x, y)], dtype=bool)
                exact[column] = beyond[column] = int((~same).sum())
    out["differing_cells_exact"] = {k: v for k, v in exact.items() if v}
    out["differing_cells_beyond_rtol"] = {k: v for k, v in beyond.items() if v}
    out["rtol"] = rtol
    out["dtype_mismatches"] = dtypes
    out["equal"] = bool(out["same_columns"] and same_rows and not out["differing_cells_beyond_rtol"] and not dtypes)
    return out


def as_frame(table, settings=None) -> pd.DataFrame:
    """The reference's Arrow table typed as the engine types its frames (str ids, datetime64[us] cutoffs,
    categoricals with their levels)."""
    from features.settings import FeatureSettings
    from pipelines.relational import typed_frame

    return typed_frame(table, settings or FeatureSettings())


def cross_check(folder: str, cutoff: str | pd.Timestamp, money: str = "decimal", threads: int = 2,
                memory_limit: str | None = None, labels: dict | None = None) -> dict[str, object]:
    """Run the reference and the engine (`build_frames`, ported families) on a bank's folder at `cutoff`
    and compare them cell for cell (`differences`)."""
    cfg = engine_config(folder, threads, memory_limit, labels)
    reference = as_frame(run_reference(bank_files(folder), cutoff, cfg.features, cfg.labels, money, threads,
                                       memory_limit), cfg.features)
    return differences(reference, engine_frame(cfg, cutoff))

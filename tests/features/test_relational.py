"""The relational engine (features/relational/, DuckDB) against today's pandas engine, cell for cell.

A small random bank (tests/features/factories.py) is written to Parquet with small row groups (so
DuckDB really scans it with several threads) and built by both engines for every training cutoff.
Money sums differ in the last bits only: DuckDB sums DECIMAL exactly, the pandas engine adds
float64 in input order; those columns are checked against an exact decimal sum instead.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest
import sqlglot

from features.build import build_features, build_labels, build_training_table, training_cutoffs
from features.catalogue import catalogue
from features.contract import Tables
from features.relational.engine import PORTED_FAMILIES, RelationalTables, feature_table, label_table
from features.settings import LabelSettings
from pipelines.config import ConfigError, parse_config
from pipelines.features import settings_of
from pipelines.relational import (MONEY, TableFile, build_frames, connect, connect_engine, memory_bytes, read_tables,
                                  statement_buckets, to_feature_frame)
from tests.features.relational_bank import (SETTINGS, assert_matches_pandas, frames, ported_columns,
                                            write_bank)


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tables, dict[str, TableFile]]:
    return write_bank(tmp_path_factory.mktemp("relational"))


def _relational(files: dict[str, TableFile], cutoffs: list[pd.Timestamp], labels: LabelSettings,
                threads: int) -> pd.DataFrame:
    return frames(connect(threads=threads, memory_limit="1GB"), files, cutoffs, labels)


def _exact_sums(tables: Tables, frame: pd.DataFrame, days: int, exact: bool = True) -> np.ndarray:
    """transaction_amount_{days}d of every row, summed as decimals of the amounts' shortest repr
    (`exact`), else as float64 additions in row order."""
    tx = tables.transactions
    out = []
    for customer, cutoff in zip(frame["customer_id"], frame["cutoff"]):
        mine = tx[(tx["customer_id"] == customer) & (tx["timestamp"] < cutoff)
                  & (tx["timestamp"] >= cutoff - pd.Timedelta(days=days))]
        if exact:
            out.append(float(sum((Decimal(repr(float(a))) for a in mine["amount"]), Decimal(0))))
        else:
            total = 0.0
            for a in mine["amount"]:
                total += float(a)
            out.append(total)
    return np.array(out)



@pytest.mark.parametrize("definition", ["closure", "inactivity"])
def test_duckdb_matches_the_pandas_engine_cell_for_cell(bank, definition: str) -> None:
    tables, files = bank
    labels = LabelSettings(definition=definition)
    cutoffs = training_cutoffs(tables, labels)
    assert len(cutoffs) > 5
    reference = build_training_table(tables, SETTINGS, labels)
    one = _relational(files, cutoffs, labels, threads=1)
    if definition == "closure":  # 1 and 2 threads: identical (once is enough)
        pd.testing.assert_frame_equal(one, _relational(files, cutoffs, labels, threads=2), check_exact=True)

    assert list(one.columns) == ported_columns(labels)
    assert_matches_pandas(one, reference)
    expected = reference[list(one.columns)]
    # the money sums are the exact sums, on both engines (the pandas engine sums millionths), and float64
    # additions in row order would have differed from them in the last bits
    longest = SETTINGS.longest_window
    exact = _exact_sums(tables, one, longest)
    np.testing.assert_array_equal(one[f"transaction_amount_{longest}d"], exact)
    np.testing.assert_array_equal(expected[f"transaction_amount_{longest}d"], exact)
    assert (_exact_sums(tables, one, longest, exact=False) != exact).any()


def test_the_pandas_engine_rounds_money_to_millionths_as_duckdb_casts_it() -> None:
    """`decimal_units` (the pandas engine's money and tones) against DuckDB's cast of the same doubles to
    DECIMAL(38, 6) and DECIMAL(9, 4): half away from zero, ties included, and a sum of the units is the
    engine's exact decimal sum cast back to a double."""
    import duckdb

    from features._grouping import decimal_units, from_units

    rng = np.random.default_rng(5)
    ties = [5e-07, -5e-07, 1.5e-06, 2.5e-06, -2.5e-06, 0.1234565, -0.1234565, 1e9 + 5e-07, 0.0, -1e-07]
    values = np.concatenate([np.round(rng.normal(0, 300, 20_000), 2), rng.normal(0, 1_000, 20_000),
                             rng.normal(0, 1e-5, 5_000), np.round(rng.normal(0, 300, 5_000), 7), ties])
    con = duckdb.connect()
    frame = pd.DataFrame({"x": values})  # noqa: F841 (read by the query)
    for decimals, kind in ((6, "decimal(38, 6)"), (4, "decimal(9, 4)")):
        kept = np.abs(values) < 1e4 if decimals == 4 else np.ones(len(values), dtype=bool)  # tones are -1..1
        cast = con.sql(f"SELECT TRY_CAST(x AS {kind})::VARCHAR AS s FROM frame").fetchnumpy()["s"][kept]
        units = np.array([float(int(Decimal(str(s)).scaleb(decimals))) for s in cast])
        np.testing.assert_array_equal(decimal_units(values, decimals)[kept], units)
    total = con.sql("SELECT SUM(CAST(x AS decimal(38, 6)))::DOUBLE FROM frame").fetchall()[0][0]
    assert from_units(decimal_units(values).sum()) == total


def test_an_unported_family_is_refused_by_name(bank) -> None:
    tables, files = bank
    con = connect(threads=1)
    with pytest.raises(ValueError, match="no relational definitions yet for the family btyd"):
        feature_table(read_tables(con, files), [pd.Timestamp("2024-01-01")], SETTINGS, families=("rfm", "btyd"))


def _warehouse_tables() -> RelationalTables:
    """The tables as a warehouse would hold them (unbound: no data, only schemas)."""
    return RelationalTables(
        customers=ibis.table({"customer_id": "string", "signup_date": "timestamp(6)", "closed_date": "timestamp(6)"},
                             name="customers"),
        transactions=ibis.table({"customer_id": "string", "timestamp": "timestamp(6)", "amount": MONEY},
                                name="transactions"),
        complaints=ibis.table({"customer_id": "string", "opened_at": "timestamp(6)", "category": "string",
                               "priority": "string", "channel": "string", "first_response_at": "timestamp(6)",
                               "resolved_at": "timestamp(6)", "satisfaction": "float64"}, name="complaints"),
        surveys=ibis.table({"customer_id": "string", "answered_at": "timestamp(6)", "nps": "float64",
                            "csat": "float64", "row": "int64"}, name="surveys"),
        contacts=ibis.table({"customer_id": "string", "contacted_at": "timestamp(6)", "treatment": "float64"},
                            name="contacts"),
    )


@pytest.mark.parametrize("dialect", ["snowflake", "bigquery", "postgres"])
def test_the_definitions_compile_to_warehouse_sql(dialect: str) -> None:
    tables = _warehouse_tables()
    cutoffs = ibis.table({"cutoff": "timestamp(6)"}, name="cutoffs")
    inactivity = LabelSettings(definition="inactivity")  # its population adds a semi-join
    features = ibis.to_sql(feature_table(tables, cutoffs, SETTINGS, inactivity), dialect=dialect)
    targets = [ibis.to_sql(label_table(tables, cutoffs, labels), dialect=dialect)
               for labels in (LabelSettings(), inactivity)]
    for sql in (features, *targets):
        assert sqlglot.parse_one(sql, read=dialect) is not None  # valid in the dialect's grammar
    for info in catalogue(SETTINGS):
        assert (info.name in features) == (info.family in PORTED_FAMILIES), info.name
    assert all("future_value" in sql and "churned" in sql for sql in targets)


def test_every_feature_of_a_ported_family_has_one_definition() -> None:
    for info in catalogue(SETTINGS):
        assert (info.define is not None) == (info.family in PORTED_FAMILIES), info.name


def test_reading_maps_the_users_column_names(bank, tmp_path: Path) -> None:
    tables, files = bank
    renamed = tables.transactions.rename(columns={"amount": "value_eur", "timestamp": "booked_at"})
    path = tmp_path / "tx.csv"
    renamed.to_csv(path, index=False)
    mapped = dict(files, transactions=TableFile(path, "csv", {"amount": "value_eur", "timestamp": "booked_at"}))
    con = connect(threads=1)
    cutoffs = [pd.Timestamp("2024-03-01")]
    from_csv = to_feature_frame(con, feature_table(read_tables(con, mapped), cutoffs, SETTINGS, families=("rfm",)),
                                SETTINGS)
    from_parquet = to_feature_frame(con, feature_table(read_tables(con, files), cutoffs, SETTINGS, families=("rfm",)),
                                    SETTINGS)
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_exact=True)


def test_build_frames_reads_the_configured_files_with_the_configured_resources(bank) -> None:
    tables, files = bank
    cfg = parse_config({"data": {"tables": {name: {"path": str(f.path)} for name, f in files.items()}},
                        "features": {"btyd": False, "duckdb": {"threads": 1, "memory_limit": "1GB"}}})
    cutoff = training_cutoffs(tables, cfg.labels)[-1]
    features, labels = build_frames(cfg, [cutoff], families=("contacts",))
    con = connect(threads=2)
    tables = read_tables(con, files)
    pd.testing.assert_frame_equal(features, to_feature_frame(
        con, feature_table(tables, [cutoff], SETTINGS, families=("contacts",)), SETTINGS), check_exact=True)
    pd.testing.assert_frame_equal(labels, to_feature_frame(con, label_table(tables, [cutoff], cfg.labels), SETTINGS),
                                  check_exact=True)
    assert list(features.columns) == ["customer_id", "cutoff", "days_since_last_retention_contact",
                                      "retention_contacts_90d"]


def test_engine_resources_are_not_part_of_what_a_training_table_is_built_from(bank) -> None:
    data = {"tables": {"customers": {"path": str(bank[1]["customers"].path)}}}
    one = parse_config({"data": data, "features": {"duckdb": {"threads": 1}}})
    two = parse_config({"data": data, "features": {"duckdb": {"threads": 2, "memory_limit": "3GB"},
                                                   "spark": {"master": "spark://cluster:7077",
                                                             "config": {"spark.driver.memory": "4g"}}}})
    assert settings_of(one) == settings_of(two)
    assert settings_of(one) != settings_of(parse_config({"data": data, "features": {"windows_days": [30, 60]}}))


def test_a_spark_session_zone_other_than_utc_is_refused_by_key(bank) -> None:
    data = {"tables": {"customers": {"path": str(bank[1]["customers"].path)}}}
    with pytest.raises(ConfigError, match=r"features\.spark\.config: .*timeZone is 'Europe/Paris'.* must be 'UTC'"):
        parse_config({"data": data, "features": {"spark": {"config": {"spark.sql.session.timeZone": "Europe/Paris"}}}})
    utc = parse_config({"data": data, "features": {"spark": {"config": {"spark.sql.session.timeZone": "UTC"}}}})
    assert utc.features.spark.master == "local[2]"
    with pytest.raises(ValueError, match="unknown relational engine 'snowflake'; one of duckdb, spark"):
        connect_engine("snowflake", utc.features)


def test_cutoffs_at_event_times_match_the_pandas_engine(bank) -> None:
    """The sharpest edge: cutoffs exactly at an event's time (microseconds), several in one query."""
    tables, files = bank
    labels = LabelSettings()
    cutoffs = sorted({pd.Timestamp(getattr(tables, name)[column].sort_values().iloc[len(getattr(tables, name)) // 2])
                      for name, column in (("transactions", "timestamp"), ("complaints", "opened_at"),
                                           ("surveys", "answered_at"), ("contacts", "contacted_at"))})
    assert any(c.microsecond for c in cutoffs)  # not only whole seconds
    one = _relational(files, cutoffs, labels, threads=2)
    expected = pd.concat([
        build_features(tables, cutoff, SETTINGS, labels=labels).merge(build_labels(tables, cutoff, labels),
                                                                     on="customer_id")
        for cutoff in cutoffs], ignore_index=True)[[c for c in one.columns if c != "days_to_churn"]]
    assert len(one) == len(expected)
    for column in expected.columns:
        pd.testing.assert_series_equal(one[column], expected[column], check_exact=True, obj=column)


def _brute_force_events(seed: int) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    """Events of a few customers bunched around day and period edges, ties included, and cutoffs among them."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    offsets = rng.integers(0, 20 * 86_400_000_000, size=300)
    offsets[:40] = (offsets[:40] // 86_400_000_000) * 86_400_000_000  # exactly at midnight
    customers = rng.integers(0, 40, size=300).astype(str)  # sparse: gaps of days between events
    events = pd.DataFrame({"customer_id": np.concatenate([customers, customers[:30]]),  # equal times too
                           "time": (start + pd.to_timedelta(np.concatenate([offsets, offsets[:30]]), unit="us")).as_unit("us")})
    cutoffs = sorted({start + pd.Timedelta(hours=h) for h in range(30, 480, 17)} | {events["time"].iloc[5]})
    return events, cutoffs


@pytest.mark.parametrize("window_days", [3, 5])
def test_windowed_and_period_rows_hold_the_latest_event_before_each_cutoff(window_days: int) -> None:
    """Against a brute force: the windowed rows and the per-period rows together miss no latest event."""
    from features.relational.engine import cutoff_table, event_rows, period_rows

    events, cutoffs = _brute_force_events(window_days)
    con = connect(threads=2)
    table, cuts = ibis.memtable(events), cutoff_table(cutoffs)
    windowed = event_rows(table, cuts, window_days)
    rows = windowed.union(period_rows(table, cuts, window_days, windowed))
    latest = rows.group_by(["customer_id", "cutoff"]).aggregate(time=rows.time.max(), days=rows.days.min(),
                                                                back=rows.back.max())
    got = con.to_pyarrow(latest).to_pandas().sort_values(["cutoff", "customer_id"], ignore_index=True)
    expected = pd.DataFrame([(cutoff, customer, mine["time"].max()) for cutoff in cutoffs
                             for customer, mine in events[events["time"] < cutoff].groupby("customer_id")],
                            columns=["cutoff", "customer_id", "time"])
    assert len(got) == len(expected) > 10
    assert (got["time"].to_numpy() == expected["time"].to_numpy()).all()
    assert (got["days"] == ((expected["cutoff"] - expected["time"]) // pd.Timedelta(days=1))).all()
    assert got["back"].max() < window_days  # the period rows carry no `back`: no windowed definition sees them


def test_distinct_days_are_counted_back_from_the_cutoff() -> None:
    from features.relational.definitions import distinct_days_within
    from features.relational.engine import cutoff_table, event_rows

    events, cutoffs = _brute_force_events(1)
    con = connect(threads=2)
    table, cuts = ibis.memtable(events), cutoff_table(cutoffs)
    active_days = distinct_days_within(10)
    assert active_days.rows is not None
    rows = active_days.rows(event_rows(table, cuts, 10))
    counted = rows.group_by(["customer_id", "cutoff"]).aggregate(days=active_days.reduce(rows))
    got_days = con.to_pyarrow(counted).to_pandas().set_index(["customer_id", "cutoff"])["days"].sort_index()
    pairs = events.merge(pd.DataFrame({"cutoff": cutoffs}), how="cross")
    pairs = pairs[(pairs["time"] < pairs["cutoff"]) & (pairs["time"] >= pairs["cutoff"] - pd.Timedelta(days=10))]
    back = (pairs["cutoff"] - pairs["time"] - pd.Timedelta(microseconds=1)) // pd.Timedelta(days=1)
    want_days = pairs.assign(back=back).groupby(["customer_id", "cutoff"])["back"].nunique().sort_index()
    assert (got_days.index == want_days.index).all() and (got_days.to_numpy() == want_days.to_numpy()).all()


def test_every_family_with_btyd_and_static_attributes_matches_the_pandas_engine(bank) -> None:
    """build_frames with every family: the BTYD models fitted on the relational purchase history and the
    static attributes give the pandas engine's columns, in its order, every cell identical. The mean spend
    is an exact sum on both engines: when the pandas engine summed it in float64 (6e-16 apart), the
    Gamma-Gamma fit on this random bank, whose likelihood is so flat (q in the tens of thousands), stopped
    apart by 1e-3, and on a real retail log the served probabilities by 1e-10."""
    tables, files = bank
    cfg = parse_config({"data": {"tables": {name: {"path": str(f.path)} for name, f in files.items()}},
                        "features": {"static_features": ["products_held", "segment"],
                                     "duckdb": {"threads": 2, "memory_limit": "1GB"}}})
    cutoffs = training_cutoffs(tables, cfg.labels)[-3:]
    features, labels = build_frames(cfg, cutoffs)
    reference = build_training_table(tables, cfg.features, cfg.labels)
    reference = reference[reference["cutoff"].isin(cutoffs)].reset_index(drop=True)
    assert list(features.columns) == [c for c in reference.columns if c not in ("churned", "future_value",
                                                                                "days_to_churn")]
    btyd = [c for c in features.columns if c.startswith("btyd_")]
    assert len(btyd) == 8 and features["btyd_probability_alive"].notna().mean() > 0.5
    assert isinstance(features["segment"].dtype, pd.CategoricalDtype) and features["products_held"].dtype == "float64"
    for column in features.columns:
        pd.testing.assert_series_equal(features[column], reference[column], check_exact=True, obj=column)
    pd.testing.assert_series_equal(labels["churned"], reference["churned"])


@pytest.mark.parametrize("history_days", [None, 45])
def test_purchase_history_by_day_equals_the_join_of_every_transaction(bank, history_days: int | None) -> None:
    """The BTYD purchase history of cutoffs sharing a time of day (found once per customer and day) is
    the one of joining every transaction to every cutoff; at cutoffs of different times of day (that
    path) it is the pandas engine's; and both are the distinct purchase days of the raw transactions in
    [cutoff - `features.btyd_history_days`, cutoff) (everything before the cutoff when empty)."""
    from features._grouping import cutoff_us
    from features.btyd import purchase_history
    from features.build import prepare
    from features.relational.btyd import purchase_summary

    tables, files = bank
    con = connect(threads=2)
    relational = read_tables(con, files)
    keys = ["cutoff", "customer_id"]
    for offset in (pd.Timedelta(0), pd.Timedelta(hours=7, microseconds=3)):
        cutoffs = [c + offset for c in training_cutoffs(tables, LabelSettings())[-4:]]
        by_day = con.to_pyarrow(purchase_summary(relational, cutoffs, history_days=history_days)).to_pandas(
        ).sort_values(keys, ignore_index=True)
        joined = con.to_pyarrow(purchase_summary(relational, cutoffs, by_day=False, history_days=history_days)
                                ).to_pandas().sort_values(keys, ignore_index=True)
        assert len(by_day) > 100
        pd.testing.assert_frame_equal(by_day, joined, check_exact=True)
        # brute force on the raw rows: distinct days back, the oldest and the latest, in the window
        pairs = tables.transactions[["customer_id", "timestamp"]].merge(pd.DataFrame({"cutoff": cutoffs}), how="cross")
        inside = pairs["timestamp"] < pairs["cutoff"]
        if history_days is not None:
            inside &= pairs["timestamp"] >= pairs["cutoff"] - pd.Timedelta(days=history_days)
        pairs = pairs[inside & pairs["customer_id"].isin(tables.customers["customer_id"])]
        back = (pairs["cutoff"] - pairs["timestamp"] - pd.Timedelta(microseconds=1)) // pd.Timedelta(days=1)
        want = pairs.assign(back=back).groupby(keys)["back"].agg(["nunique", "max", "min"]).reset_index()
        want = want.sort_values(keys, ignore_index=True)
        assert len(want) == len(by_day)
        assert (want["customer_id"].astype(str).to_numpy() == by_day["customer_id"].astype(str).to_numpy()).all()
        assert (want["nunique"].to_numpy() == by_day["purchase_days"].to_numpy()).all()
        assert (want["max"].to_numpy() == by_day["oldest_day"].to_numpy()).all()
        assert (want["min"].to_numpy() == by_day["latest_day"].to_numpy()).all()
    if history_days is not None:  # the window bites on this bank: many bought before it
        whole = con.to_pyarrow(purchase_summary(relational, cutoffs)).to_pandas()
        assert by_day["oldest_day"].max() < history_days <= whole["oldest_day"].max()
        assert by_day["purchase_days"].sum() < 0.8 * whole["purchase_days"].sum()
    mixed = [pd.Timestamp("2024-02-01 00:00"), pd.Timestamp("2024-03-01 13:30")]
    summary = con.to_pyarrow(purchase_summary(relational, mixed, history_days=history_days)).to_pandas()
    prepared = prepare(tables, SETTINGS)
    for cutoff in mixed:
        history = purchase_history(prepared.transactions, prepared.n_customers, cutoff_us(cutoff), history_days)
        mine = summary[summary["cutoff"] == cutoff].set_index("customer_id").reindex(prepared.customer_ids)
        np.testing.assert_array_equal(mine["purchase_days"].to_numpy(dtype=float) - 1, history.frequency)
        np.testing.assert_array_equal(mine["oldest_day"].to_numpy(dtype=float) + 1, history.age)
        np.testing.assert_array_equal(mine["oldest_day"].to_numpy(dtype=float) - mine["latest_day"].to_numpy(
            dtype=float), history.recency)


@pytest.mark.parametrize("definition", ["closure", "inactivity"])
def test_customers_in_buckets_give_the_very_tables_of_one_statement(bank, definition: str, tmp_path: Path) -> None:
    """`features.duckdb.rows_per_statement` splits the customers into buckets, each its own statement; the
    RFM quintile scores and segment (ranks over the whole population) and the BTYD fits (over every
    customer who bought) are computed after the buckets, so every table is byte for byte the one
    statement's, whatever the number of buckets. The buckets' files are removed afterwards."""
    tables, files = bank
    base = {"data": {"tables": {name: {"path": str(f.path)} for name, f in files.items()}},
            "labels": {"definition": definition},
            "features": {"static_features": ["products_held", "segment"],
                         "duckdb": {"threads": 2, "memory_limit": "1GB", "temp_directory": str(tmp_path)}}}
    cutoffs = training_cutoffs(tables, LabelSettings(definition=definition))[-3:]
    whole = build_frames(parse_config(base), cutoffs)
    assert whole[0]["rfm_segment"].nunique() > 3
    customers = len(tables.customers)
    for rows in (customers, 40):  # 3 and 5 buckets
        base["features"]["duckdb"]["rows_per_statement"] = rows
        cfg = parse_config(base)
        buckets = statement_buckets(connect(threads=1), customers, len(cutoffs), cfg.features.duckdb)
        assert buckets == -(-customers * len(cutoffs) // rows)
        split = build_frames(cfg, cutoffs)
        for got, expected in zip(split, whole):
            pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert not list(tmp_path.glob("churn-care-buckets-*"))


def test_memory_sizes_are_read_as_duckdb_writes_them() -> None:
    assert memory_bytes("953.6 MiB") == pytest.approx(953.6 * 2**20)
    assert memory_bytes("18.8 GiB") == pytest.approx(18.8 * 2**30)
    assert memory_bytes("2GB") == 2e9
    with pytest.raises(ValueError, match="not a memory size"):
        memory_bytes("lots")


def test_every_definition_that_reads_the_population_is_marked_population_relative() -> None:
    """The buckets compute the marked features after all customers (`population_relative`): a definition
    reading the population's ranks, or a feature that does, must be marked, or it would be computed
    within a bucket."""
    from features.relational.definitions import Derived
    from features.relational.engine import population_relative

    infos = catalogue(SETTINGS)
    reads: set[str] = set()
    for info in infos:
        derived = info.define
        if isinstance(derived, Derived) and (derived.ranks or reads & set(derived.needs)):
            reads.add(info.name)
    assert reads == population_relative(infos) and len(reads) == 4


def test_duckdb_draws_no_progress_bar_into_a_stages_output() -> None:
    """DuckDB 2 prints a progress bar on stdout for queries over 2 s by default: in a scheduled job's log, noise
    between the stage's own messages (seen in `churn features` on the 10M bank)."""
    con = connect(threads=1)
    assert con.con.execute("SELECT current_setting('enable_progress_bar')").fetchall() == [(False,)]

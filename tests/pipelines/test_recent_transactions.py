"""`churn score` reads only the transactions its cutoff looks back to: the same scoring table as from every row.

The features at one cutoff look back at most the longest window (or the BTYD history, or the inactivity
look-back); before that only each customer's latest transaction counts (days since the last transaction).
So the score stage reads a Parquet transactions file from that time on and summarises the older rows
(pipelines/tables.py `read_recent_transactions`). These tests hold it to the whole read, cell for cell, on
a generated bank whose history is twice the look-back, and check what the user sees when a row read is wrong.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.build import feature_inputs, prepare_taking, scoring_table_of, transactions_read_from
from features.contract import Tables
from features.validation import ValidationFailed
from pipelines.config import Config, parse_config
from pipelines.generate import run as generate
from pipelines.score import scoring_read_from
from pipelines.tables import _read_parquet_since, load_tables, plan_read

TABLE_NAMES = ("customers", "transactions", "complaints", "surveys", "contacts")


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated bank of 2,000 customers over 30 months (Parquet, times typed)."""
    raw = tmp_path_factory.mktemp("recent") / "raw"
    generate(2000, 11, raw, "2023-01-01", 30, "parquet")
    return raw


def bank_config(raw: Path, **sections: dict) -> Config:
    tables = {name: {"path": str(raw / f"{name}.parquet")} for name in TABLE_NAMES
              if (raw / f"{name}.parquet").is_file()}
    return Config.model_validate({"data": {"tables": tables}, **sections})


def scoring_table(tables: Tables, cfg: Config, moment: pd.Timestamp) -> pd.DataFrame:
    return scoring_table_of(prepare_taking([tables], cfg.features, cfg.labels.value_column), moment,
                            cfg.features, cfg.labels)


@pytest.mark.parametrize("case", ["default", "inactivity", "past_cutoff", "whole_history"])
def test_the_scoring_table_from_the_recent_transactions_equals_the_whole_read(bank: Path, case: str) -> None:
    """Every feature of every customer equal to the build from all rows, for the default settings, the
    inactivity churn definition (its look-back beyond the longest window), a scoring cutoff before the end
    of the data (`churn score --as-of`) and BTYD over the whole history (then every row is read)."""
    sections: dict[str, dict] = {}
    as_of = None
    if case == "inactivity":
        sections["labels"] = {"definition": "inactivity", "inactivity_lookback_days": 400}
    if case == "whole_history":
        sections["features"] = {"btyd_history_days": None}
    cfg = bank_config(bank, **sections)
    whole = load_tables(cfg)
    if case == "past_cutoff":
        as_of = whole.as_of - pd.Timedelta(days=200)
    moment = pd.Timestamp(as_of) if as_of is not None else whole.as_of
    rows = len(whole.transactions)
    expected = scoring_table(whole, cfg, moment)

    recent = load_tables(cfg, transactions_from=functools.partial(scoring_read_from, as_of=as_of, cfg=cfg))
    assert recent.as_of == whole.as_of
    if case == "whole_history":
        assert recent.earlier_transactions is None and len(recent.transactions) == rows
    else:
        earlier = recent.earlier_transactions
        assert earlier is not None
        since = transactions_read_from(moment, cfg.features, cfg.labels)
        assert earlier.since == since
        assert recent.transactions["timestamp"].min() >= since
        # the window bites: a good part of the rows is only summarised, and the counts add up
        assert earlier.rows > rows // 5 and len(recent.transactions) + earlier.rows == rows
        older = whole.transactions[whole.transactions["timestamp"] < since]
        assert set(earlier.customers["customer_id"]) == set(older["customer_id"])
        latest = older.groupby("customer_id")["timestamp"].max()
        assert (earlier.customers.set_index("customer_id")["latest"].sort_index() == latest.sort_index()).all()
    got = scoring_table(recent, cfg, moment)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    if case in ("default", "past_cutoff"):  # under `closure`, customers idle since before the rows read are scored:
        idle = got["days_since_last_transaction"] > (moment - since).days  # their recency is the earlier rows'
        assert idle.any()


@pytest.mark.parametrize("definition", ["closure", "inactivity"])
def test_training_rows_at_one_cutoff_from_its_look_back_equal_the_whole_read(bank: Path, definition: str) -> None:
    """A cutoff within the history, labels included (the window after the cutoff is among the rows read): the
    rows of that cutoff from the transactions of its look-back on equal those from every row
    (`benchmarks/bench_reference.py` measures one cutoff read this way)."""
    from features.build import training_rows_at

    cfg = bank_config(bank, labels={"definition": definition})
    whole = load_tables(cfg)
    cutoff = (whole.as_of - pd.Timedelta(days=300)).normalize()
    since = transactions_read_from(cutoff, cfg.features, cfg.labels)
    recent = load_tables(cfg, transactions_from=lambda end: since)
    assert recent.earlier_transactions is not None and recent.earlier_transactions.rows > len(whole.transactions) // 10
    frames = [training_rows_at(prepare_taking([loaded], cfg.features, cfg.labels.value_column), cutoff,
                               cfg.features, cfg.labels) for loaded in (whole, recent)]
    assert frames[0]["churned"].sum() > 0
    pd.testing.assert_frame_equal(frames[1], frames[0], check_exact=True)


@pytest.mark.parametrize("sentiment", [False, True])
def test_the_score_stage_reads_only_the_columns_its_features_use(bank: Path, tmp_path: Path, sentiment: bool) -> None:
    """`churn score` reads the columns the features and labels use (`feature_inputs`; the complaints' text
    only for `features.complaint_sentiment`): the same scoring table as from every column, and a problem in a
    column it does not read (here duplicated complaint ids) is `churn validate`'s to find, not the stage's."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in TABLE_NAMES:
        if (bank / f"{name}.parquet").is_file() and name != "complaints":
            (raw / f"{name}.parquet").symlink_to(bank / f"{name}.parquet")
    complaints = pd.read_parquet(bank / "complaints.parquet")
    assert {"text", "complaint_id", "branch"} <= set(complaints.columns)
    complaints.loc[1, "complaint_id"] = complaints.loc[0, "complaint_id"]
    complaints.to_parquet(raw / "complaints.parquet", index=False)
    cfg = bank_config(raw, features={"complaint_sentiment": sentiment})
    read_from = functools.partial(scoring_read_from, as_of=None, cfg=cfg)
    with pytest.raises(ValidationFailed) as every_column:
        load_tables(cfg, transactions_from=read_from)
    assert any(p.table == "complaints" and p.column == "complaint_id" for p in every_column.value.problems)

    columns = feature_inputs(cfg.features, cfg.labels)
    loaded = load_tables(cfg, transactions_from=read_from, columns=columns)
    for name in ("transactions", "complaints", "surveys", "contacts"):
        assert set(getattr(loaded, name).columns) <= set(columns[name]), name
    assert ("text" in loaded.complaints.columns) == sentiment and "complaint_id" not in loaded.complaints.columns
    assert {"channel", "product"}.isdisjoint(loaded.transactions.columns)

    complaints.loc[1, "complaint_id"] = "unique-again"  # the same data, valid: every column read
    complaints.to_parquet(raw / "complaints.parquet", index=False)
    whole = load_tables(cfg, transactions_from=read_from)
    moment = whole.as_of
    pd.testing.assert_frame_equal(scoring_table(loaded, cfg, moment), scoring_table(whole, cfg, moment),
                                  check_exact=True)


def write_transactions(path: Path, frame: pd.DataFrame, row_group_size: int) -> None:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)


@pytest.mark.parametrize("stored", ["timestamp[ms]", "timestamp[ns]", "date32"])
def test_rows_are_read_in_file_order_and_undated_rows_are_kept(tmp_path: Path, stored: str) -> None:
    """Row groups in any time order, some wholly old (skipped unread), some mixed, undated rows, times stored
    as milli- or nanoseconds or dates: the rows read are the file's rows dated from the start on plus the
    undated ones, in file order, and each one's file row is known (for the row numbers of problems)."""
    rng = np.random.default_rng(3)
    n = 200
    times = pd.Series(pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 400 * 86_400, n), unit="s"))
    times.iloc[:40] = times.iloc[:40].sort_values().to_numpy() - pd.Timedelta(days=500)  # old row groups
    times.iloc[[57, 150]] = pd.NaT
    if stored == "date32":
        times = times.dt.normalize()
    frame = pd.DataFrame({"customer_id": [f"C{i % 17}" for i in range(n)], "timestamp": times.astype("datetime64[ns]"),
                          "amount": rng.normal(size=n), "channel": rng.choice(["card", "branch"], n)})
    path = tmp_path / "transactions.parquet"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    kind = pa.date32() if stored == "date32" else pa.timestamp(stored.split("[")[1].rstrip("]"))
    table = table.set_column(1, pa.field("timestamp", kind), table.column("timestamp").cast(kind, safe=False))
    pq.write_table(table, path, row_group_size=20)
    raw = {"data": {"tables": {"customers": {"path": str(path)}, "transactions": {"path": str(path)}}}}
    plan, _ = plan_read("transactions", parse_config(raw).data.tables["transactions"])
    since = pd.Timestamp("2024-06-01")
    got, kept = _read_parquet_since(plan, "timestamp", since)
    wanted = frame["timestamp"].isna() | (frame["timestamp"] >= since)
    positions = np.flatnonzero(wanted.to_numpy())
    assert len(got) == len(positions) and kept.rows == len(positions)
    assert [kept.file_row(i) for i in range(len(got))] == positions.tolist()
    assert got["customer_id"].tolist() == frame["customer_id"].iloc[positions].tolist()
    assert got["amount"].tolist() == frame["amount"].iloc[positions].tolist()


def test_a_problem_in_the_rows_read_names_the_file_row_and_says_which_rows_were_checked(bank: Path,
                                                                                        tmp_path: Path) -> None:
    """An unknown customer in a recent row stops the stage with the row's number in the file and a note that
    the stage checked the rows it reads; the same mistake in an old row is `churn validate`'s to find."""
    cfg = bank_config(bank)
    transactions = pd.read_parquet(bank / "transactions.parquet")
    end = load_tables(cfg).as_of
    since = transactions_read_from(end, cfg.features, cfg.labels)
    recent_rows = np.flatnonzero((transactions["timestamp"] >= since).to_numpy())
    old_rows = np.flatnonzero((transactions["timestamp"] < since).to_numpy())
    bad_recent, bad_old = int(recent_rows[len(recent_rows) // 2]), int(old_rows[len(old_rows) // 3])
    transactions.loc[bad_recent, "customer_id"] = "NOBODY-RECENT"
    transactions.loc[bad_old, "customer_id"] = "NOBODY-OLD"
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in TABLE_NAMES:
        if (bank / f"{name}.parquet").is_file() and name != "transactions":
            (raw / f"{name}.parquet").symlink_to(bank / f"{name}.parquet")
    write_transactions(raw / "transactions.parquet", transactions, row_group_size=50_000)
    cfg = bank_config(raw)
    with pytest.raises(ValidationFailed) as whole:
        load_tables(cfg)
    assert "(2 rows)" in str(whole.value)
    with pytest.raises(ValidationFailed) as recent:
        load_tables(cfg, transactions_from=functools.partial(scoring_read_from, as_of=None, cfg=cfg))
    [problem] = [p for p in recent.value.problems if p.table == "transactions"]
    assert problem.rows == 1
    assert problem.examples == (f"row {bad_recent + 1} (customer NOBODY-RECENT)",)
    assert f"dated from {since.date()} on" in problem.message and "churn validate" in problem.message


def test_the_other_tables_checked_while_the_transactions_are_read_report_as_the_whole_read(bank: Path,
                                                                                          tmp_path: Path) -> None:
    """The stage checks the other tables while the transactions are still being read (`EarlyChecks`): their
    problems are the ones, in the order and words, that the whole read reports, the cross-table ones too."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "transactions.parquet").symlink_to(bank / "transactions.parquet")
    customers = pd.read_parquet(bank / "customers.parquet")
    customers.loc[3, "closed_date"] = customers.loc[3, "signup_date"] - pd.Timedelta(days=5)
    customers.to_parquet(raw / "customers.parquet", index=False)
    complaints = pd.read_parquet(bank / "complaints.parquet")
    complaints.loc[[2, 7], "customer_id"] = "NOBODY"
    complaints.to_parquet(raw / "complaints.parquet", index=False)
    surveys = pd.read_parquet(bank / "surveys.parquet")
    surveys.loc[5, "nps"] = 42.0
    surveys.to_parquet(raw / "surveys.parquet", index=False)
    contacts = pd.read_parquet(bank / "contacts.parquet")
    contacts.loc[0, "contacted_at"] = pd.Timestamp(customers.set_index("customer_id").loc[
        contacts.loc[0, "customer_id"], "signup_date"]) - pd.Timedelta(days=30)
    contacts.to_parquet(raw / "contacts.parquet", index=False)
    cfg = bank_config(raw)
    found = []
    for read_from in (None, functools.partial(scoring_read_from, as_of=None, cfg=cfg)):
        with pytest.raises(ValidationFailed) as failed:
            load_tables(cfg, transactions_from=read_from)
        found.append([p for p in failed.value.problems if p.table != "transactions"])
    assert {(p.table, p.column) for p in found[0]} >= {("customers", "closed_date"), ("complaints", "customer_id"),
                                                       ("surveys", "nps"), ("contacts", "contacted_at")}
    assert found[1] == found[0]
    assert [str(p) for p in found[1]] == [str(p) for p in found[0]]


def test_csv_transactions_are_read_whole(tmp_path: Path, bank: Path) -> None:
    """A CSV file cannot be read from a date on: every row is read, as before."""
    raw = tmp_path / "csv"
    raw.mkdir()
    pd.read_parquet(bank / "transactions.parquet").to_csv(raw / "transactions.csv", index=False)
    cfg = bank_config(bank)
    tables = cfg.data.tables | {"transactions": cfg.data.tables["transactions"].model_copy(
        update={"path": raw / "transactions.csv"})}
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"tables": tables})})
    loaded = load_tables(cfg, transactions_from=functools.partial(scoring_read_from, as_of=None, cfg=cfg))
    assert loaded.earlier_transactions is None
    assert len(loaded.transactions) == pq.ParquetFile(bank / "transactions.parquet").metadata.num_rows


def test_an_unreadable_transactions_file_is_reported_as_by_the_whole_read(bank: Path, tmp_path: Path) -> None:
    """Data pages that cannot be decoded (the footer intact, so the file looks fine until it is read): the
    failure in the background read (and in the whole read the stage then falls back to) is the clear input
    problem a whole read reports, naming the file and the fix (exit 3 in a stage), not a traceback."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in TABLE_NAMES:
        if (bank / f"{name}.parquet").is_file() and name != "transactions":
            (raw / f"{name}.parquet").symlink_to(bank / f"{name}.parquet")
    data = bytearray((bank / "transactions.parquet").read_bytes())
    for position in range(len(data) // 4, len(data) // 2, 997):
        data[position] ^= 0xFF
    (raw / "transactions.parquet").write_bytes(bytes(data))
    cfg = bank_config(raw)
    assert pq.read_schema(raw / "transactions.parquet").names  # the footer still reads
    with pytest.raises(ValidationFailed) as failed:
        load_tables(cfg, transactions_from=functools.partial(scoring_read_from, as_of=None, cfg=cfg))
    [problem] = [p for p in failed.value.problems if p.table == "transactions"]
    assert f"cannot read {raw / 'transactions.parquet'} as parquet" in problem.message
    assert "check the file is a valid parquet file" in problem.fix

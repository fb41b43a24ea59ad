"""Input loading and validation: every bad-input case gets a clear message, all in one pass."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.validation import ValidationFailed
from pipelines.cli import EXIT_CONFIG, EXIT_INVALID_INPUT, app
from pipelines.config import ConfigError, parse_config
from pipelines.tables import load_tables, read_and_check


def tiny_tables() -> dict[str, pd.DataFrame]:
    """A valid bank dataset of three customers, written as the user would have it."""
    customers = pd.DataFrame({
        "customer_id": ["C1", "C2", "C3"],
        "signup_date": ["2023-01-05", "2023-02-01", "2023-03-10"],
        "closed_date": [None, "2023-09-30", None],
        "segment": ["mass", "affluent", "mass"],
    })
    transactions = pd.DataFrame({
        "customer_id": ["C1", "C1", "C2", "C3"],
        "timestamp": ["2023-02-01 10:00:00", "2023-03-01", "2023-04-02", "2023-05-05"],
        "amount": [10.5, -3.0, 200.0, 42.0],
        "channel": ["card", "card", "branch", "mobile_app"],
    })
    complaints = pd.DataFrame({
        "complaint_id": ["K1", "K2"],
        "customer_id": ["C1", "C2"],
        "opened_at": ["2023-04-01 09:00:00", "2023-05-01 12:00:00"],
        "category": ["transfer_failure", "fees"],
        "priority": ["high", "normal"],
        "first_response_at": ["2023-04-01 11:00:00", None],
        "resolved_at": ["2023-04-02 09:00:00", None],
        "satisfaction": [4, None],
        "text": ["transfer did not arrive", "fee charged twice"],
    })
    surveys = pd.DataFrame({
        "customer_id": ["C1", "C3"],
        "answered_at": ["2023-06-01", "2023-07-01"],
        "nps": [9, 3],
        "csat": [5, 2],
    })
    contacts = pd.DataFrame({
        "customer_id": ["C2"],
        "contacted_at": ["2023-08-01"],
        "action": ["retention_call"],
        "treatment": [1],
        "cost": [12.0],
    })
    return {"customers": customers, "transactions": transactions, "complaints": complaints,
            "surveys": surveys, "contacts": contacts}


def write_dataset(folder: Path, frames: dict[str, pd.DataFrame], fmt: str = "csv") -> dict:
    """Write frames as files and return the matching config mapping."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name, frame in frames.items():
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        tables[name] = {"path": str(path)}
    return {"data": {"tables": tables}, "paths": {"reports_dir": str(folder / "reports")}}


def problems_for(tmp_path: Path, frames: dict[str, pd.DataFrame], **data_overrides) -> list[str]:
    raw = write_dataset(tmp_path / "in", frames)
    raw["data"].update(data_overrides)
    _, _, problems = read_and_check(parse_config(raw))
    return [str(p) for p in problems if p.severity == "error"]


def only(problems: list[str], *needles: str) -> str:
    matches = [p for p in problems if all(n in p for n in needles)]
    assert len(matches) == 1, f"expected one problem with {needles}, got {problems}"
    return matches[0]


def test_valid_dataset_loads_with_canonical_types(tmp_path: Path) -> None:
    cfg = parse_config(write_dataset(tmp_path, tiny_tables()))
    tables = load_tables(cfg)
    assert tables.present() == ["customers", "transactions", "complaints", "surveys", "contacts"]
    assert str(tables.customers["signup_date"].dtype) == "datetime64[us]"
    assert tables.transactions["amount"].dtype == np.float64
    assert pd.isna(tables.customers["closed_date"].iloc[0])
    assert tables.customers["segment"].tolist() == ["mass", "affluent", "mass"]
    # The day after the latest event (the closure on 2023-09-30).
    # inferred from the event tables only (the day after their last date); a closure recorded after
    # it (2023-09-30) does not move the scoring date, it is reported as a warning
    assert tables.as_of == pd.Timestamp("2023-08-02")


def test_parquet_and_column_mapping(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["customers"] = frames["customers"].rename(columns={"customer_id": "cust_no", "signup_date": "opened"})
    raw = write_dataset(tmp_path, frames, fmt="parquet")
    raw["data"]["tables"]["customers"]["columns"] = {"customer_id": "cust_no", "signup_date": "opened"}
    tables = load_tables(parse_config(raw))
    assert tables.customers["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert "cust_no" not in tables.customers.columns


def test_only_customers_is_required(tmp_path: Path) -> None:
    frames = {"customers": tiny_tables()["customers"]}
    tables = load_tables(parse_config(write_dataset(tmp_path, frames)))
    assert tables.present() == ["customers"]
    assert tables.transactions is None


def test_missing_file(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path, tiny_tables())
    raw["data"]["tables"]["surveys"]["path"] = str(tmp_path / "nope.csv")
    _, _, problems = read_and_check(parse_config(raw))
    message = only([str(p) for p in problems], "surveys", "does not exist")
    assert "data.tables.surveys.path" in message


def test_unreadable_parquet(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path, tiny_tables())
    bad = tmp_path / "transactions.parquet"
    bad.write_bytes(b"this is not parquet")
    raw["data"]["tables"]["transactions"]["path"] = str(bad)
    _, _, problems = read_and_check(parse_config(raw))
    only([str(p) for p in problems], "transactions", "cannot read")


def test_missing_required_column(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["transactions"] = frames["transactions"].drop(columns="amount")
    message = only(problems_for(tmp_path, frames), "transactions", "missing required column")
    assert "amount" in message and "map them in data.tables.transactions.columns" in message


def test_unparseable_dates(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["customers"].loc[1, "signup_date"] = "31/01/2023"
    message = only(problems_for(tmp_path, frames), "customers.signup_date", "not dates")
    assert "1 row" in message and "customer C2" in message and "ISO 8601" in message


def test_unparseable_numbers(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["transactions"]["amount"] = frames["transactions"]["amount"].astype(str)
    frames["transactions"].loc[2, "amount"] = "$200"
    message = only(problems_for(tmp_path, frames), "transactions.amount", "not numbers")
    assert "row 3" in message and "'$200'" in message


def test_duplicate_customer_ids(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["customers"].loc[2, "customer_id"] = "C1"
    message = only(problems_for(tmp_path, frames), "customers.customer_id", "duplicate")
    assert "2 rows" in message and "keep one row per customer_id" in message


def test_duplicate_complaint_ids(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["complaints"].loc[1, "complaint_id"] = "K1"
    only(problems_for(tmp_path, frames), "complaints.complaint_id", "duplicate")


def test_null_keys(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["transactions"].loc[0, "customer_id"] = None
    message = only(problems_for(tmp_path, frames), "transactions.customer_id", "empty values")
    assert "1 row" in message


def test_unknown_customers_in_every_event_table(tmp_path: Path) -> None:
    frames = tiny_tables()
    for name in ("transactions", "complaints", "surveys", "contacts"):
        frames[name].loc[0, "customer_id"] = "GHOST"
    problems = problems_for(tmp_path, frames)
    for name in ("transactions", "complaints", "surveys", "contacts"):
        message = only(problems, f"{name}.customer_id", "not in the customers table")
        assert "GHOST" in message or name == "complaints"


def test_non_finite_amounts(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["transactions"].loc[1, "amount"] = np.inf
    message = only(problems_for(tmp_path, frames), "transactions.amount", "infinite")
    assert "row 2" in message


def test_closed_before_signup(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["customers"].loc[1, "closed_date"] = "2022-12-31"
    message = only(problems_for(tmp_path, frames), "customers.closed_date", "closed before signup_date")
    assert "customer C2" in message


def test_events_before_signup(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["transactions"].loc[3, "timestamp"] = "2023-01-01"
    message = only(problems_for(tmp_path, frames), "transactions.timestamp", "before the customer's signup_date")
    assert "customer C3" in message


def test_events_after_as_of(tmp_path: Path) -> None:
    frames = tiny_tables()
    message = only(problems_for(tmp_path, frames, as_of="2023-05-01"), "transactions.timestamp", "as-of date")
    assert "1 row" in message and "2023-05-01" in message


def test_unknown_priority(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["complaints"].loc[0, "priority"] = "critical"
    message = only(problems_for(tmp_path, frames), "complaints.priority", "outside the allowed set")
    assert "urgent" in message and "complaint K1" in message


@pytest.mark.parametrize(("table", "column", "value"), [
    ("surveys", "nps", 11), ("surveys", "csat", 0), ("complaints", "satisfaction", 6),
    ("contacts", "treatment", 2),
])
def test_out_of_range_scores(tmp_path: Path, table: str, column: str, value: float) -> None:
    frames = tiny_tables()
    frames[table].loc[0, column] = value
    message = only(problems_for(tmp_path, frames), f"{table}.{column}", "the m")
    assert "between" in message


def test_empty_table(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["surveys"] = frames["surveys"].iloc[0:0]
    message = only(problems_for(tmp_path, frames), "surveys", "no rows")
    assert "remove surveys from data.tables" in message


def test_utf8_bom_is_accepted_with_a_warning(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path, tiny_tables())
    path = Path(raw["data"]["tables"]["customers"]["path"])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    frames, _, problems = read_and_check(parse_config(raw))
    assert [p for p in problems if p.severity == "error"] == []
    warning = only([str(p) for p in problems], "byte-order mark")
    assert warning.startswith("warning: customers")
    assert frames["customers"]["customer_id"].tolist() == ["C1", "C2", "C3"]


def test_non_utf8_csv(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["complaints"].loc[0, "text"] = "frais prélevés deux fois"
    raw = write_dataset(tmp_path, frames)
    path = Path(raw["data"]["tables"]["complaints"]["path"])
    path.write_bytes(path.read_text(encoding="utf-8").encode("cp1252"))
    _, _, problems = read_and_check(parse_config(raw))
    message = only([str(p) for p in problems], "complaints", "not UTF-8")
    assert "line 2" in message and "re-save the file as UTF-8" in message


def test_all_problems_reported_in_one_pass(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["customers"].loc[2, "customer_id"] = "C1"
    frames["transactions"].loc[0, "amount"] = -np.inf
    frames["surveys"].loc[0, "nps"] = 12
    frames["complaints"].loc[1, "priority"] = "whenever"
    raw = write_dataset(tmp_path / "in", frames)
    with pytest.raises(ValidationFailed) as caught:
        load_tables(parse_config(raw))
    text = str(caught.value)
    for needle in ("customers.customer_id", "transactions.amount", "surveys.nps", "complaints.priority"):
        assert needle in text


def test_cli_validate_exits_non_zero_and_writes_nothing(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["customers"].loc[1, "signup_date"] = "not a date"
    raw = write_dataset(tmp_path / "in", frames)
    config = tmp_path / "config.yaml"
    import yaml

    config.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == EXIT_INVALID_INPUT
    assert "customers.signup_date" in result.output
    # the failed report replaces any earlier one; nothing else is written
    report = json.loads((tmp_path / "in" / "reports" / "validation.json").read_text())
    assert report["valid"] is False and any("signup_date" in str(p) for p in report["problems"])
    assert sorted(p.name for p in (tmp_path / "in" / "reports").iterdir()
                  if not p.name.startswith(".")) == ["validation.json"]  # .generations: the committed report
    assert not (tmp_path / "in" / "data").exists()


def test_cli_validate_success_writes_report(tmp_path: Path) -> None:
    import json

    import yaml

    raw = write_dataset(tmp_path / "in", tiny_tables())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "in" / "reports" / "validation.json").read_text())
    assert report["valid"] is True and report["tables"]["transactions"]["rows"] == 4


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    raw = write_dataset(tmp_path, tiny_tables())
    raw["labels"] = {"horizon_days": 0, "definiton": "closure"}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    text = str(caught.value)
    assert "labels.horizon_days" in text and "greater than 0" in text
    assert "labels.definiton: unknown key" in text


def test_cli_config_error_exit_code(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("data: {tables: {}}\n")
    result = CliRunner().invoke(app, ["validate", "--config", str(config)])
    assert result.exit_code == EXIT_CONFIG
    assert "customers table is required" in result.output


def test_checking_a_tables_columns_does_not_copy_it() -> None:
    """pandera copies every frame it validates unless told it may work in place: on 46M transactions that
    was 0.8 GB more at the peak of loading. The check must stay a read: no copy, no schema left on the frame."""
    import tracemalloc

    from features.contract import TABLES
    from features.validation import check_columns

    rng = np.random.default_rng(1)
    n = 2_000_000
    frame = pd.DataFrame({"customer_id": pd.Series(rng.integers(0, 1_000, n).astype(str), dtype="str"),
                          "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
                          "amount": rng.normal(size=n)})
    frame.loc[7, "amount"] = np.inf
    numeric_bytes = n * 16  # the timestamp and amount columns, which a copy duplicates
    tracemalloc.start()
    try:
        problems = check_columns(frame, TABLES["transactions"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(p.column, p.rows) for p in problems] == [("amount", 1)]
    assert peak < numeric_bytes / 2, f"{peak / 2**20:.0f} MiB for {numeric_bytes / 2**20:.0f} MiB of columns"
    assert getattr(frame.pandera, "schema", None) is None
    assert frame.loc[7, "amount"] == np.inf


@pytest.mark.parametrize("chosen", [None, "system"])
def test_arrow_allocates_through_jemalloc_unless_the_user_chose_a_pool(chosen: str | None) -> None:
    """jemalloc gives freed pages back (mimalloc, pyarrow's default, kept ~0.25 GB more after reading the 1M
    bank's transactions); a pool the user chose with ARROW_DEFAULT_MEMORY_POOL is kept."""
    import os
    import subprocess
    import sys

    import pyarrow as pa

    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    code = "import pipelines.tables, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    used = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    if chosen or "jemalloc" in pa.supported_memory_backends():  # pyarrow's Windows wheels have no jemalloc
        assert used == (chosen or "jemalloc")


def test_the_inferred_end_is_counted_once_and_late_dates_still_reported(tmp_path: Path, monkeypatch) -> None:
    """`read_and_check` infers the end of the data, then validates against it: each date column is counted
    once (counting them again was 0.5 s on 46M transactions), and a stray date is still reported."""
    import features.validation

    frames = tiny_tables()
    frames["transactions"] = pd.concat([frames["transactions"]] * 40, ignore_index=True)  # 160 rows: a bulk
    frames["transactions"].loc[7, "timestamp"] = "2099-01-01"
    counted: list[tuple[object, int]] = []
    daily_counts = features.validation.daily_counts
    monkeypatch.setattr(features.validation, "daily_counts",
                        lambda times: counted.append((times.name, len(times))) or daily_counts(times))
    _, as_of, problems = read_and_check(parse_config(write_dataset(tmp_path / "in", frames)))
    assert as_of == pd.Timestamp("2023-08-02")  # the day after the last contact
    assert ("timestamp", 160) in counted and len(counted) == len(set(counted)), counted
    late = [str(p) for p in problems if "after the end of the data" in str(p)]
    assert len(late) == 1 and "transactions.timestamp" in late[0] and "1 row" in late[0]

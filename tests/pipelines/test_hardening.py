"""Issue 13, hardening: CSV integrity, the inferred scoring date, config looseness, permissions, messages.

CLI-level behaviour is tested through the installed `churn` command in a subprocess:
the exit code, the message, and never a Python traceback.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.io import excel_safe, write_csv

CHURN = Path(sys.executable).parent / "churn"
EXIT_CONFIG, EXIT_INVALID_INPUT = 2, 3


def churn(*args: str, cwd: Path, umask: int = 0o022, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed `churn` command (wide terminal, no MLflow or CHURN_CONFIG from the environment)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "CHURN_CONFIG")}
    env["COLUMNS"] = "250"
    return subprocess.run([str(CHURN), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, umask=umask)


def no_traceback(done: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr as one text, with whitespace runs collapsed; fails on a Python traceback."""
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return " ".join((done.stdout + done.stderr).split())


# ---------------------------------------------------------------- 1. CSV injection and CSV integrity

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
"""A text cell must not start with these (OWASP's = + - @ tab CR, plus LF and the full-width = + - @)."""
FORMULA_AFTER_LINE_BREAK = "=+-@\t\uff1d\uff0b\uff0d\uff20"
"""Nor have one right after a line break inside the cell."""
PAYLOADS = ("=cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "+1", "=HYPERLINK(\"http://x\",\"y\")", "\t=1",
            "\r=1", "\n@x", "ok\n=1+1", "ok\r-1", "a\r\nb", "a,b", 'say "hi"', "\uff1d1+1", "'=already")


def expected_cell(text: str) -> str:
    """The documented guard, written out independently of the code: lone CR -> LF, then apostrophes."""
    chars = ["\n" if c == "\r" and text[i + 1:i + 2] != "\n" else c for i, c in enumerate(text)]
    out: list[str] = []
    for i, c in enumerate(chars):
        if i > 0 and chars[i - 1] == "\n" and c in FORMULA_AFTER_LINE_BREAK:
            out.append("'")
        out.append(c)
    cell = "".join(out)
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def check_csv_text(text: str, frame: pd.DataFrame, text_columns: list[str]) -> None:
    """Parse with Python's csv module: one record per row, every value as documented, no formula cell."""
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert records[0] == list(frame.columns)
    assert len(records) == len(frame) + 1, records
    assert all(len(record) == len(frame.columns) for record in records), records
    for row, record in zip(frame.itertuples(index=False), records[1:]):
        values = dict(zip(frame.columns, record))
        original = row._asdict()
        for name in text_columns:
            value = original[name]
            assert values[name] == ("" if value is None or value != value else expected_cell(value))
            assert not values[name].startswith(FORMULA_PREFIXES)
            assert not any(line.startswith(tuple(FORMULA_AFTER_LINE_BREAK)) for line in values[name].split("\n"))
        assert float(values["amount"]) == original["amount"]  # numbers stay numbers, negative ones too


cells = st.one_of(
    st.none(),
    st.sampled_from(PAYLOADS),
    st.text(alphabet=st.one_of(st.sampled_from(list("\r\n\",'=+-@\t ;|")), st.characters(exclude_categories=("Cs",))),
            max_size=12),
    st.lists(st.sampled_from(PAYLOADS + ("x", " ", "\r", "\n", "\r\n")), min_size=1, max_size=4).map("".join),
)


@st.composite
def text_frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(min_value=1, max_value=6))
    texts = draw(st.lists(cells, min_size=rows, max_size=rows))
    more = draw(st.lists(cells, min_size=rows, max_size=rows))
    amounts = draw(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: round(v, 2)),
                            min_size=rows, max_size=rows))
    return pd.DataFrame({"label": pd.Series(texts, dtype="str"), "amount": amounts,
                         "note": pd.Series(more, dtype=object)})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=text_frames())
def test_write_csv_round_trips_text_and_neutralises_formulas(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = write_csv(frame, tmp_path / "out.csv")
    check_csv_text(path.read_bytes().decode("utf-8"), frame, ["label", "note"])


@settings(max_examples=200, deadline=None)
@given(frame=text_frames())
def test_excel_safe_then_plain_to_csv_is_safe_too(frame: pd.DataFrame) -> None:
    """What the score stage does with the retention list: excel_safe, then DataFrame.to_csv.

    Guarding twice (the rules stage calls excel_safe before write_csv) changes nothing more.
    """
    buffer = io.StringIO()
    safe = excel_safe(frame)
    safe.to_csv(buffer, index=False, lineterminator="\n")
    check_csv_text(buffer.getvalue(), frame, ["label", "note"])
    pd.testing.assert_frame_equal(excel_safe(safe), safe)


def test_lone_carriage_return_does_not_split_a_record(tmp_path: Path) -> None:
    frame = pd.DataFrame({"reason": pd.Series(["waiting\r=cmd|' /C calc'!A0", "fine"], dtype="str"),
                          "value": [-2.5, 3.0]})
    text = write_csv(frame, tmp_path / "list.csv").read_text(encoding="utf-8")
    assert text == "reason,value\n\"waiting\n'=cmd|' /C calc'!A0\",-2.5\nfine,3.0\n"
    back = pd.read_csv(tmp_path / "list.csv", dtype={"reason": "str"})
    assert back["reason"].tolist() == ["waiting\n'=cmd|' /C calc'!A0", "fine"]
    assert back["value"].tolist() == [-2.5, 3.0]


def test_formula_cells_in_text_columns_only(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "text": pd.Series(["=1+1", "@SUM(1+1)", "-2+3", "+44 20", "plain"], dtype="str"),
        "category": pd.Categorical(["-x", "y", "-x", "y", "y"]),
        "number": [-1.0, -2.0, 3.0, -4.5, 5.0],
        "whole": np.array([-1, 2, -3, 4, -5], dtype="int64"),
        "mixed": pd.Series(["=A1", -7, None, 2.5, "x"], dtype=object),
    })
    text = write_csv(frame, tmp_path / "t.csv").read_text(encoding="utf-8")
    assert text.splitlines() == [
        "text,category,number,whole,mixed",
        "'=1+1,'-x,-1.0,-1,'=A1",
        "'@SUM(1+1),y,-2.0,2,-7",
        "'-2+3,'-x,3.0,-3,",
        "'+44 20,y,-4.5,4,2.5",
        "plain,y,5.0,-5,x",
    ]


# ---------------------------------------------------------------- 4. permissions follow the umask


def test_written_csv_follows_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = write_csv(pd.DataFrame({"a": [1]}), tmp_path / "out" / "a.csv")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        os.umask(0o027)
        path = write_csv(pd.DataFrame({"a": [2]}), tmp_path / "out" / "a.csv")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(previous)


def test_generated_folder_follows_the_umask(tmp_path: Path) -> None:
    done = churn("generate", "--customers", "60", "--months", "4", "--format", "csv", "--out", "bank",
                 cwd=tmp_path, umask=0o022)
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((tmp_path / "bank").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "bank" / "customers.csv").stat().st_mode) == 0o644


# ---------------------------------------------------------------- shared data for the CLI tests


def small_bank(folder: Path, days: int = 60, customers: int = 8) -> dict[str, pd.DataFrame]:
    """A valid little bank: customers who joined in 2023, one transaction each per day for `days` days."""
    ids = [f"C{i}" for i in range(1, customers + 1)]
    start = pd.Timestamp("2024-01-01")
    stamps = [start + pd.Timedelta(days=d, hours=9 + i) for d in range(days) for i in range(customers)]
    return {
        "customers": pd.DataFrame({"customer_id": ids, "signup_date": ["2023-06-01"] * customers}),
        "transactions": pd.DataFrame({"customer_id": ids * days, "timestamp": stamps,
                                      "amount": np.arange(days * customers, dtype=float) - 5}),
    }


def write_bank(folder: Path, frames: dict[str, pd.DataFrame], config_text: str | None = None) -> Path:
    """Write the frames as CSV files and a config reading them; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    tables = "".join(f"    {name}: {{path: {folder / name}.csv}}\n" for name in frames)
    text = config_text or f"data:\n  tables:\n{tables}paths: {{reports_dir: {folder / 'reports'}}}\n"
    config = folder / "config.yaml"
    config.write_text(text, encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def demo_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated demo bank the brief names: 2,000 customers over 14 months (Parquet)."""
    root = tmp_path_factory.mktemp("demo")
    done = churn("generate", "--customers", "2000", "--months", "14", "--out", str(root / "bank"), cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "bank"


def demo_copy(demo_bank: Path, folder: Path) -> Path:
    """A copy of the demo bank's input tables with a config reading them; returns the config path."""
    folder.mkdir(parents=True)
    for name in ("customers", "transactions", "complaints", "surveys", "contacts"):
        (folder / f"{name}.parquet").write_bytes((demo_bank / f"{name}.parquet").read_bytes())
    tables = "".join(f"    {name}: {{path: {folder / name}.parquet}}\n"
                     for name in ("customers", "transactions", "complaints", "surveys", "contacts"))
    config = folder / "config.yaml"
    config.write_text(f"data:\n  tables:\n{tables}paths: {{reports_dir: {folder / 'reports'}}}\n", encoding="utf-8")
    return config


def set_value(path: Path, column: str, row: int, value: object) -> None:
    frame = pd.read_parquet(path)
    frame.loc[row, column] = pd.Timestamp(value)
    frame.to_parquet(path, index=False)


# ---------------------------------------------------------------- 2. one typo must not move the scoring date


def day_after_last_date(folder: Path) -> str:
    """The old rule, for the demo: midnight after the latest date of any date column of any table."""
    latest = max(frame[c].max() for name in ("customers", "transactions", "complaints", "surveys", "contacts")
                 for frame in [pd.read_parquet(folder / f"{name}.parquet")]
                 for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c]))
    return str((latest.normalize() + pd.Timedelta(days=1)).date())


def test_demo_bank_keeps_its_as_of_and_validates_clean(demo_bank: Path, tmp_path: Path) -> None:
    done = churn("validate", "--config", str(demo_copy(demo_bank, tmp_path / "in")), cwd=tmp_path)
    text = no_traceback(done)
    assert done.returncode == 0, text
    assert f"data as of {day_after_last_date(demo_bank)}" in text
    assert "warning" not in text


def test_one_transaction_dated_2099_is_an_error_not_the_scoring_date(demo_bank: Path, tmp_path: Path) -> None:
    config = demo_copy(demo_bank, tmp_path / "in")
    set_value(tmp_path / "in" / "transactions.parquet", "timestamp", 10, "2099-01-01 10:00")
    done = churn("validate", "--config", str(config), cwd=tmp_path)
    text = no_traceback(done)
    assert done.returncode == EXIT_INVALID_INPUT, text
    last_day = (pd.Timestamp(day_after_last_date(demo_bank)) - pd.Timedelta(days=1)).date()
    assert f"transactions.timestamp: dates after the end of the data, {last_day}" in text
    assert "(1 row); e.g. row 11" in text and "Fix: set data.as_of or correct the dates" in text
    assert "2099" not in text.split("Fix:")[0].split("transactions.timestamp")[0]
    report = json.loads((tmp_path / "in" / "reports" / "validation.json").read_text())
    assert report["valid"] is False and [p["column"] for p in report["problems"]] == ["timestamp"]


def test_a_2099_resolution_date_does_not_move_the_scoring_date(demo_bank: Path, tmp_path: Path) -> None:
    config = demo_copy(demo_bank, tmp_path / "in")
    set_value(tmp_path / "in" / "complaints.parquet", "resolved_at", 3, "2099-05-01")
    done = churn("validate", "--config", str(config), cwd=tmp_path)
    text = no_traceback(done)
    assert done.returncode == 0, text
    assert f"data as of {day_after_last_date(demo_bank)}" in text


def test_stray_date_in_a_small_table_and_in_a_customers_only_snapshot(tmp_path: Path) -> None:
    frames = small_bank(tmp_path)
    frames["transactions"].loc[7, "timestamp"] = pd.Timestamp("2099-01-01")
    done = churn("validate", "--config", str(write_bank(tmp_path / "events", frames)), cwd=tmp_path)
    text = no_traceback(done)
    assert done.returncode == EXIT_INVALID_INPUT, text
    assert "transactions.timestamp: dates after the end of the data, 2024-02-29" in text and "row 8" in text

    signup = [pd.Timestamp("2023-01-02") + pd.Timedelta(days=7 * i) for i in range(29)] + [pd.Timestamp("2099-03-01")]
    customers = pd.DataFrame({"customer_id": [f"C{i}" for i in range(30)], "signup_date": signup,
                              "closed_date": [None] * 28 + ["2023-09-30", None]})
    done = churn("validate", "--config", str(write_bank(tmp_path / "snapshot", {"customers": customers})), cwd=tmp_path)
    text = no_traceback(done)
    assert done.returncode == EXIT_INVALID_INPUT, text
    assert "1 problem(s)" in text  # the last regular signup (2023-07-16) is not after the end
    assert "customers.signup_date: dates after the end of the data, 2023-09-30" in text and "row 30" in text


def days(*spans: tuple[str, int, int]) -> pd.Series:
    """Event times: for each (first day, number of days, events per day), that many events on each day."""
    out = [pd.Timestamp(first) + pd.Timedelta(days=d, minutes=m)
           for first, count, per_day in spans for d in range(count) for m in range(per_day)]
    return pd.Series(out, dtype="datetime64[us]")


def test_bulk_end_rules() -> None:
    from features.validation import bulk_end

    # a busy table: a stray row 10 days after the end has far fewer than 1% of a typical day
    assert bulk_end(days(("2024-01-01", 60, 300), ("2024-03-10", 1, 1))) == pd.Timestamp("2024-02-29")
    # ... but the partial day right after the end counts (an extract taken just after midnight)
    assert bulk_end(days(("2024-01-01", 60, 300), ("2024-03-01", 1, 2))) == pd.Timestamp("2024-03-01")
    # a sparse table: an isolated far date is left out, a handful of rows after a long gap too
    assert bulk_end(days(("2024-01-01", 60, 1), ("2099-01-01", 2, 1))) == pd.Timestamp("2024-02-29")
    # a small pilot long before the real data does not make the real data "isolated"
    assert bulk_end(days(("2020-01-01", 3, 2), ("2023-01-01", 400, 5))) == pd.Timestamp("2024-02-04")
    # quarterly survey waves: each gap is shorter than the data before it
    waves = days(*((str(pd.Timestamp("2023-01-01") + pd.DateOffset(months=3 * q))[:10], 14, 20) for q in range(5)))
    assert bulk_end(waves) == pd.Timestamp("2024-01-14")
    assert bulk_end(pd.Series([pd.NaT], dtype="datetime64[us]")) is None


# ---------------------------------------------------------------- 3. config looseness

TABLES_YAML = "data:\n  tables:\n    customers: {path: customers.csv}\n"


CONFIG_CASES = [
    (TABLES_YAML + "labels:\n  horizon_days: 90\n  horizon_days: 60\n",
     ("duplicate key labels.horizon_days at line 6 (first at line 5)",)),
    ("data:\n  tables:\n    customers: {path: customers.csv, path: other.csv}\n",
     ("duplicate key data.tables.customers.path at line 3",)),
    (TABLES_YAML + "seed: 1\nseed: 2\n", ("duplicate key seed at line 5 (first at line 4)",)),
    (TABLES_YAML + "seed: !!python/object/apply:os.system ['echo pwned > pwned']\n", ("not valid YAML",)),
    (TABLES_YAML + "economics:\n  contact_cost: .inf\n  offer_cost: .nan\n",
     ("economics.contact_cost: not a finite number", "economics.offer_cost: not a finite number")),
    (TABLES_YAML + "economics:\n  contact_cost: -.Inf\n", ("economics.contact_cost: not a finite number",)),
    (TABLES_YAML + "economics:\n  contact_cost: inf\n", ("economics.contact_cost: not a finite number",)),
    (TABLES_YAML + "  as_of: yesterday\n", ("data.as_of", "'yesterday' is not a date")),
    (TABLES_YAML + "  as_of: 2025-06-31\n", ("data.as_of", "'2025-06-31' is not a date")),
    (TABLES_YAML + "  as_of: '2025-13-01'\n", ("data.as_of", "is not a date")),
]
"""Configs that must be refused, and what the message must say."""


@pytest.mark.parametrize(("text", "needles"), [CONFIG_CASES[i] for i in (0, 3, 4, 8)])
def test_config_errors_exit_2_naming_the_key(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    done = churn("validate", "--config", "c.yaml", cwd=tmp_path)
    out = no_traceback(done)
    assert done.returncode == EXIT_CONFIG, out
    assert "config error" in out and all(needle in out for needle in needles), out
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("text", "needles"), CONFIG_CASES)
def test_config_errors_name_the_key(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    """The same checks in-process (the CLI turns every ConfigError into exit code 2, as tested above)."""
    from pipelines.config import ConfigError, load_config

    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "c.yaml")
    assert all(needle in str(error.value) for needle in needles), str(error.value)
    assert not (tmp_path / "pwned").exists()


def test_config_folder_and_non_utf8_config(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text(TABLES_YAML, encoding="utf-8")
    done = churn("validate", "--config", "configs", cwd=tmp_path)
    out = no_traceback(done)
    assert done.returncode == EXIT_CONFIG and "is a folder" in out and "configs/mine.yaml" in out, out
    assert "does not exist" not in out

    (tmp_path / "latin1.yaml").write_bytes(("# caf\u00e9\n" + TABLES_YAML).encode("latin-1"))
    done = churn("validate", "--config", "latin1.yaml", cwd=tmp_path)
    out = no_traceback(done)
    assert done.returncode == EXIT_CONFIG and "not UTF-8" in out and "offset 5" in out and "line 1" in out, out


def test_as_of_takes_an_unquoted_yaml_date(tmp_path: Path) -> None:
    frames = small_bank(tmp_path)
    frames["transactions"] = frames["transactions"][frames["transactions"]["timestamp"] < "2024-02-01"]
    config = write_bank(tmp_path / "in", frames)
    config.write_text(config.read_text().replace("data:\n", "data:\n  as_of: 2024-02-01\n", 1), encoding="utf-8")
    done = churn("validate", "--config", str(config), cwd=tmp_path)
    out = no_traceback(done)
    assert done.returncode == 0, out
    assert "data as of 2024-02-01" in out


@pytest.mark.parametrize(("as_of", "expected"), [
    ("2024-02-01", "2024-02-01"), ("'2024-02-01'", "2024-02-01"), ("2024-02-01 06:30:00", "2024-02-01 06:30:00"),
    ("'2024-02-01T06:30:00+02:00'", "2024-02-01 04:30:00"), ("null", None),
])
def test_as_of_is_an_iso_date_or_date_and_time(tmp_path: Path, as_of: str, expected: str | None) -> None:
    from pipelines.config import load_config

    (tmp_path / "c.yaml").write_text(TABLES_YAML + f"  as_of: {as_of}\n", encoding="utf-8")
    assert load_config(tmp_path / "c.yaml").data.as_of == expected


def test_non_finite_numbers_refused_without_the_cli() -> None:
    from pipelines.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"rules.min_lift: not a finite number"):
        parse_config({"data": {"tables": {"customers": {"path": "c.csv"}}}, "rules": {"min_lift": float("nan")}})


# ---------------------------------------------------------------- 5. messages


def test_failed_validation_replaces_a_valid_report(tmp_path: Path) -> None:
    frames = small_bank(tmp_path)
    config = write_bank(tmp_path / "in", frames)
    assert churn("validate", "--config", str(config), cwd=tmp_path).returncode == 0
    report = tmp_path / "in" / "reports" / "validation.json"
    assert json.loads(report.read_text())["valid"] is True

    frames["transactions"]["amount"] = frames["transactions"]["amount"].astype(object)
    frames["transactions"].loc[0, "amount"] = "12 EUR"
    write_bank(tmp_path / "in", frames)
    done = churn("validate", "--config", str(config), cwd=tmp_path)
    out = no_traceback(done)
    assert done.returncode == EXIT_INVALID_INPUT, out
    assert f"wrote the failed validation report {report}" in out
    payload = json.loads(report.read_text())
    assert payload["valid"] is False
    assert [(p["table"], p["column"], p["rows"]) for p in payload["problems"]] == [("transactions", "amount", 1)]
    assert stat.S_IMODE(report.stat().st_mode) == 0o644


def test_ids_that_differ_only_in_type_or_padding(tmp_path: Path) -> None:
    frames = small_bank(tmp_path, customers=3)
    frames["customers"]["customer_id"] = ["319", "0000420", "C7"]
    frames["transactions"] = pd.DataFrame({
        "customer_id": ["319.0", "0000319", "420", "GHOST", "319"],
        "timestamp": pd.date_range("2024-01-01", periods=5, freq="D"), "amount": [1.0, 2, 3, 4, 5]})
    done = churn("validate", "--config", str(write_bank(tmp_path / "in", frames)), cwd=tmp_path)
    out = no_traceback(done)
    assert done.returncode == EXIT_INVALID_INPUT, out
    assert "transactions.customer_id: customers not in the customers table" in out
    assert "3 of these rows name a known customer written another way" in out
    assert "'319.0' is '319'" in out and "'420' is '0000420'" in out and "differ only in type or padding" in out
    assert "read and export them as text" in out and "(4 rows)" in out


def test_huge_csv_cell_is_a_clear_input_error(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    config = write_bank(folder, small_bank(tmp_path))
    with open(folder / "customers.csv", "a", encoding="utf-8") as handle:
        handle.write('C99,2023-06-01,"' + "x" * (3 << 20) + "\n")  # a quote never closed
    done = churn("validate", "--config", str(config), cwd=tmp_path)
    out = no_traceback(done)
    assert done.returncode == EXIT_INVALID_INPUT, out
    assert f"cannot read {folder / 'customers.csv'} as csv" in out
    assert "double quote that is never closed" in out and "Parquet" in out


def test_a_bad_value_is_not_reported_again_as_empty(tmp_path: Path) -> None:
    frames = small_bank(tmp_path)
    frames["customers"]["signup_date"] = ["2023-06-01", "31/01/2023", None, "2023-06-01", "June", None,
                                          "2023-06-01", "2023-06-01"]
    done = churn("validate", "--config", str(write_bank(tmp_path / "in", frames)), cwd=tmp_path)
    out = no_traceback(done)
    assert done.returncode == EXIT_INVALID_INPUT, out
    assert "customers.signup_date: values that are not dates" in out and "(2 rows); e.g. row 2 (customer C2), " \
        "row 5 (customer C5)" in out
    assert ("customers.signup_date: empty values in a required column (2 rows); e.g. row 3 (customer C3), "
            "row 6 (customer C6).") in out
    assert "2 problem(s)" in out

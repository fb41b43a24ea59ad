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
    """What the score stage does with the retention list: excel_safe, then DataFrame.to_csv."""
    buffer = io.StringIO()
    excel_safe(frame).to_csv(buffer, index=False, lineterminator="\n")
    check_csv_text(buffer.getvalue(), frame, ["label", "note"])


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

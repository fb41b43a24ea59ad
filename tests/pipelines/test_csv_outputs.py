"""Issue 13, item 1, for every CSV the project writes: hostile text in every text column parses back.

The CSVs: the retention list and excluded.csv (score), the five rules tables (rules), the curves
and example reasons (train), drift.csv (an MLflow artifact of score) and the generated demo
tables (`churn generate --format csv`). All of them are written by one helper,
`pipelines.io.to_safe_csv` (a static check below keeps it so); the property tests feed random
bytes, random unicode, control characters and the OWASP formula payloads into every text column
of the real builders of those tables, write them as the stages do and read them back with
Python's csv module: one record per row, every value as written (after the documented guard),
no cell that starts a formula, neither at its start nor after a line break.
"""

from __future__ import annotations

import ast
import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipelines.io import to_safe_csv
from pipelines.score import excluded_rows, retention_list
from tests.pipelines.test_hardening import FORMULA_AFTER_LINE_BREAK, FORMULA_PREFIXES, PAYLOADS, expected_cell

ROOT = Path(__file__).resolve().parents[2]
QUICK = (Phase.explicit, Phase.reuse, Phase.generate)
"""No shrinking: a failing example is reported as drawn (shrinking these frames can take minutes)."""
OWASP = ("=", "+", "-", "@", "\t", "\r", "DDE(\"cmd\";\"/C calc\";\"!A0\")", "=DDE(\"cmd\";\"/C calc\";\"!A0\")",
         "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "+1\r\n=2")
hostile = st.one_of(
    st.sampled_from(PAYLOADS + OWASP),
    st.binary(max_size=16).map(lambda raw: raw.decode("latin-1")),  # random bytes, every value 0-255 as a character
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12),  # random unicode
    st.text(alphabet=st.sampled_from([chr(c) for c in range(32)] + ["\x7f", "\x85", "\u2028", "=", "+", "-", "@"]),
            min_size=1, max_size=8),  # control characters
    st.lists(st.sampled_from(PAYLOADS + OWASP + ("x", "\r", "\n", "\r\n", ",", "\"")), min_size=1, max_size=4)
    .map("".join),
)


def is_number(cell: str) -> bool:
    """A plain number (negative ones start with '-' and are no formula)."""
    try:
        float(cell)
    except ValueError:
        return False
    return cell.strip() == cell and cell.lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def parse_back(text: str, frame: pd.DataFrame, originals: dict[str, list[object]]) -> None:
    """One record per row; each text value as written (guard applied to the original); no formula cell."""
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert records[0] == list(frame.columns)
    assert len(records) == len(frame) + 1 and all(len(r) == len(frame.columns) for r in records), records
    for index, record in enumerate(records[1:]):
        values = dict(zip(frame.columns, record))
        for cell in record:
            assert not cell.startswith(FORMULA_PREFIXES) or is_number(cell), cell
            assert not any(line.startswith(tuple(FORMULA_AFTER_LINE_BREAK)) for line in cell.split("\n")[1:]), cell
        for name, column in originals.items():
            original = column[index]
            missing = original is None or original is pd.NA or (isinstance(original, float) and original != original)
            assert values[name] == ("" if missing else expected_cell(str(original))), (name, original)


def test_every_csv_writer_goes_through_to_safe_csv() -> None:
    """No `.to_csv(` or `csv.writer` anywhere in the code but `pipelines.io.to_safe_csv`."""
    offenders = []
    for folder in ("pipelines", "features", "models"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and node.name == "to_safe_csv" and path.name == "io.py":
                    node.body = []  # the one allowed call
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in ("to_csv", "writer", "DictWriter") and \
                        (node.attr == "to_csv" or (isinstance(node.value, ast.Name) and node.value.id == "csv")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], "write CSV files with pipelines.io.write_csv / to_safe_csv: " + ", ".join(offenders)


def plan_frame(texts: list[str], selected: int) -> pd.DataFrame:
    """A scored plan as `retention_list` reads it, every text column filled from `texts`."""
    n = len(texts)
    pick = lambda shift: [texts[(i + shift) % n] for i in range(n)]  # noqa: E731
    numbers = np.linspace(-5, 5, n)
    return pd.DataFrame({
        "customer_id": pd.Series([f"{t}{i}" for i, t in enumerate(texts)], dtype="str"),
        "segment": pick(1), "churn_probability": np.linspace(0, 1, n), "next_horizon_value_if_retained": numbers,
        "next_horizon_expected_value": numbers, "lifetime_value": numbers, "retained_lifetime_value": numbers,
        "value_at_risk": numbers, "action": pick(2), "channel": pick(3), "owner": pick(4),
        "deadline": pd.date_range("2025-01-01", periods=n), "expected_benefit": numbers,
        "selection_reason": pick(5), "complaint_tier": pick(6),
        "selected": [i < selected for i in range(n)], "rank": pd.array(range(1, n + 1), dtype="Int64"),
    })


@settings(max_examples=60, deadline=None, phases=QUICK)
@given(texts=st.lists(hostile, min_size=1, max_size=8), data=st.data())
def test_retention_list_csv_round_trips_hostile_text(texts: list[str], data: st.DataObject) -> None:
    plan = plan_frame(texts, data.draw(st.integers(min_value=0, max_value=len(texts))))
    reasons = pd.DataFrame({f"reason_{i}": data.draw(st.lists(st.one_of(st.none(), hostile), min_size=len(texts),
                                                                  max_size=len(texts))) for i in (1, 2)},
                           index=plan.index).assign(reason_method="tree_shap")
    listed = retention_list(plan, reasons, 2)
    chosen = plan[plan["selected"]].sort_values("rank", kind="stable")
    originals = {name: chosen[name].tolist() for name in ("customer_id", "segment", "action", "channel", "owner",
                                                          "selection_reason", "complaint_tier")}
    originals.update({name: reasons.loc[chosen.index, name].tolist() for name in ("reason_1", "reason_2")})
    parse_back(to_safe_csv(listed) or "", listed, originals)


@settings(max_examples=60, deadline=None, phases=QUICK)
@given(rows=st.lists(st.tuples(hostile, hostile, hostile), min_size=1, max_size=8))
def test_excluded_csv_round_trips_hostile_text(rows: list[tuple[str, str, str]]) -> None:
    part = pd.DataFrame(rows, columns=["customer_id", "reason", "setting"])
    table = excluded_rows(part)
    order = part.assign(customer_id=part["customer_id"].astype("str")).sort_values("customer_id", kind="stable")
    parse_back(to_safe_csv(table) or "", table, {name: order[name].tolist() for name in table.columns})


@settings(max_examples=60, deadline=None, phases=QUICK, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(hostile, min_size=1, max_size=6))
def test_generated_and_drift_style_tables_round_trip(texts: list[str]) -> None:
    """The other shapes: text with dates and negative numbers (generated tables, drift.csv, curves)."""
    n = len(texts)
    frame = pd.DataFrame({"feature": pd.Series(texts, dtype="str"), "model": pd.Categorical(texts[::-1]),
                          "psi": np.linspace(-1, 1, n), "when": pd.date_range("2024-01-01", periods=n),
                          "note": pd.Series(texts, dtype=object)})
    text = to_safe_csv(frame, date_format="%Y-%m-%d %H:%M:%S") or ""
    parse_back(text, frame, {"feature": texts, "model": texts[::-1], "note": texts})

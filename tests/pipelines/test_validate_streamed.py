"""`churn validate` reads the big event tables in batches: the report must be the whole-table one.

Each case plants problems in a small generated bank (Parquet) and compares `check_tables` with
batches of 7 rows (so every check, example list and shown value crosses batch boundaries) to
`load_tables` + `summarise_tables` reading every table whole: the same problems, in the same
order and words, or the same summary and as-of date.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.validation import ValidationFailed, repeated_values
from pipelines.config import Config, parse_config
from pipelines.generate import run as generate
from pipelines.streamed import check_tables
from pipelines.tables import TEXT, load_tables, summarise_tables
from tests.pipelines.bank import ROOT

Frames = dict[str, pd.DataFrame]
TINY_BATCH = 7


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Frames:
    """A small generated bank, transactions thinned to about 200 rows spread over the months,
    complaints repeated three times (with ids of their own) to span several batches."""
    folder = tmp_path_factory.mktemp("streamed") / "raw"
    generate(120, 1, str(folder), "2023-01-01", 4, "parquet")
    frames = {name: pd.read_parquet(folder / f"{name}.parquet")
              for name in ("customers", "transactions", "complaints", "surveys", "contacts")}
    transactions = frames["transactions"]
    frames["transactions"] = transactions.iloc[::max(1, len(transactions) // 200)].reset_index(drop=True)
    complaints = pd.concat([frames["complaints"]] * 3, ignore_index=True)
    complaints["complaint_id"] = [f"K{i:08d}" for i in range(1, len(complaints) + 1)]
    frames["complaints"] = complaints
    assert len(complaints) > 5 * TINY_BATCH
    return frames


def write(frames: Frames, folder: Path, as_of: str | None = None, csv: tuple[str, ...] = ()) -> Config:
    """The frames as files (Parquet, or CSV for the tables named in `csv`) and a config reading them."""
    raw = folder / "raw"
    raw.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    for name, frame in frames.items():
        path = raw / f"{name}.{'csv' if name in csv else 'parquet'}"
        if name in csv:
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        config["data"]["tables"][name] = {"path": str(path)}
    config["data"]["as_of"] = as_of
    config["paths"] = {key: str(folder / key) for key in ("features_dir", "outputs_dir", "reports_dir")}
    return parse_config(config)


def whole(cfg: Config) -> tuple[object, ...]:
    try:
        tables = load_tables(cfg)
    except ValidationFailed as failure:
        return ("invalid", [p.report() for p in failure.problems])
    return ("valid", summarise_tables(tables), tables.as_of)


def streamed(cfg: Config) -> tuple[object, ...]:
    try:
        summary, as_of = check_tables(cfg, batch_rows=TINY_BATCH)
    except ValidationFailed as failure:
        return ("invalid", [p.report() for p in failure.problems])
    return ("valid", summary, as_of)


def spread(frame: pd.DataFrame, count: int, start: int = 3) -> np.ndarray:
    """`count` row positions spread over the table (so over many batches)."""
    return np.linspace(start, len(frame) - 1, count).astype(int)


def numeric_ids(frames: Frames) -> Frames:
    """Ids such as '123' instead of 'C0000123', then some transactions' ids padded, with '.0', or unknown."""
    out = {name: frame.copy() for name, frame in frames.items()}
    for frame in out.values():
        frame["customer_id"] = frame["customer_id"].str.lstrip("C0")
    t = out["transactions"]
    rows = spread(t, 12)
    for i, row in enumerate(rows):
        known = t.at[row, "customer_id"]
        t.at[row, "customer_id"] = [f"000{known}", f"{known}.0", "999999", f" {known}"][i % 4]
    out["surveys"].loc[spread(out["surveys"], 3), "customer_id"] = "nobody"
    return out


def before_signup(frames: Frames) -> Frames:
    out = {name: frame.copy() for name, frame in frames.items()}
    for name, column in (("transactions", "timestamp"), ("contacts", "contacted_at"), ("surveys", "answered_at")):
        out[name].loc[spread(out[name], 8 if name == "transactions" else 2), column] = pd.Timestamp("2001-02-03")
    return out


def dated_2099(frames: Frames) -> Frames:
    out = {name: frame.copy() for name, frame in frames.items()}
    out["transactions"].loc[spread(out["transactions"], 7), "timestamp"] = pd.Timestamp("2099-01-01 10:00")
    out["surveys"].loc[spread(out["surveys"], 2), "answered_at"] = pd.Timestamp("2099-05-01")
    out["complaints"].loc[spread(out["complaints"], 2), "resolved_at"] = pd.Timestamp("2099-05-01")
    return out


def late_warnings_only(frames: Frames) -> Frames:
    """Valid, with warnings: a resolution and a signup after the end of the event data."""
    out = {name: frame.copy() for name, frame in frames.items()}
    out["complaints"].loc[3, "resolved_at"] = pd.Timestamp("2099-05-01")
    return out


def bad_numbers(frames: Frames) -> Frames:
    """Amounts stored as text, some not numbers (more than 3 distinct) and some empty."""
    out = {name: frame.copy() for name, frame in frames.items()}
    t = out["transactions"]
    t["amount"] = t["amount"].astype("str")
    rows = spread(t, 9)
    t.loc[rows, "amount"] = ["abc", "1,5", "€3", "x", "abc", None, "y", None, "z"]
    s = out["surveys"]
    s["answered_at"] = s["answered_at"].astype("str")
    s.loc[spread(s, 5), "answered_at"] = ["yesterday", "2023-13-45", None, "soon", "later"]
    return out


def bad_values(frames: Frames) -> Frames:
    """Out-of-range scores, disallowed categories, infinite amounts, empty required values."""
    out = {name: frame.copy() for name, frame in frames.items()}
    t, s, c, k = out["transactions"], out["surveys"], out["contacts"], out["complaints"]
    t.loc[spread(t, 6), "amount"] = [np.inf, -np.inf, np.nan, np.inf, np.nan, np.inf]
    t.loc[spread(t, 3, 5), "customer_id"] = None
    t.loc[spread(t, 2, 8), "timestamp"] = pd.NaT
    s.loc[spread(s, 4), "nps"] = [11.0, -1.0, 12.0, 10.5]
    s.loc[spread(s, 3, 4), "csat"] = 0.0
    c.loc[spread(c, 3), "treatment"] = 2
    c.loc[spread(c, 2, 1), "cost"] = -5.0
    c.loc[spread(c, 2, 2), "action"] = None
    k.loc[spread(k, 2), "priority"] = "asap"
    k.loc[spread(k, 2, 5), "satisfaction"] = 9.0
    return out


DUPLICATED = (2, 20, 40)
"""Rows (from 0) of the complaints that `complaint_problems` gives the same id: three batches of 7."""


def complaint_problems(frames: Frames) -> Frames:
    """Complaint ids repeated within and across batches (one empty), replies and resolutions before
    the opening, dates that are not dates, an unknown customer, complaints before signup."""
    out = {name: frame.copy() for name, frame in frames.items()}
    k = out["complaints"]
    k.loc[list(DUPLICATED), "complaint_id"] = k.at[DUPLICATED[0], "complaint_id"]
    k.loc[[9, 11, 30, 45], "complaint_id"] = k.at[8, "complaint_id"]  # more duplicated rows than examples
    k.loc[[16, 33], "complaint_id"] = None  # empty: reported as empty, not as duplicate
    day = pd.Timedelta(days=1)
    k.loc[spread(k, 4), "first_response_at"] = k.loc[spread(k, 4), "opened_at"] - day
    k.loc[spread(k, 3, 5), "resolved_at"] = k.loc[spread(k, 3, 5), "opened_at"] - day / 24
    for column, bad in (("first_response_at", ["soon", "2023-02-30"]), ("resolved_at", ["never", "x", "y", "z"])):
        k[column] = k[column].astype("str")
        k.loc[spread(k, len(bad), 6), column] = bad
    k.loc[spread(k, 2, 1), "customer_id"] = "nobody"
    k.loc[spread(k, 3, 7), "opened_at"] = pd.Timestamp("2001-02-03")
    return out


def complaints_after_the_end(frames: Frames) -> Frames:
    """Complaints opened, answered and resolved in 2099 (with data.as_of empty: after the end of the data)."""
    out = {name: frame.copy() for name, frame in frames.items()}
    k = out["complaints"]
    for count, start, column in ((2, 4, "opened_at"), (3, 1, "first_response_at"), (6, 2, "resolved_at")):
        k.loc[spread(k, count, start), column] = pd.Timestamp("2099-05-01")
    return out


def empty_surveys(frames: Frames) -> Frames:
    return {**frames, "surveys": frames["surveys"].iloc[:0]}


def customers_only(frames: Frames) -> Frames:
    """No event rows at all: the end comes from the customers' dates (one of them 2099)."""
    out = {name: frame.iloc[:0] if name != "customers" else frame.copy() for name, frame in frames.items()}
    out["customers"].loc[5, "signup_date"] = pd.Timestamp("2099-01-01")
    return out


def unchanged(frames: Frames) -> Frames:
    return frames


CASES: dict[str, tuple[Callable[[Frames], Frames], tuple[str | None, ...]]] = {
    "clean": (unchanged, (None, "2023-03-01")),
    "numeric and padded ids": (numeric_ids, (None,)),
    "events before signup": (before_signup, (None,)),
    "dated 2099": (dated_2099, (None, "2023-04-01")),
    "warnings only": (late_warnings_only, (None,)),
    "bad numbers and dates": (bad_numbers, (None,)),
    "bad values": (bad_values, (None, "2023-03-15")),
    "complaint problems": (complaint_problems, (None, "2023-03-15")),
    "complaints after the end": (complaints_after_the_end, (None, "2023-03-01")),
    "empty surveys": (empty_surveys, (None,)),
    "customers only": (customers_only, (None,)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_streamed_report_equals_the_whole_table_one(base: Frames, case: str, tmp_path: Path) -> None:
    plant, as_ofs = CASES[case]
    frames = plant(base)
    for i, as_of in enumerate(as_ofs):
        cfg = write(frames, tmp_path / str(i), as_of)
        expected = whole(cfg)
        assert streamed(cfg) == expected
        if case not in ("clean", "warnings only"):
            assert expected[0] == "invalid", case  # the case plants what it means to


def test_examples_and_shown_values_count_from_the_top_of_the_file(base: Frames, tmp_path: Path) -> None:
    """Rows named by file position across batches; the first 3 bad values of the table, not of a batch."""
    cfg = write(bad_numbers(base), tmp_path)
    outcome = streamed(cfg)
    assert outcome[0] == "invalid"
    amount = next(p for p in outcome[1] if p["column"] == "amount" and p["message"].startswith("values that"))
    rows = spread(base["transactions"], 9)
    bad = [rows[i] for i in (0, 1, 2, 3, 4)]
    assert amount["rows"] == 7
    assert amount["message"] == "values that are not numbers (e.g. ['abc', '1,5', '€3'])"
    assert [e.split(" (")[0] for e in amount["examples"]] == [f"row {r + 1}" for r in bad]


def test_duplicate_ids_are_found_across_batches(base: Frames, tmp_path: Path) -> None:
    """Every row of a repeated complaint id, wherever its batch, named by file row (the first 5)."""
    outcome = streamed(write(complaint_problems(base), tmp_path))
    assert outcome[0] == "invalid"
    duplicates = next(p for p in outcome[1] if p["message"].startswith("duplicate values"))
    ids = base["complaints"]["complaint_id"]
    assert duplicates["rows"] == len(DUPLICATED) + 5
    assert duplicates["examples"] == [f"row {r + 1} (complaint {ids[r if r in (2, 8) else 2 if r in DUPLICATED else 8]})"
                                      for r in (2, 8, 9, 11, 20)]


@pytest.mark.parametrize(("plant", "csv"), [(bad_numbers, ("transactions", "surveys")),
                                            (complaint_problems, ("complaints",))])
def test_csv_event_tables_are_read_whole_with_the_same_report(base: Frames, tmp_path: Path,
                                                              plant: Callable[[Frames], Frames],
                                                              csv: tuple[str, ...]) -> None:
    cfg = write(plant(base), tmp_path, csv=csv)
    outcome = streamed(cfg)
    assert outcome == whole(cfg)
    assert not any(p["message"].startswith("cannot read") for p in outcome[1])


@pytest.mark.parametrize("order", ["random", "sorted", "increasing"])
def test_repeated_values_are_pandas_duplicates_without_the_empty_values(order: str) -> None:
    """The sort-based duplicate check (and its no-sort path for increasing ids) against pandas,
    on columns of several Arrow chunks (a table gathered over batches) with empty values."""
    rng = np.random.default_rng(7)
    for _ in range(60):
        n = int(rng.integers(0, 30))
        ids = rng.integers(0, int(rng.integers(1, 40)), n).astype(str).astype(object)
        if order == "increasing":
            ids = np.array([f"K{i:04d}" for i in range(n)], dtype=object)
            if n > 3 and rng.random() < 0.5:
                ids[n // 2] = ids[n // 2 - 1]
        ids[rng.random(n) < 0.15] = None
        if order == "sorted":
            ids = np.array(sorted(ids, key=lambda v: (v is None, v)), dtype=object)
        cut = n // 3
        values = pd.concat([pd.Series(ids[:cut], dtype=TEXT), pd.Series(ids[cut:], dtype=TEXT)], ignore_index=True)
        expected = (values.duplicated(keep=False) & values.notna()).to_numpy()
        assert repeated_values(values).tolist() == expected.tolist(), ids

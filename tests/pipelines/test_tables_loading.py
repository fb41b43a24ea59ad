"""The fast load path: Parquet and CSV give the same typed tables; category columns are categoricals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.config import parse_config
from pipelines.tables import load_tables, read_and_check
from tests.pipelines.test_tables import tiny_tables, write_dataset


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as their text values, to compare values across formats."""
    return frame.assign(**{c: frame[c].astype("str") for c in frame.columns
                           if isinstance(frame[c].dtype, pd.CategoricalDtype)})


def test_parquet_and_csv_load_the_same_values_and_types(tmp_path: Path) -> None:
    frames = tiny_tables()
    frames["transactions"]["product"] = ["current_account", None, "card", "current_account"]
    # A Parquet file written from a categorical (stored as a dictionary) with an unused level.
    frames_parquet = {name: frame.copy() for name, frame in frames.items()}
    frames_parquet["transactions"]["channel"] = pd.Categorical(
        frames["transactions"]["channel"], categories=["mobile_app", "never_used", "card", "branch"])
    from_csv = load_tables(parse_config(write_dataset(tmp_path / "csv", frames)))
    from_parquet = load_tables(parse_config(write_dataset(tmp_path / "pq", frames_parquet, fmt="parquet")))
    for name in from_csv.present():
        csv, parquet = getattr(from_csv, name), getattr(from_parquet, name)
        assert dict(csv.dtypes.astype(str)) == dict(parquet.dtypes.astype(str)), name
        pd.testing.assert_frame_equal(plain(csv), plain(parquet), check_dtype=True, obj=name)
    channel = from_parquet.transactions["channel"]
    assert isinstance(channel.dtype, pd.CategoricalDtype)
    assert channel.cat.categories.tolist() == ["branch", "card", "mobile_app"]  # sorted, only those used
    assert from_parquet.transactions["product"].astype("str").tolist() == [
        "current_account", np.nan, "card", "current_account"]
    assert from_parquet.as_of == from_csv.as_of


def test_time_zone_aware_parquet_times_become_naive_utc(tmp_path: Path) -> None:
    frames = tiny_tables()
    stamps = pd.to_datetime(frames["transactions"]["timestamp"], format="ISO8601")
    frames["transactions"]["timestamp"] = stamps.dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin")
    tables = load_tables(parse_config(write_dataset(tmp_path, frames, fmt="parquet")))
    assert str(tables.transactions["timestamp"].dtype) == "datetime64[us]"
    assert tables.transactions["timestamp"].tolist() == stamps.tolist()


def test_missing_event_id_is_not_an_unknown_customer_when_a_customer_id_is_missing_too(tmp_path: Path) -> None:
    """Both rows are reported as empty keys; the lookup matches missing to missing, as pandas does."""
    frames = tiny_tables()
    frames["customers"].loc[2, "customer_id"] = None
    frames["transactions"].loc[0, "customer_id"] = None
    raw = write_dataset(tmp_path, frames, fmt="parquet")
    _, _, problems = read_and_check(parse_config(raw))
    text = [str(p) for p in problems if p.severity == "error"]
    assert any("customers.customer_id: empty values" in p for p in text)
    assert any("transactions.customer_id: empty values" in p for p in text)
    # C3's transaction (row 4) is now unknown; the row with the missing id is not counted again.
    unknown = [p for p in text if p.startswith("transactions.customer_id: customers not in")]
    assert len(unknown) == 1 and "(1 row)" in unknown[0] and "row 4 (customer C3)" in unknown[0]


def test_a_stage_reads_only_the_tables_it_needs_and_the_same_end_of_the_data(tmp_path: Path) -> None:
    """Unused tables are not read or checked (bad amounts there stop nothing), but with data.as_of
    empty their dates still count towards the end of the data, so every stage's windows agree."""
    frames = tiny_tables()
    late = pd.DataFrame({"customer_id": ["C1"], "timestamp": ["2023-08-05 08:00:00"], "amount": [5.0],
                         "channel": ["card"]})
    frames["transactions"] = pd.concat([frames["transactions"], late], ignore_index=True)
    full = load_tables(parse_config(write_dataset(tmp_path / "clean", frames)))
    assert full.as_of == pd.Timestamp("2023-08-06")  # the transactions run latest
    frames["transactions"]["amount"] = ["ten", "-3", "200", "42", "5"]
    raw = write_dataset(tmp_path / "bad", frames)
    _, _, problems = read_and_check(parse_config(raw))
    assert any("transactions.amount" in str(p) for p in problems if p.severity == "error")
    needs = frozenset({"customers", "complaints", "surveys"})
    part = load_tables(parse_config(raw), needs)
    assert part.transactions is None and part.contacts is None
    assert part.as_of == full.as_of
    for name in sorted(needs):
        pd.testing.assert_frame_equal(getattr(part, name), getattr(full, name), obj=name)
    # With the end of the data configured, the unused tables are not opened at all.
    frames["transactions"]["timestamp"] = "not a date"
    raw = write_dataset(tmp_path / "worse", frames)
    raw["data"]["as_of"] = "2024-01-01"
    part = load_tables(parse_config(raw), needs)
    assert part.transactions is None and part.as_of == pd.Timestamp("2024-01-01")


def test_unused_tables_dates_read_in_batches_give_the_end_and_the_problems_of_a_whole_read(
        tmp_path: Path, monkeypatch) -> None:
    """A stage that does not use the transactions still infers the end of the data from their dates,
    read in batches of rows (never the whole column: 459M times at 10M customers): the same end as the
    whole table gives, and unparseable dates reported once, counted over every batch."""
    import pipelines.tables as tables

    frames = tiny_tables()
    rng = np.random.default_rng(3)
    days = pd.Timestamp("2023-03-15") + pd.to_timedelta(rng.integers(0, 150, 2_500), unit="D")
    many = pd.DataFrame({"customer_id": rng.choice(["C1", "C2", "C3"], 2_500),
                         "timestamp": days.strftime("%Y-%m-%d %H:%M:%S"), "amount": 10.0, "channel": "card"})
    frames["transactions"] = many
    raw = write_dataset(tmp_path / "clean", frames, fmt="parquet")
    whole = load_tables(parse_config(raw))
    monkeypatch.setattr(tables, "BATCH_ROWS", 300)  # 9 batches
    needs = frozenset({"customers", "complaints", "surveys"})
    part = load_tables(parse_config(raw), needs)
    assert part.transactions is None and part.as_of == whole.as_of == pd.Timestamp(days.max().date()) + pd.Timedelta(days=1)
    broken = many.copy()
    broken.loc[[10, 1_000, 2_400], "timestamp"] = ["soon", "later", "never"]  # in three different batches
    frames["transactions"] = broken
    raw = write_dataset(tmp_path / "broken", frames, fmt="parquet")
    _, _, problems = read_and_check(parse_config(raw), needs)
    [bad] = [p for p in problems if p.table == "transactions"]
    assert bad.column == "timestamp" and bad.rows == 3 and "values that are not dates" in bad.message

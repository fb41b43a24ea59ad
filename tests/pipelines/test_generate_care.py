"""Branches, business lines and complaint text of the synthetic bank: own stream, planted truth, varied text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import pipelines.generate_care as care
from pipelines.generate import run

NEW = {"complaints": {"text", "branch"}, "surveys": {"branch", "business_line"}}  # complaint business line: from product


@pytest.fixture(scope="module")
def two_streams(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same seed generated twice, the second time with another stream for the new columns."""
    root = tmp_path_factory.mktemp("care")
    run(1200, 5, root / "a", "2023-01-01", 14, "parquet")
    original = care.STREAM
    care.STREAM = "another-stream"
    try:
        run(1200, 5, root / "b", "2023-01-01", 14, "parquet")
    finally:
        care.STREAM = original
    return root / "a", root / "b"


def test_new_columns_come_from_their_own_stream_and_leave_every_other_column_unchanged(
        two_streams: tuple[Path, Path]) -> None:
    first, second = two_streams
    for path in sorted(first.rglob("*.parquet")):
        relative = path.relative_to(first)
        a, b = pd.read_parquet(path), pd.read_parquet(second / relative)
        assert list(a.columns) == list(b.columns)
        new = NEW.get(relative.stem, set()) if relative.parent == Path(".") else set()
        for column in a.columns:
            if column in new:
                assert not a[column].equals(b[column]), f"{relative}:{column} ignores its stream"
            elif relative.stem != "branches":
                pd.testing.assert_series_equal(a[column], b[column], obj=f"{relative}:{column}")


def test_planted_worse_branches_have_lower_scores_than_the_rest(two_streams: tuple[Path, Path]) -> None:
    first, _ = two_streams
    truth = pd.read_parquet(first / "_truth" / "branches.parquet")
    assert set(truth.loc[truth["truly_worse"], "branch"]) == set(care.WORSE_BRANCHES)
    surveys = pd.read_parquet(first / "surveys.parquet")
    worse = surveys["branch"].isin(care.WORSE_BRANCHES)
    assert surveys.loc[worse, "csat"].mean() < surveys.loc[~worse, "csat"].mean() - 0.15
    customers = pd.read_parquet(first / "customers.parquet").set_index("customer_id")
    region = surveys["customer_id"].map(customers["region"])
    assert (surveys["branch"].str.rsplit("_", n=1).str[0] == region).all(), "a branch outside the customer's region"


def test_complaint_text_varies_within_a_category_and_has_typos_but_no_numbers_or_names(
        two_streams: tuple[Path, Path]) -> None:
    first, _ = two_streams
    complaints = pd.read_parquet(first / "complaints.parquet")
    assert complaints["text"].notna().all() and (complaints["text"].str.len() > 20).all()
    per_category = complaints.groupby("category")["text"].nunique()
    assert (per_category >= 5).all(), per_category
    words = {w.strip(".,!?").lower() for t in complaints["text"] for w in t.split()}
    known = {w.strip(".,!?").lower() for pool in (*care.CORE.values(), care.OPENINGS_CALM, care.OPENINGS_ANGRY,
                                                   care.URGENT, care.SOFT, care.NEUTRAL, care.NEGATIVE, care.MIXED, care.GENERIC)
             for phrase in pool for w in phrase.split()}
    assert words - known, "no typos"
    assert not complaints["text"].str.contains(r"\d").any()
    assert set(complaints["business_line"]) <= set(care.BUSINESS_LINES)

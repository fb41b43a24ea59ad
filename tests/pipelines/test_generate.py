"""The synthetic bank: deterministic, valid under the data contract, truth kept apart, realistic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.contract import TABLES
from pipelines.config import parse_config
from pipelines.generate import CHAINS, run, top_scores
from pipelines.io import file_sha256
from pipelines.tables import read_and_check

INPUTS = ("customers", "transactions", "complaints", "surveys", "contacts")
STATIC = {"segment", "region", "age_band", "products_held", "acquisition_channel"}


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bank") / "raw"
    run(6000, 11, out, "2023-01-01", 24, "parquet")
    return out


def read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(folder / f"{name}.parquet")


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((first, 3), (second, 3), (third, 4)):
        run(400, seed, folder, "2024-01-01", 8, "parquet")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert {f"{name}.parquet" for name in INPUTS} <= {str(f) for f in files}
    for relative in files:
        assert file_sha256(first / relative) == file_sha256(second / relative), relative
    assert file_sha256(first / "transactions.parquet") != file_sha256(third / "transactions.parquet")


def test_generated_data_passes_validation_in_parquet_and_csv(tmp_path: Path, bank: Path) -> None:
    csv_out = tmp_path / "csv"
    counts = run(300, 5, csv_out, "2024-01-01", 6, "csv")
    for folder, fmt in ((bank, "parquet"), (csv_out, "csv")):
        cfg = parse_config({"data": {"tables": {n: {"path": str(folder / f"{n}.{fmt}")} for n in INPUTS}}})
        frames, as_of, problems = read_and_check(cfg)
        errors = [p for p in problems if getattr(p, "severity", "error") == "error"]
        assert errors == [], errors
        assert set(frames) == set(INPUTS) and as_of is not None
    assert counts["transactions"] == len(pd.read_csv(csv_out / "transactions.csv"))


def test_input_tables_hold_only_contract_columns_and_ids_carry_no_order(bank: Path) -> None:
    for name in INPUTS:
        columns = set(read(bank, name).columns)
        contract = {c.name for c in TABLES[name].columns}
        assert columns <= contract | (STATIC if name == "customers" else set()), (name, columns - contract)
    customers = read(bank, "customers")
    churned = customers["closed_date"].notna().to_numpy()
    id_number = customers["customer_id"].str.slice(1).astype(int).to_numpy()
    assert abs(roc_auc_score(churned, id_number) - 0.5) < 0.05
    assert not any(p.name.startswith("_") for p in bank.glob("*.parquet"))


def test_truth_is_apart_and_no_single_input_column_reveals_it(bank: Path) -> None:
    truth = bank / "_truth"
    assert {p.name for p in truth.iterdir()} >= {"monthly_hazard.parquet", "customers.parquet",
                                                  "complaint_origin.parquet", "chains.json"}
    hazard = read(truth, "monthly_hazard")
    customers = read(bank, "customers")
    at = hazard[hazard["month_start"] == hazard["month_start"].max()].merge(customers, on="customer_id")
    high = (at["hazard"] > at["hazard"].quantile(0.9)).to_numpy()
    auc = roc_auc_score(high, at["products_held"].to_numpy(dtype=float))
    assert 0.2 < auc < 0.8  # informative, as in real life, but far from the truth
    # The truth is what decides closures: its ceiling is far above chance.
    last = hazard["month_start"].max() - pd.DateOffset(months=3)
    rows = hazard[hazard["month_start"] == last].merge(customers[["customer_id", "closed_date"]], on="customer_id")
    closed = ((rows["closed_date"] >= last) & (rows["closed_date"] < last + pd.DateOffset(months=3))).to_numpy()
    assert roc_auc_score(closed, rows["hazard"]) > 0.7


def test_churners_activity_declines_before_they_leave(bank: Path) -> None:
    customers = read(bank, "customers")
    tx = read(bank, "transactions")
    start = tx["timestamp"].min()
    leavers = customers[customers["closed_date"] > start + pd.DateOffset(months=12)]
    stayers = customers[customers["closed_date"].isna() & (customers["signup_date"] < start)]
    tx = tx.merge(customers[["customer_id", "closed_date"]], on="customer_id")

    def counts(group: pd.DataFrame, ends: pd.Series, months_back: tuple[int, int]) -> float:
        frame = tx[tx["customer_id"].isin(group["customer_id"])].merge(
            ends.rename("end").reset_index(), on="customer_id")
        lo = frame["end"] - pd.DateOffset(months=months_back[0])
        hi = frame["end"] - pd.DateOffset(months=months_back[1])
        return float(((frame["timestamp"] >= lo) & (frame["timestamp"] < hi)).sum() / len(group))

    leaver_end = leavers.set_index("customer_id")["closed_date"]
    early, late = counts(leavers, leaver_end, (12, 9)), counts(leavers, leaver_end, (3, 0))
    # Not all leavers fade: those whose partner promotion ends leave while still active.
    assert late < 0.75 * early, (early, late)
    stay_end = pd.Series(start + pd.DateOffset(months=24), index=stayers.set_index("customer_id").index)
    stay_early, stay_late = counts(stayers, stay_end, (12, 9)), counts(stayers, stay_end, (3, 0))
    assert stay_late > 0.8 * stay_early, (stay_early, stay_late)


def test_no_event_after_closure_or_before_signup(bank: Path) -> None:
    customers = read(bank, "customers")[["customer_id", "signup_date", "closed_date"]]
    for name, column in (("transactions", "timestamp"), ("complaints", "opened_at"), ("surveys", "answered_at"),
                         ("contacts", "contacted_at")):
        events = read(bank, name).merge(customers, on="customer_id")
        assert (events[column] >= events["signup_date"]).all(), name
        closed = events["closed_date"].notna()
        assert (events.loc[closed, column] < events.loc[closed, "closed_date"]).all(), name


def test_planted_chains_appear_in_order(bank: Path) -> None:
    complaints = read(bank, "complaints").merge(read(bank / "_truth", "complaint_origin"), on="complaint_id")
    chained = complaints[complaints["chain"].notna()]
    assert len(chained) > 200
    for chain in CHAINS:
        rows = chained[chained["chain"] == chain.name].sort_values(["chain_instance", "chain_step"])
        assert list(rows["category"].drop_duplicates()) == list(chain.steps)
        times = rows.groupby("chain_instance")["opened_at"]
        assert (times.apply(lambda t: t.is_monotonic_increasing)).all()
        steps = rows.groupby("chain_step").size()
        assert steps.iloc[0] > steps.iloc[1] > steps.iloc[-1] > 0  # each step follows only sometimes
    planted = json.loads((bank / "_truth" / "chains.json").read_text())
    assert [c["steps"] for c in planted] == [list(c.steps) for c in CHAINS]
    # Seen from the inputs alone: customers with the first step get the second far more often.
    first, second = CHAINS[0].steps[:2]
    by_customer = complaints.groupby("customer_id")["category"].agg(set)
    has_first = by_customer.apply(lambda s: first in s)
    has_second = by_customer.apply(lambda s: second in s)
    assert has_second[has_first].mean() > 2 * has_second[~has_first].mean()


def test_breach_rates_per_tier_are_plausible_and_breaches_hurt_satisfaction(bank: Path) -> None:
    complaints = read(bank, "complaints")
    hours = (complaints["first_response_at"] - complaints["opened_at"]).dt.total_seconds() / 3600
    resolution = (complaints["resolved_at"] - complaints["opened_at"]).dt.total_seconds() / 3600
    targets = {"urgent": (1, 24), "high": (4, 48), "normal": (24, 72)}
    for tier, (respond, resolve) in targets.items():
        mask = complaints["priority"] == tier
        assert mask.sum() > 50, tier
        late_response = (hours[mask] > respond).mean()
        late_resolution = (resolution[mask] > resolve).mean()
        assert 0.02 < late_response < 0.35, (tier, late_response)
        assert 0.02 < late_resolution < 0.40, (tier, late_resolution)
    late = resolution > complaints["priority"].map({k: v[1] for k, v in targets.items()})
    scored = complaints["satisfaction"].notna()
    assert complaints.loc[scored & late, "satisfaction"].mean() < complaints.loc[scored & ~late, "satisfaction"].mean() - 0.5
    assert set(complaints["priority"].unique()) <= {"urgent", "high", "normal", "suggestion"}
    assert complaints["resolved_at"].isna().sum() > 0  # some still open at the end of the data


def test_segments_differ_in_value_and_contacts_have_a_control_group(bank: Path) -> None:
    customers = read(bank, "customers")
    tx = read(bank, "transactions").merge(customers[["customer_id", "segment"]], on="customer_id")
    spend = tx.groupby("segment")["amount"].sum() / customers.groupby("segment").size()
    assert spend["affluent"] > 2 * spend["mass"]
    assert (tx["amount"] < 0).mean() > 0.02
    assert customers["signup_date"].min() < tx["timestamp"].min() < customers["signup_date"].max()
    contacts = read(bank, "contacts")
    control = (contacts["treatment"] == 0).mean()
    assert 0.1 < control < 0.3
    assert (contacts.loc[contacts["treatment"] == 0, "cost"] == 0).all()
    effects = read(bank / "_truth", "customers")["true_contact_effect"]
    assert effects.std() > 0.05  # the effect differs by customer, for uplift work


def test_rule_mining_recovers_the_planted_chains_in_order_and_nothing_else(bank: Path) -> None:
    from features.settings import FeatureSettings, LabelSettings
    from models.rules import RuleSettings, mine_complaint_rules

    complaints, customers = read(bank, "complaints"), read(bank, "customers")
    as_of = complaints["opened_at"].max().normalize() + pd.Timedelta(days=1)
    result = mine_complaint_rules(complaints, customers, read(bank, "transactions"), as_of, RuleSettings(),
                                  LabelSettings(), FeatureSettings().complaint_targets)
    found = [chain.split(" -> ") for chain in result.chains.sort_values("rank")["chain"]]
    planted = [list(c.steps) for c in CHAINS]  # listed most frequent first (app release, then loans)
    assert found[: len(CHAINS)] == planted
    assert len(found) == len(CHAINS)
    planted_links = {(s[i], s[i + 1]) for s in planted for i in range(len(s) - 1)}
    ordered = result.pairs[result.pairs["significant"].astype(bool)]
    assert set(zip(ordered["first_category"], ordered["then_category"])) <= planted_links | {
        (s[0], s[2]) for s in planted}


def test_complaints_peak_at_year_end_and_follow_each_channels_week(bank: Path) -> None:
    """The planted timing: more background complaints in Nov-Dec, branches busiest on Saturday and
    closed on Sunday, phones busiest on Monday, app complaints in the evening, slower handling at weekends."""
    complaints = read(bank, "complaints").merge(read(bank / "_truth", "complaint_origin"), on="complaint_id")
    opened = complaints["opened_at"]
    background = complaints["chain"].isna()
    per_month = complaints[background].groupby(opened.dt.to_period("M")).size()
    months = per_month.index.month
    year_end = per_month[np.isin(months, (11, 12))].mean()
    assert year_end > 1.2 * per_month[~np.isin(months, (11, 12))].mean(), per_month

    weekday, hour = opened.dt.day_of_week, opened.dt.hour
    branch = background & (complaints["channel"] == "branch")
    branch_days = weekday[branch].value_counts(normalize=True).reindex(range(7), fill_value=0.0)
    assert branch_days[5] > 1.3 * branch_days[:5].mean() and branch_days[6] == 0.0, branch_days
    assert hour[branch].between(9, 16).all()
    phone_days = weekday[background & (complaints["channel"] == "phone")].value_counts().reindex(range(7))
    assert phone_days[0] > 1.15 * phone_days[1:5].mean() and phone_days[6] < 0.5 * phone_days[1:5].mean()
    app_hours = hour[complaints["channel"] == "mobile_app"]
    assert app_hours.between(18, 22).sum() > 5 * app_hours.between(0, 5).sum()

    target = complaints["priority"].map({"urgent": 1, "high": 4, "normal": 24, "suggestion": 168})
    late = (complaints["first_response_at"] - opened).dt.total_seconds() / 3600 > target
    known = complaints["first_response_at"].notna()
    weekend = weekday >= 5
    assert late[known & weekend].mean() > late[known & ~weekend].mean() + 0.05
    saturday_branch = known & branch & (weekday == 5)
    assert late[saturday_branch].mean() > late[known & weekend & ~branch].mean()


def test_the_retention_campaign_size_is_an_option_that_changes_only_the_contacts(tmp_path: Path) -> None:
    """`churn generate --contact-share/--control-share`: a bank whose randomised campaign is larger."""
    small, large = tmp_path / "small", tmp_path / "large"
    run(2000, 5, small, "2024-01-01", 8, "parquet")
    run(2000, 5, large, "2024-01-01", 8, "parquet", contact_share=0.1, control_share=0.5)
    few, many = read(small, "contacts"), read(large, "contacts")
    assert len(many) > 4 * len(few)
    assert 0.4 < (many["treatment"] == 0).mean() < 0.6 and (few["treatment"] == 0).mean() < 0.35
    # the same customers, the same truth about them: only the campaign (and what it changed) differs
    pd.testing.assert_frame_equal(read(small, "customers")[["customer_id", "segment", "signup_date"]],
                                  read(large, "customers")[["customer_id", "segment", "signup_date"]])
    pd.testing.assert_series_equal(read(small / "_truth", "customers")["true_contact_effect"],
                                   read(large / "_truth", "customers")["true_contact_effect"])
    with pytest.raises(ValueError, match="contact_share"):
        run(100, 5, tmp_path / "bad", "2024-01-01", 4, "parquet", contact_share=1.5)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_tables_written_in_small_pieces_equal_tables_written_in_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     fmt: str) -> None:
    """A 10-million-customer bank is built and written in pieces of `ROW_GROUP_ROWS` rows (the monthly hazard
    month by month); the texts and branches of each piece are drawn where the whole-table draw puts them.
    Pieces of 97 rows must give the same rows and values as one piece per table (a small bank's case)."""
    import pyarrow.parquet as pq

    import pipelines.generate as generate

    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    counts = run(700, 9, whole, "2024-01-01", 8, fmt)
    monkeypatch.setattr(generate, "ROW_GROUP_ROWS", 97)
    assert run(700, 9, pieces, "2024-01-01", 8, fmt) == counts
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(pieces) for p in pieces.rglob("*") if p.is_file())
    for relative in files:
        if relative.suffix != ".parquet":  # CSV appended piece by piece: the same bytes
            assert (whole / relative).read_bytes() == (pieces / relative).read_bytes(), relative
            continue
        a, b = pq.ParquetFile(whole / relative), pq.ParquetFile(pieces / relative)
        assert a.schema_arrow.equals(b.schema_arrow, check_metadata=True), relative
        pd.testing.assert_frame_equal(a.read().to_pandas(), b.read().to_pandas(), obj=str(relative))
        if a.metadata.num_rows > 97 and relative.stem != "transactions":  # transactions: one group per month
            assert b.metadata.num_row_groups == -(-a.metadata.num_rows // 97), relative
            assert {b.metadata.row_group(i).num_rows for i in range(b.metadata.num_row_groups - 1)} == {97}


@pytest.mark.parametrize("kind", ["continuous", "ties", "signed zeros", "nan"])
def test_the_campaigns_top_scores_are_a_stable_sorts_first_k(kind: str) -> None:
    """`top_scores` picks what `np.argsort(-score, kind="stable")[:k]` picks, in its order: ties in row
    order (a rounded score, 0.0 beside -0.0), NaN last, every k from none to more than the rows."""
    rng = np.random.default_rng(7)
    score = rng.normal(size=5_000)
    if kind == "ties":
        score = np.round(score, 1)
    elif kind == "signed zeros":
        score = np.where(rng.random(len(score)) < 0.5, 0.0, -0.0)
    elif kind == "nan":
        score[rng.random(len(score)) < 0.1] = np.nan
    for k in (0, 1, 2, 75, 2_500, 4_999, 5_000, 5_003):
        expected = np.argsort(-score, kind="stable")[:k]
        assert np.array_equal(top_scores(score, k), expected), k

"""`churn backtest` on the generated bank: lists replayed with models that never see the future."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import sampled_tables, tables_as_of, tables_before
from models.uplift.backtest import list_outcomes, random_list
from pipelines.backtest import backtest_cutoffs, replay, run
from pipelines.io import StageError
from pipelines.tables import load_sampled_tables, load_tables
from tests.pipelines.bank import bank_config, snapshot_bank

CUTOFF = "2024-08-01"


@pytest.fixture(scope="module")
def replayed(generated_bank: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    cfg = bank_config(generated_bank, tmp_path_factory.mktemp("backtest"), light=True)
    return cfg, run(cfg, CUTOFF, CUTOFF)


def test_list_uses_no_data_after_the_cutoff(replayed, generated_bank: Path) -> None:
    cfg, result = replayed
    full = load_tables(cfg)
    cutoff = pd.Timestamp(CUTOFF)
    _, info, lists = replay(tables_before(full, cutoff), cutoff, cfg, None, lambda message: None)
    assert "skipped" not in info and set(lists) == set(result["lists"][CUTOFF]) == {"value_at_risk", "uplift", "random"}
    for name, listed in lists.items():  # the same customers, whatever happened after the cutoff
        assert listed["customer_id"].tolist() == result["lists"][CUTOFF][name]["customer_id"].tolist(), name
    assert len(lists["value_at_risk"]) > 20


def test_backtest_reports_each_list_and_the_lists_beat_random_on_true_value_saved(replayed) -> None:
    cfg, result = replayed
    table = result["table"]
    assert set(table["list"]) == {"value_at_risk", "uplift", "random"}
    assert result["summary"]["ranking_compared"] == ["value_at_risk", "uplift", "random"]
    by = table.set_index("list")
    assert by.loc["uplift", "customers"] == by.loc["random", "customers"] == by.loc["value_at_risk", "customers"]
    print("true value saved:", by["true_value_saved"].round(1).to_dict(), "churners reached:",
          by["churners_reached"].to_dict())
    assert by.loc["value_at_risk", "churners_reached"] > 2 * by.loc["random", "churners_reached"]
    assert by.loc["value_at_risk", "true_value_saved"] > by.loc["random", "true_value_saved"]
    # each replay says whether `churn score` would have trusted its uplift model to rank (uplift.min_qini_lower_bound)
    verdict = result["summary"]["cutoffs"][0]["uplift_ranking_gate"]
    assert verdict == "passed" or verdict.startswith("its held-out Qini"), verdict
    reports = Path(cfg.paths.reports_dir)
    assert pd.read_csv(reports / "backtest.csv").shape[0] == 3 and (reports / "backtest.png").stat().st_size > 0


def test_list_outcomes_by_hand() -> None:
    listed = np.array([True, True, True, False])
    figures = list_outcomes(listed, churned=np.array([1, 0, 1, 1]), value_at_risk=np.array([5.0, 1.0, 2.0, 9.0]),
                            retained_value=np.array([10.0, 20.0, 30.0, 40.0]),
                            campaign_treatment=np.array([0, 1, -1, 0]), true_uplift=np.array([0.1, 0.2, 0.0, 0.5]))
    assert figures["churners_reached"] == 2 and figures["value_at_risk_reached"] == 8.0
    assert figures["estimated_churners_saved"] == pytest.approx(3.0)  # (1 - 0) x 3 listed
    assert figures["true_value_saved"] == pytest.approx(0.1 * 10 + 0.2 * 20)
    assert random_list(2, 10, 1).sum() == 2 and np.array_equal(random_list(2, 10, 1), random_list(2, 10, 1))


def test_default_cutoffs_are_the_latest_with_a_full_horizon(replayed) -> None:
    cfg, _ = replayed
    full = load_tables(cfg)
    cutoffs = backtest_cutoffs(full, cfg, None, None)
    assert len(cutoffs) == cfg.backtest.cutoffs
    assert all(c + pd.Timedelta(days=cfg.labels.horizon_days) <= tables_as_of(full) for c in cutoffs)
    assert [c.day for c in cutoffs] == [1] * len(cutoffs)


def test_a_bank_above_max_training_customers_is_replayed_on_its_training_sample(generated_bank: Path,
                                                                              tmp_path: Path) -> None:
    """Above `labels.max_training_customers` the backtest holds the training sample's customers only: their
    rows read in batches are exactly the whole tables cut to the sample (the end of the data from every
    row), and the replay lists sampled customers at each team's capacity scaled to the sample's share."""
    cfg = bank_config(generated_bank, tmp_path, light=True)
    whole = load_tables(cfg)
    limit = len(whole.customers) // 4
    cfg = cfg.model_copy(update={"labels": cfg.labels.model_copy(update={"max_training_customers": limit})})
    tables, sample = load_sampled_tables(cfg, batch_rows=50_000)  # several batches of transactions, one of contacts
    cut, _ = sampled_tables(whole, cfg.labels)
    assert sample is not None and sample.kept == limit and sample.of == len(whole.customers)
    assert tables.as_of == whole.as_of
    for name in ("customers", "transactions", "complaints", "surveys", "contacts"):
        mine, theirs = getattr(tables, name), getattr(cut, name).reset_index(drop=True)
        assert sample.event_rows.get(name, (len(mine), 0))[0] == len(mine)
        pd.testing.assert_frame_equal(mine, theirs, check_categorical=False, obj=name)
        for column in mine.columns:  # levels: those the sample uses, sorted, as reading the cut files would give
            if isinstance(mine[column].dtype, pd.CategoricalDtype):
                assert list(mine[column].cat.categories) == sorted(theirs[column].dropna().astype("str").unique())
    # one batch or many, the same levels: those the kept rows use (a level only dropped customers used goes)
    one_batch, _ = load_sampled_tables(cfg, batch_rows=10_000_000)
    for name in ("transactions", "complaints"):
        pd.testing.assert_frame_equal(getattr(one_batch, name), getattr(tables, name), obj=name)

    result = run(cfg, CUTOFF, CUTOFF)
    summary = result["summary"]
    assert summary["sample"]["customers"] == limit and summary["sample"]["of"] == len(whole.customers)
    configured = cfg.scoring.selection.capacity
    assert summary["sample"]["capacity_configured"] == configured
    assert summary["capacity"] == {owner: None if c is None else max(1, round(c * sample.share)) if c else 0
                                   for owner, c in configured.items()}
    kept = set(tables.customers["customer_id"])
    listed = result["lists"][CUTOFF]
    assert len(listed["value_at_risk"]) > 0
    assert all(set(frame["customer_id"]) <= kept for frame in listed.values())


def test_a_training_sample_that_would_not_fit_is_refused_before_the_events_are_read(generated_bank: Path,
                                                                                    tmp_path: Path) -> None:
    cfg = bank_config(generated_bank, tmp_path, light=True)
    cfg = cfg.model_copy(update={"labels": cfg.labels.model_copy(update={"max_training_customers": 5_000}),
                                 "features": cfg.features.model_copy(update={"pandas_max_rows": 50_000})})
    with pytest.raises(StageError, match=r"sample of 5,000 customers \(labels.max_training_customers\).*"
                                         r"features.pandas_max_rows"):
        load_sampled_tables(cfg)


def test_a_csv_event_table_counts_whole_against_the_memory_limit_of_a_sample(generated_bank: Path,
                                                                             tmp_path: Path) -> None:
    """CSV is read whole before the sample's rows are kept: its rows count in full, and the refusal says
    that Parquet would hold only the sample's rows."""
    cfg = bank_config(generated_bank, tmp_path, light=True)
    pd.read_parquet(generated_bank / "transactions.parquet").to_csv(tmp_path / "transactions.csv", index=False)
    limits = {"labels": cfg.labels.model_copy(update={"max_training_customers": 5_000}),
              "features": cfg.features.model_copy(update={"pandas_max_rows": 300_000})}
    load_sampled_tables(cfg.model_copy(update=limits))  # Parquet: about a quarter of the rows, it fits
    tables = {**cfg.data.tables, "transactions": cfg.data.tables["transactions"].model_copy(
        update={"path": tmp_path / "transactions.csv"})}
    as_csv = cfg.model_copy(update={**limits, "data": cfg.data.model_copy(update={"tables": tables})})
    with pytest.raises(StageError, match=r"transactions is CSV, read whole.*Parquet"):
        load_sampled_tables(as_csv)


def test_a_replay_samples_its_training_rows_as_churn_train_does(generated_bank: Path, tmp_path: Path) -> None:
    """Above `model.sampling.max_training_rows` a replay keeps every fit churner and weights the sampled
    non-churners by the inverse of their rate (what `churn train` does), so it stays calibrated; below
    it every row is kept unweighted."""
    from models.data import WEIGHT_COLUMN
    from pipelines.backtest import sampled_replay_rows

    cfg = bank_config(generated_bank, tmp_path, light=True)
    rng = np.random.default_rng(3)
    n = 40_000
    table = pd.DataFrame({"customer_id": [f"C{i % 10_000:05d}" for i in range(n)],
                          "cutoff": pd.to_datetime("2024-01-01") + pd.to_timedelta(np.arange(n) // 10_000 * 31, "D"),
                          "churned": (rng.random(n) < 0.05).astype(int), "x": rng.random(n)})
    calibration = np.asarray(table["customer_id"].str[-1].isin(["0", "1"]))
    same, same_cal, unsampled = sampled_replay_rows(table, calibration, cfg)
    assert not unsampled.active and same is table and WEIGHT_COLUMN not in same.columns
    small = cfg.model_copy(update={"model": cfg.model.model_copy(update={"sampling": cfg.model.sampling.model_copy(
        update={"max_training_rows": 10_000})})})
    kept, kept_cal, sample = sampled_replay_rows(table, calibration, small)
    assert sample.active and len(kept) == sample.kept < n and len(kept_cal) == len(kept)
    fit_churners = int(((~calibration) & (table["churned"].to_numpy() == 1)).sum())
    assert int(((~kept_cal) & (kept["churned"].to_numpy() == 1)).sum()) == fit_churners  # every fit churner
    fit_stayers = (~kept_cal) & (kept["churned"].to_numpy() == 0)
    weights = kept[WEIGHT_COLUMN].to_numpy()
    assert np.allclose(weights[fit_stayers], 1 / sample.rate) and np.all(weights[~fit_stayers] == 1)
    expected = int(((~calibration) & (table["churned"].to_numpy() == 0)).sum())
    assert abs(weights[fit_stayers].sum() - expected) < 0.05 * expected  # the weighted stayers stand for them all
    assert set(kept["customer_id"][kept_cal]) <= set(table["customer_id"][calibration])


def test_a_snapshots_replayed_lists_rank_by_the_value_in_its_customers_column(tmp_path: Path) -> None:
    """Snapshot data (customers with closures and a monthly charge, contacts; no transactions): the replayed
    value-at-risk list ranks by risk x the customers column, as `churn score` does; before, a replay knew no
    value there and its lists came out empty."""
    raw = snapshot_bank(tmp_path, 200.0, 10)
    customers = pd.read_parquet(raw / "customers.parquet")
    cfg = bank_config(raw, tmp_path / "work", light=True)
    data = cfg.data.model_copy(update={"tables": {name: cfg.data.tables[name] for name in ("customers", "contacts")}})
    cfg = cfg.model_copy(update={"data": data, "labels": cfg.labels.model_copy(update={"customer_value_column": "monthly_charge"}),
                                 "evaluation": cfg.evaluation.model_copy(update={"truth_dir": None})})
    full = load_tables(cfg)
    cutoff = pd.Timestamp("2024-04-01")
    lines, info, lists = replay(tables_before(full, cutoff), cutoff, cfg, None, lambda message: None)
    assert "skipped" not in info, info
    by = {line["list"]: line for line in lines}
    listed = by["value_at_risk"]
    assert listed["customers"] > 10 and listed["value_at_risk_reached"] > 0, listed
    assert listed["value_at_risk_reached"] > 2 * by["random"]["value_at_risk_reached"]
    assert set(lists["value_at_risk"]["customer_id"]) <= set(customers["customer_id"])
    # without contacts there is no uplift list, and the summary compares only the lists it made
    alone = cfg.model_copy(update={"data": cfg.data.model_copy(update={"tables": {"customers": cfg.data.tables["customers"]}})})
    summary = run(alone, "2024-04-01", "2024-04-01")["summary"]
    assert summary["ranking_compared"] == ["value_at_risk", "random"], summary["ranking_compared"]
    assert summary["value_source"] == "customers_column"  # the console names the list by what it ranks on
    assert summary["totals"]["value_at_risk"]["value_at_risk_reached"] > 0


def test_a_replay_with_no_churn_before_its_cutoff_says_why_it_is_skipped(tmp_path: Path) -> None:
    """A snapshot whose closures all fall after the replayed cutoff (as a snapshot labelled for one period
    does): the replay is skipped, naming what the training rows hold, their cutoffs and the key."""
    raw = snapshot_bank(tmp_path, 20.0, 1)
    customers = pd.read_parquet(raw / "customers.parquet")
    closed = pd.to_datetime(customers["closed_date"])
    customers["closed_date"] = closed.where(closed >= pd.Timestamp("2024-03-01"))
    customers.to_parquet(raw / "customers.parquet", index=False)
    cfg = bank_config(raw, tmp_path / "work", light=True)
    data = cfg.data.model_copy(update={"tables": {"customers": cfg.data.tables["customers"]}})
    cfg = cfg.model_copy(update={"data": data, "evaluation": cfg.evaluation.model_copy(update={"truth_dir": None})})
    cutoff = pd.Timestamp("2024-03-01")
    lines, info, lists = replay(tables_before(load_tables(cfg), cutoff), cutoff, cfg, None, lambda message: None)
    assert lines == [] and lists == {}
    assert info["skipped"].startswith("the training rows before it hold one churn class: no churner in "), info
    assert "backtest.training_cutoffs" in info["skipped"] and "rows of the training cutoffs 2023-" in info["skipped"]

"""`churn effects` on a generated bank: contacted vs randomised control, checked against the generator's truth;
the window outcomes on the pandas and DuckDB engines (the same files), and a snapshot's care segments."""

from __future__ import annotations

from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.catalogue import reason_templates
from features.contract import Tables
from features.validation import ValidationFailed
from models.uplift.data import build_uplift_table
from pipelines.cli import EXIT_REFUSED, app
from pipelines.config import Config
from pipelines.effects import EFFECTS_CSV, EFFECTS_JSON, EffectInputs, event_table_in_memory, window_outcomes
from pipelines.effects import run as effects
from pipelines.features import run as build_features
from pipelines.tables import input_rows, load_tables
from pipelines.train import run as train
from pipelines.validate import run as validate
from tests.pipelines.bank import bank_config
from tests.pipelines.bank import snapshot_bank as write_snapshot_bank


def write_uplift_rows(cfg: Config) -> pd.DataFrame:
    rows, _ = build_uplift_table(load_tables(cfg), cfg.features, cfg.labels, cfg.uplift)
    Path(cfg.paths.features_dir).mkdir(parents=True, exist_ok=True)
    rows.to_parquet(Path(cfg.paths.features_dir) / "uplift.parquet", index=False)
    return rows


@pytest.fixture(scope="module")
def measured(generated_bank: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict]:
    cfg = bank_config(generated_bank, tmp_path_factory.mktemp("effects"))
    write_uplift_rows(cfg)
    return cfg, effects(cfg)


def test_effect_report_recovers_the_generators_average_contact_effect(measured) -> None:
    cfg, result = measured
    summary = result["summary"]
    churn = summary["churn_prevented"]
    truth = summary["generator_average_effect"]["value"]
    assert churn["low"] <= truth <= churn["high"]
    assert churn["high"] - churn["low"] < 0.06  # an interval that says something at this size
    assert truth > 0  # the generator plants contacts that keep customers
    table = result["table"]
    assert set(table["outcome"]) == {"churned", "value_kept", "satisfaction", "repurchase"}
    assert {"all", "segment", "action"} <= set(table["group"])
    assert (table.loc[table["effect"].notna(), "needed_contacted_per_test"].dropna() > 0).all()
    saved = pd.read_csv(Path(cfg.paths.reports_dir) / "effects.csv")
    assert len(saved) == len(table) and (Path(cfg.paths.reports_dir) / "effects.png").stat().st_size > 0


def test_rerun_writes_the_same_table(measured) -> None:
    cfg, _ = measured
    before = (Path(cfg.paths.reports_dir) / "effects.csv").read_bytes()
    effects(cfg)
    assert (Path(cfg.paths.reports_dir) / "effects.csv").read_bytes() == before


def test_no_control_group_is_said_not_guessed(generated_bank: Path, tmp_path: Path) -> None:
    contacts = pd.read_parquet(generated_bank / "contacts.parquet").assign(treatment=1)
    contacts.to_parquet(tmp_path / "contacts.parquet", index=False)
    cfg = bank_config(generated_bank, tmp_path, contacts=tmp_path / "contacts.parquet")
    Path(cfg.paths.features_dir).mkdir(parents=True)
    pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "treatment": pd.Series([], dtype="int64")}).to_parquet(
        Path(cfg.paths.features_dir) / "uplift.parquet")
    result = effects(cfg)
    assert result["summary"]["status"] == "none"
    assert "no randomised control group" in result["summary"]["why"]


# ------------------------------------------------------------------ the window outcomes on every engine


def test_window_outcomes_count_half_open_windows_positive_purchases_and_answered_csat() -> None:
    """Repurchase and satisfaction over [cutoff, cutoff + horizon): an event at the cutoff counts, one at the
    window's end or before the cutoff does not; only a positive amount is a purchase; an empty CSAT is no
    answer. A table without csat (or no table) leaves the outcome out."""
    rows = pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
                         "cutoff": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-01", "2024-01-01"])})
    times = ["2024-01-01 00:00:00", "2024-02-10 00:00:00", "2024-01-31 00:00:00", "2023-12-31 23:59:59",
             "2024-01-15 00:00:00", "2024-01-16 00:00:00"]
    transactions = pd.DataFrame({"customer_id": pd.Categorical(["a", "a", "b", "b", "b", "b"]),
                                 "timestamp": pd.to_datetime(times), "amount": [5.0, -3.0, 10.0, 10.0, 0.0, np.nan]})
    surveys = pd.DataFrame({"customer_id": ["a", "a", "a", "b", "c"],
                            "answered_at": pd.to_datetime(["2024-01-05", "2024-01-06", "2024-01-07", "2024-01-31",
                                                           "2024-01-20"]),
                            "csat": [4.0, 3.0, np.nan, 5.0, np.nan]})
    ids = rows["customer_id"]
    inputs = EffectInputs(Tables(customers=pd.DataFrame()), ibis.duckdb.connect(),
                          event_table_in_memory(transactions, "timestamp", ("amount",), ids),
                          event_table_in_memory(surveys, "answered_at", ("csat",), ids), "pandas")
    found = window_outcomes(inputs, rows, 30)
    assert found["repurchase"].tolist() == [1.0, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(found["satisfaction"].to_numpy(), [3.5, np.nan, np.nan, np.nan])
    unanswered = event_table_in_memory(surveys.drop(columns="csat"), "answered_at", ("csat",), ids)
    only_surveys = EffectInputs(inputs.tables, inputs.con, None, unanswered, "pandas")
    assert list(window_outcomes(only_surveys, rows, 30).columns) == []


def _with_features(cfg: Config, **settings: object) -> Config:
    return cfg.model_copy(update={"features": cfg.features.model_copy(update=settings)})


def _write_config(cfg: Config, folder: Path) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return path


def test_duckdb_engine_writes_the_pandas_engines_effects_without_loading_the_events(measured, tmp_path: Path) -> None:
    """A bank whose transactions are above `features.pandas_max_rows` (set here just above the customers and
    contacts): the pandas engine refuses before reading (exit 4), `auto` takes duckdb, which loads only the
    customers and contacts, and writes effects.csv and effects.json byte for byte as the pandas engine does."""
    cfg, _ = measured
    reports = Path(cfg.paths.reports_dir)
    effects(_with_features(cfg, engine="pandas"))
    expected = {name: (reports / name).read_bytes() for name in (EFFECTS_CSV, EFFECTS_JSON)}
    small = input_rows(cfg, ["customers", "contacts"])
    assert input_rows(cfg, ["transactions"]) > small
    bounded = _with_features(cfg, engine="auto", pandas_max_rows=small,
                             duckdb=cfg.features.duckdb.model_copy(update={"threads": 2}))
    pinned = _write_config(_with_features(bounded, engine="pandas"), tmp_path)
    refused = CliRunner().invoke(app, ["effects", "--config", str(pinned)])
    assert refused.exit_code == EXIT_REFUSED, (refused.output, refused.exception)
    assert "features.pandas_max_rows" in refused.output and "Traceback" not in refused.output
    for name, before in expected.items():  # the refusal wrote nothing
        assert (reports / name).read_bytes() == before, name
    validate(bounded)
    said: list[str] = []
    result = effects(bounded, said.append)
    assert result["summary"]["status"] == "measured"
    assert any(m.startswith("features.engine auto: duckdb") for m in said), said
    assert ("effects on duckdb: only contacts and customers loaded into pandas; the window outcomes measured by "
            "duckdb from the transactions and surveys files") in said, said
    for name, before in expected.items():
        assert (reports / name).read_bytes() == before, name


def test_the_pandas_engine_reads_only_the_tables_and_columns_the_outcomes_use(measured, tmp_path: Path) -> None:
    """`churn effects` on pandas never reads the complaints (their dates still end the data) nor the event
    columns its outcomes do not use: a complaint without a category and a survey's NPS of 99, which fail
    `churn validate`, stop nothing, and the stage writes the clean bank's files byte for byte."""
    cfg, _ = measured
    pandas_cfg = _with_features(cfg, engine="pandas")
    reports = Path(cfg.paths.reports_dir)
    effects(pandas_cfg)
    expected = {name: (reports / name).read_bytes() for name in (EFFECTS_CSV, EFFECTS_JSON)}
    raw = tmp_path / "raw"
    raw.mkdir()
    tables = {}
    for name, source in cfg.data.tables.items():
        frame = pd.read_parquet(source.path)
        if name == "complaints":
            frame["category"] = frame["category"].where(frame.index != 3, None)
        if name == "surveys":
            frame["nps"] = frame["nps"].where(frame.index != 5, 99.0)
        frame.to_parquet(raw / f"{name}.parquet", index=False)
        tables[name] = source.model_copy(update={"path": raw / f"{name}.parquet"})
    broken = pandas_cfg.model_copy(update={
        "data": cfg.data.model_copy(update={"tables": tables}),
        "paths": cfg.paths.model_copy(update={"reports_dir": str(tmp_path / "reports")})})
    with pytest.raises(ValidationFailed) as failed:  # what the stage does not read is `churn validate`'s to find
        validate(broken)
    assert {("complaints", "category"), ("surveys", "nps")} <= {(p.table, p.column) for p in failed.value.problems}
    said: list[str] = []
    result = effects(broken, said.append)
    assert result["summary"]["status"] == "measured"
    assert any("contacts, customers, surveys, transactions loaded into pandas" in m for m in said), said
    for name, before in expected.items():
        assert (tmp_path / "reports" / name).read_bytes() == before, name


@pytest.fixture(scope="module")
def snapshot_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Snapshot-shaped data (`tests.pipelines.bank.snapshot_bank`), monthly charges 20 to 119."""
    return write_snapshot_bank(tmp_path_factory.mktemp("snapshot"), 20.0, 1)


def test_care_segments_of_a_snapshot_take_the_value_from_the_customers_column(snapshot_bank: Path,
                                                                               tmp_path: Path) -> None:
    """On snapshot data the champion churn model and the customers' value column place past contacts in care
    segments, the high-value ones included (a value left out makes nobody high value); duckdb, with no event
    table to read, writes the same files."""
    cfg = bank_config(snapshot_bank, tmp_path / "work", light=True)
    data = cfg.data.model_copy(update={"tables": {name: cfg.data.tables[name] for name in ("customers", "contacts")}})
    labels = cfg.labels.model_copy(update={"customer_value_column": "monthly_charge",
                                           "cutoffs": cfg.labels.cutoffs.model_copy(update={"count": 4})})
    quick = {"tuning": cfg.model.tuning.model_copy(update={"enabled": False}),
             "time_to_churn": cfg.model.time_to_churn.model_copy(update={"enabled": False})}
    model = cfg.model.model_copy(update=quick)
    uplift = cfg.uplift.model_copy(update={"learners": ("t_learner",), "bootstrap": 10})
    cfg = cfg.model_copy(update={"data": data, "labels": labels, "model": model, "uplift": uplift,
                                 "evaluation": cfg.evaluation.model_copy(update={"truth_dir": None})})
    build_features(cfg)
    train(cfg, templates=reason_templates(cfg.features))
    result = effects(_with_features(cfg, engine="pandas"))
    table = result["table"]
    segments = set(table.loc[table["group"] == "care_segment", "level"])
    assert {"high_value_at_risk", "high_value_established"} & segments, segments
    assert set(table["outcome"]) == {"churned", "value_kept"}  # no transactions or surveys: nothing else to measure
    reports = Path(cfg.paths.reports_dir)
    expected = {name: (reports / name).read_bytes() for name in (EFFECTS_CSV, EFFECTS_JSON)}
    validate(cfg)
    said: list[str] = []
    effects(_with_features(cfg, engine="duckdb"), said.append)
    assert "effects on duckdb: only contacts and customers loaded into pandas" in said, said
    for name, before in expected.items():
        assert (reports / name).read_bytes() == before, name

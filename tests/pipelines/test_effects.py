"""`churn effects` on a generated bank: contacted vs randomised control, checked against the generator's truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.uplift.data import build_uplift_table
from pipelines.config import Config
from pipelines.effects import run as effects
from pipelines.tables import load_tables
from tests.pipelines.bank import bank_config


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

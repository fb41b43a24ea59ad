"""The rules stage end to end: files on disk, real table loading and validation, real MLflow (sqlite)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from models.chains import CHAIN_COLUMNS, PAIR_COLUMNS, ROOT_COLUMNS
from models.rules import OUTCOME_RULE_COLUMNS, RULE_COLUMNS, RuleSettings
from pipelines.config import Config
from pipelines.io import file_sha256
from pipelines.rules import (CHAINS_FILE, CHURN_RULES_FILE, DIAGRAM_FILE, PAIRS_FILE, ROOTS_FILE, RULES_FILE,
                             SUMMARY_FILE, run)
from tests.models.test_rules import planted_data

TABLE_FILES = {RULES_FILE: RULE_COLUMNS, PAIRS_FILE: PAIR_COLUMNS, CHAINS_FILE: CHAIN_COLUMNS,
               ROOTS_FILE: ROOT_COLUMNS, CHURN_RULES_FILE: OUTCOME_RULE_COLUMNS}
RISKY_ROOT = "=app_update_issue"


def make_config(root: Path, with_complaints: bool = True, **rules: object) -> Config:
    """Planted complaint data written as Parquet, a config reading it, and a sqlite MLflow store."""
    complaints, customers = planted_data(n_customers=1200, seed=8)
    # A category a spreadsheet would run as a formula, to check the CSV files are Excel-safe.
    complaints = complaints.assign(category=complaints["category"].replace("app_update_issue", RISKY_ROOT))
    hours = pd.to_timedelta(complaints.index % 97, unit="h")
    complaints = complaints.assign(
        priority=pd.Series(np.array(["high", "normal", "urgent"])[np.arange(len(complaints)) % 3], dtype="str"),
        first_response_at=(complaints["opened_at"] + hours / 4).astype("datetime64[us]"),
        resolved_at=(complaints["opened_at"] + hours).astype("datetime64[us]"),
        text=pd.Series(["private words of a customer"] * len(complaints), dtype="str"),
    )
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    customers.to_parquet(data / "customers.parquet", index=False)
    complaints.to_parquet(data / "complaints.parquet", index=False)
    tables = {"customers": {"path": str(data / "customers.parquet")}}
    if with_complaints:
        tables["complaints"] = {"path": str(data / "complaints.parquet")}
    return Config.model_validate({
        "data": {"tables": tables, "as_of": "2025-01-01"},
        "paths": {"outputs_dir": str(root / "outputs"), "reports_dir": str(root / "reports"),
                  "features_dir": str(root / "features")},
        "tracking": {"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_location": str(root / "artifacts"),
                     "experiment": "test-rules"},
        "rules": rules,
    })


def read_csv_text(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_rules_stage_writes_every_output_and_logs_to_mlflow(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_config(tmp_path, tags=("priority",))
    messages: list[str] = []
    result = run(cfg, progress=messages.append)
    outputs = tmp_path / "outputs"

    for name, columns in TABLE_FILES.items():
        assert list(pd.read_csv(outputs / name).columns) == list(columns), name
    chains = read_csv_text(outputs / CHAINS_FILE)
    assert chains[0]["chain"] == "'" + " -> ".join([RISKY_ROOT, "system_lag", "transfer_failure"])
    roots = read_csv_text(outputs / ROOTS_FILE)
    assert roots[0]["category"] == "'" + RISKY_ROOT
    for name in TABLE_FILES:  # no cell a spreadsheet would run as a formula
        for row in read_csv_text(outputs / name):
            assert not any(value.startswith(("=", "+", "@")) for value in row.values()), (name, row)
    churn = pd.read_csv(outputs / CHURN_RULES_FILE)
    assert "churned" in set(churn["outcome"]) and (churn["lift"] >= 1.2).all()
    assert (outputs / DIAGRAM_FILE).stat().st_size > 10_000

    summary = json.loads((tmp_path / "reports" / SUMMARY_FILE).read_text())
    assert summary["counts"]["chains"] == len(chains) and summary["counts"]["baskets"] > 1000
    assert summary["counts"]["items"] == 9 + 3  # nine categories and three priority tags
    assert summary["settings"]["tags"] == ["priority"] and summary["churn_definition"]["horizon_days"] == 90
    assert summary["top"]["chains"][0]["chain"].startswith(RISKY_ROOT)
    every_output = "".join(p.read_text(encoding="utf-8") for p in outputs.glob("*.csv"))
    assert "private words" not in every_output and "C0" not in every_output  # no complaint text, no customer ids
    assert any("baskets" in m for m in messages)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run_data = client.get_run(result["run_id"])
    assert run_data.info.status == "FINISHED" and run_data.data.tags["stage"] == "rules"
    assert run_data.data.params["rules.window_days"] == "30"
    assert run_data.data.params["rules.algorithm"] == "fpgrowth"
    assert run_data.data.metrics["rules.chains"] == len(chains)
    assert run_data.data.metrics["rules.top_lift"] > 1.5
    logged = {Path(a.path).name for a in client.list_artifacts(result["run_id"], "rules")}
    assert logged == {*TABLE_FILES, DIAGRAM_FILE, SUMMARY_FILE}

    # Same data and config: byte-identical outputs.
    digests = {p.name: file_sha256(p) for p in outputs.iterdir() if p.is_file()}
    run(cfg)
    assert {p.name: file_sha256(p) for p in outputs.iterdir() if p.is_file()} == digests


def test_rules_stage_apriori_gives_the_same_tables(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fp = make_config(tmp_path / "fp")
    ap = make_config(tmp_path / "ap", algorithm="apriori")
    run(fp)
    run(ap)
    for name in TABLE_FILES:
        assert (tmp_path / "fp" / "outputs" / name).read_bytes() == (tmp_path / "ap" / "outputs" / name).read_bytes()


def test_rules_stage_without_complaints_writes_empty_tables_and_says_why(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_config(tmp_path, with_complaints=False)
    result = run(cfg)
    for name, columns in TABLE_FILES.items():
        frame = pd.read_csv(tmp_path / "outputs" / name)
        assert frame.empty and list(frame.columns) == list(columns)
    summary = json.loads((tmp_path / "reports" / SUMMARY_FILE).read_text())
    assert summary["messages"] == ["no complaints table: nothing to mine"]
    assert summary["counts"]["top_lift"] is None
    assert (tmp_path / "outputs" / DIAGRAM_FILE).stat().st_size > 5_000
    assert result["summary"]["counts"]["baskets"] == 0


def test_default_config_without_rules_section_uses_the_defaults(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rules_cfg = make_config(tmp_path)
    plain = Config.model_validate(rules_cfg.model_dump(exclude={"rules"}))
    result = run(plain)
    assert result["summary"]["settings"] == RuleSettings().model_dump(mode="json")
    with pytest.raises(ValidationError, match=r"rules\.window_dayz"):
        Config.model_validate({**rules_cfg.model_dump(), "rules": {"window_dayz": 3}})

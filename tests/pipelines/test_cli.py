"""The `churn` command as users run it: help texts, config errors, and real runs of rules, score and run.

End-to-end tests start the real `churn` entry point of the virtualenv in a subprocess, with
data written to tmp_path and a sqlite MLflow store there (MLFLOW_TRACKING_URI unset).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from pipelines.cli import EXIT_CONFIG, EXIT_REFUSED, LIST_HEAD_ROWS, app
from pipelines.rules import CHAINS_FILE, CHURN_RULES_FILE, DIAGRAM_FILE, PAIRS_FILE, ROOTS_FILE, RULES_FILE, SUMMARY_FILE
from pipelines.score import LIST_FILE, MANIFEST_FILE, SCORES_FILE
from tests.features.factories import random_tables
from tests.models.test_rules import AS_OF, CHAIN, planted_data

CHURN = Path(sys.executable).parent / "churn"
COMMANDS = ("init", "generate", "validate", "features", "train", "score", "rules", "complaints", "effects", "backtest",
            "run", "report")
RULES_OUTPUTS = (RULES_FILE, PAIRS_FILE, CHAINS_FILE, ROOTS_FILE, CHURN_RULES_FILE, DIAGRAM_FILE)


def churn(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run the installed `churn` command with a wide terminal and no MLFLOW_TRACKING_URI."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "CHURN_CONFIG")}
    env["COLUMNS"] = "250"
    return subprocess.run([str(CHURN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def words(text: str) -> str:
    """Text with runs of whitespace collapsed, so wrapped help lines compare as one line."""
    return " ".join(text.split())


def write_config(path: Path, root: Path, tables: dict[str, dict[str, str]], **sections: object) -> Path:
    """A YAML config reading `tables`, writing under `root`, tracking to a sqlite store in `root`."""
    raw = {
        "data": {"tables": tables},
        "paths": {"features_dir": str(root / "features"), "outputs_dir": str(root / "outputs"),
                  "reports_dir": str(root / "reports")},
        "tracking": {"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_location": str(root / "artifacts"),
                     "experiment": "test-cli"},
        **sections,
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """An in-process runner; CHURN_CONFIG (set by the CLI) and MLflow's env are restored after the test."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CHURN_CONFIG", "unset")
    monkeypatch.setenv("COLUMNS", "250")
    return CliRunner()


# ---------------------------------------------------------------- help


def test_installed_churn_command_lists_every_stage_with_an_example(tmp_path: Path) -> None:
    done = churn("--help", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    text = words(done.stdout)
    for name in COMMANDS:
        assert f"│ {name} " in done.stdout, name
    assert "Example:" in text and "churn score --config configs/default.yaml" in text


def test_the_command_list_is_the_one_tested() -> None:
    assert {c.name for c in typer.main.get_command(app).commands.values()} == set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_subcommand_help_shows_an_example(runner: CliRunner, name: str) -> None:
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    text = words(result.stdout)
    assert "Example" in text, text
    assert f"churn {name} -" in text, text  # an example of this very command, with options


# ---------------------------------------------------------------- config errors


@pytest.mark.parametrize(("command", "section", "key"), [
    ("score", {"scoring": {"selection": {"capacityy": {"care_team": 10}}}}, "scoring.selection.capacityy"),
    ("score", {"scoring": {"reasons": {"exact_limit": -1}}}, "scoring.reasons.exact_limit"),
    ("score", {"scoring": {"segments": {"churn_warning_probability": 1.5}}},
     "scoring.segments.churn_warning_probability"),
    ("rules", {"rules": {"window_dayz": 10}}, "rules.window_dayz"),
    ("rules", {"rules": {"algorithm": "eclat"}}, "rules.algorithm"),
    ("run", {"rules": {"min_support": 0}}, "rules.min_support"),
    ("complaints", {"complaints": {"forecast": {"horizon_weekz": 8}}}, "complaints.forecast.horizon_weekz"),
    ("complaints", {"complaints": {"staffing": {"handling_hours": {"urgent": 0}}}},
     "complaints.staffing.handling_hours"),
    ("score", {"scoring": {"ranking": "by_magic"}}, "scoring.ranking"),
    ("score", {"scoring": {"holdout": {"share": 0.9}}}, "scoring.holdout.share"),
    ("effects", {"uplift": {"treatment_window_days": 0}}, "uplift.treatment_window_days"),
    ("backtest", {"backtest": {"cutoffs": 0}}, "backtest.cutoffs"),
])
def test_bad_key_in_scoring_or_rules_exits_2_naming_the_key(runner: CliRunner, tmp_path: Path, command: str,
                                                            section: dict, key: str) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,signup_date\nC1,2024-01-01\n")
    config = write_config(tmp_path / "bad.yaml", tmp_path, {"customers": {"path": str(customers)}}, **section)
    result = runner.invoke(app, [command, "--config", str(config)])
    assert result.exit_code == EXIT_CONFIG, result.output
    assert "config error" in result.stderr
    assert f"- {key}" in words(result.stderr), result.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()


def test_misspelt_nested_key_is_named_in_full(runner: CliRunner, tmp_path: Path) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,signup_date\nC1,2024-01-01\n")
    config = write_config(tmp_path / "bad.yaml", tmp_path, {"customers": {"path": str(customers)}},
                          scoring={"playbook": {"actions": {"new": {"chanel": "phone"}}}})
    result = runner.invoke(app, ["score", "--config", str(config)])
    assert result.exit_code == EXIT_CONFIG
    assert "scoring.playbook.actions.new.chanel: unknown key" in words(result.stderr), result.stderr


def test_bad_dates_and_stage_orders_are_usage_errors(runner: CliRunner, tmp_path: Path) -> None:
    config = str(tmp_path / "never-read.yaml")
    result = runner.invoke(app, ["score", "--config", config, "--as-of", "31/03/2025"])
    assert result.exit_code == 2 and "--as-of" in result.output and "YYYY-MM-DD" in words(result.output)
    result = runner.invoke(app, ["run", "--config", config, "--from", "rules", "--to", "score"])
    assert result.exit_code == EXIT_CONFIG and "--from rules comes after --to score" in result.stderr


# ---------------------------------------------------------------- real runs


def test_rules_command_mines_planted_chain_and_writes_every_output(tmp_path: Path) -> None:
    complaints, customers = planted_data(n_customers=1000, seed=11)
    data = tmp_path / "data"
    data.mkdir()
    complaints.to_parquet(data / "complaints.parquet", index=False)
    customers.to_parquet(data / "customers.parquet", index=False)
    config = write_config(tmp_path / "config.yaml", tmp_path,
                          {"customers": {"path": str(data / "customers.parquet")},
                           "complaints": {"path": str(data / "complaints.parquet")}})
    raw = yaml.safe_load(config.read_text())
    raw["data"]["as_of"] = str(AS_OF.date())
    config.write_text(yaml.safe_dump(raw))

    done = churn("rules", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in RULES_OUTPUTS:
        assert (tmp_path / "outputs" / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "reports" / SUMMARY_FILE).read_text())
    chain = " -> ".join(CHAIN)
    assert summary["top"]["chains"][0]["chain"] == chain
    assert "complaint patterns" in done.stdout and chain in done.stdout
    assert f"{summary['counts']['baskets']:,}" in done.stdout
    assert str(tmp_path / "reports" / SUMMARY_FILE) in words(done.stdout)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    [run] = client.search_runs([client.get_experiment_by_name("test-cli").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["stage"] == "rules"


def test_run_then_score_prints_the_list_head_and_requested_reasons(tmp_path: Path) -> None:
    """`churn run` through score and rules on small random data, then `churn score` with its options."""
    tables = random_tables(5, n_customers=800, transactions=32_000, complaints=1_600, surveys=800, contacts=400)
    data = tmp_path / "data"
    data.mkdir()
    sources = {}
    for name in ("customers", "transactions", "complaints", "surveys", "contacts"):
        getattr(tables, name).to_parquet(data / f"{name}.parquet", index=False)
        sources[name] = {"path": str(data / f"{name}.parquet")}
    config = write_config(
        tmp_path / "config.yaml", tmp_path, sources,
        features={"static_features": ["segment", "products_held"]},
        labels={"cutoffs": {"count": 4}},
        model={"booster": {"max_rounds": 50}, "value_booster": {"max_rounds": 50}},
        scoring={"selection": {"capacity": {"relationship_manager": 5, "care_team": 20, "digital": 50,
                                            "complaint_handling": None}}},
    )
    raw = yaml.safe_load(config.read_text())
    raw["data"]["as_of"] = str(tables.as_of.date())
    config.write_text(yaml.safe_dump(raw))
    outputs = tmp_path / "outputs"

    done = churn("run", "--config", str(config), "--to", "rules", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in ("validate", "features", "train", "score", "rules"):
        assert f"stage {stage}" in done.stderr
    assert "stage report" not in done.stderr
    for name in (SCORES_FILE, LIST_FILE, MANIFEST_FILE, *RULES_OUTPUTS):
        assert (outputs / name).is_file(), name
    first_list = (outputs / LIST_FILE).read_bytes()

    listed = pd.read_csv(outputs / LIST_FILE, dtype={"customer_id": "str"}, keep_default_na=False)
    scores = pd.read_parquet(outputs / SCORES_FILE)
    assert len(listed) > LIST_HEAD_ROWS
    top = listed["customer_id"].iloc[0]
    outside = scores.loc[~scores["selected"], "customer_id"].iloc[0]
    done = churn("score", "--config", str(config), "--customer", top, "--customer", outside,
                 "--customer", "nobody", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (outputs / LIST_FILE).read_bytes() == first_list  # same data and models: the same list
    out = done.stdout
    rows = [line for line in out.splitlines() if line.startswith("│")]
    head = listed.head(LIST_HEAD_ROWS)
    list_rows = rows[:LIST_HEAD_ROWS]
    for line, row in zip(list_rows, head.itertuples(index=False), strict=True):
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        assert cells[:3] == [str(row.rank), row.customer_id, row.segment]
        assert cells[3] == f"{row.churn_probability:.0%}" and cells[5] == row.action and cells[6] == row.reason_1
    assert f"top {LIST_HEAD_ROWS} of {len(listed):,} selected ({len(scores):,} customers scored)" in out
    assert f"{top}: " in out and "rank 1 on the list" in out
    assert f"{outside}: " in out and "not on the list" in out
    assert "nobody: not an eligible customer" in out
    assert f"  1. {listed['reason_1'].iloc[0]}" in out
    assert sum(line.startswith("  1. ") for line in out.splitlines()) == 2  # reasons for both scored customers
    assert str(outputs / LIST_FILE) in words(out) and str(outputs / MANIFEST_FILE) in words(out)

    # Options reach the stage: another model URI, a past scoring date.
    wrong = churn("score", "--config", str(config), "--model", "models:/customer-value@champion", cwd=tmp_path)
    assert wrong.returncode == EXIT_REFUSED
    assert "is a customer-value model, not a churn-risk model" in words(wrong.stderr)
    past = churn("score", "--config", str(config), "--as-of", "2024-06-01", "--value-model",
                 "models:/customer-value/1", cwd=tmp_path)
    assert past.returncode == 0, past.stderr[-3000:]
    manifest = json.loads((outputs / MANIFEST_FILE).read_text())
    assert manifest["as_of"].startswith("2024-06-01") and manifest["models"]["value"]["uri"] == "models:/customer-value/1"
    assert "retention list as of 2024-06-01" in past.stdout

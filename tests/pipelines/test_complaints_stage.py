"""`churn complaints` end to end on the small demo project: documented files, no text, MLflow, reproducible."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipelines.complaints import OUTPUT_FILES, SUMMARY_FILE
from pipelines.io import file_sha256
from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import Project
from tests.pipelines.test_cli import runner  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]


def outputs(project: Project) -> dict[str, Path]:
    return {**{n: project.root / "data" / "outputs" / n for n in OUTPUT_FILES},
            SUMMARY_FILE: project.root / "reports" / SUMMARY_FILE}


def test_every_output_is_documented_in_the_readme_and_dvc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]["complaints"]
    declared = {next(iter(e)) if isinstance(e, dict) else e for kind in ("outs", "metrics", "plots")
                for e in stage[kind]}
    for name in (*OUTPUT_FILES, SUMMARY_FILE):
        assert name in readme or name.split(".")[0].replace("complaint_", "") in readme, name
        assert any(path.endswith("/" + name) for path in declared), name


@pytest.mark.slow
def test_stage_writes_every_file_without_text_logs_them_and_reruns_byte_identically(
        dvc_project: Project, tmp_path: Path, runner: CliRunner) -> None:
    first = dvc_project.first_repro
    assert first.returncode == 0, first.stderr[-4000:]
    files = outputs(dvc_project)
    for name, path in files.items():
        assert path.is_file() and path.stat().st_size > 0, name
    summary = json.loads(files[SUMMARY_FILE].read_text(encoding="utf-8"))
    assert summary["forecast"]["series_forecast"] >= 1 and summary["messages"] == []
    assert summary["text"]["quality"] and summary["satisfaction"]["units_tested"] > 0

    complaints = pd.read_parquet(dvc_project.root / "data" / "raw" / "demo" / "complaints.parquet")
    texts = {t for t in complaints["text"].dropna() if len(t) >= 20}
    phrases = {p.strip() for t in texts for p in t.split(".") if len(p.strip()) >= 25}
    for name, path in files.items():
        if path.suffix == ".png":
            continue
        content = (pd.read_parquet(path).to_csv() if path.suffix == ".parquet"
                   else path.read_text(encoding="utf-8"))
        assert not [p for p in phrases if p in content], f"{name} holds complaint text"

    client = MlflowClient(tracking_uri=f"sqlite:///{dvc_project.root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("churn-care")
    (run,) = client.search_runs([experiment.experiment_id], "tags.stage = 'complaints'", max_results=1)
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "complaints")}
    assert logged == set(files)
    assert run.data.metrics["complaints.forecast.series_forecast"] == summary["forecast"]["series_forecast"]
    assert not any(p in json.dumps(run.data.params) for p in phrases)

    # The same data and config in another folder: every file byte-identical (the summary but for its paths).
    raw = yaml.safe_load((dvc_project.root / "configs" / "default.yaml").read_text(encoding="utf-8"))
    for table in raw["data"]["tables"].values():
        table["path"] = str(dvc_project.root / table["path"])
    raw["paths"] = {k: str(tmp_path / v) for k, v in raw["paths"].items()}
    raw["tracking"] = {**raw["tracking"], "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                       "artifact_location": str(tmp_path / "art")}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    done = runner.invoke(app, ["complaints", "--config", str(config)])
    assert done.exit_code == 0, done.output[-3000:]
    assert "units significantly below the rest" in done.stdout
    again = {**{n: tmp_path / raw_dir(raw, "outputs_dir") / n for n in OUTPUT_FILES},
             SUMMARY_FILE: tmp_path / raw_dir(raw, "reports_dir") / SUMMARY_FILE}
    for name in OUTPUT_FILES:
        assert file_sha256(again[name]) == file_sha256(files[name]), name
    rerun = json.loads(again[SUMMARY_FILE].read_text(encoding="utf-8"))
    assert {k: v for k, v in rerun.items() if k != "files"} == {k: v for k, v in summary.items() if k != "files"}


def raw_dir(raw: dict, key: str) -> Path:
    return Path(raw["paths"][key])


def test_without_complaints_the_stage_explains_and_writes_empty_tables(tmp_path: Path, runner: CliRunner) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,signup_date\nC1,2024-01-01\nC2,2024-02-01\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"tables": {"customers": {"path": str(customers)}}},
        "paths": {"features_dir": str(tmp_path / "f"), "outputs_dir": str(tmp_path / "o"),
                  "reports_dir": str(tmp_path / "r")},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_location": str(tmp_path / "a"),
                     "experiment": "no-complaints"}}), encoding="utf-8")
    done = runner.invoke(app, ["complaints", "--config", str(config)])
    assert done.exit_code == 0, done.output[-3000:]
    assert "no complaints to analyse" in " ".join(done.stdout.split())
    summary = json.loads((tmp_path / "r" / SUMMARY_FILE).read_text(encoding="utf-8"))
    assert summary["forecast"]["series_forecast"] == 0
    for name in OUTPUT_FILES:
        path = tmp_path / "o" / name
        assert path.is_file(), name
        if path.suffix == ".csv":
            assert len(pd.read_csv(path)) == 0 and len(pd.read_csv(path).columns) > 0, name

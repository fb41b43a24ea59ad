"""The train stage against real MLflow: a sqlite store, and a real `mlflow server` over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines.config import Config, parse_config
from pipelines.features import built_from
from pipelines.fingerprint import flatten_params, settings_difference
from pipelines.io import StageError, file_sha256
from pipelines.train import CHURN_MODEL_NAME, VALUE_MODEL_NAME, run
from tests.models.test_models_unit import known_signal_table

TEMPLATES = {"open_complaints": "{value:.0f} complaints still open",
             "days_since_last_transaction": "no transaction for {value:.0f} days"}


def make_config(tmp_path: Path, tracking_uri: str, table: pd.DataFrame) -> Config:
    features_dir = tmp_path / "features"
    features_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(features_dir / "train.parquet", index=False)
    customers = tmp_path / "customers.csv"
    customers.write_text("customer_id,signup_date\nC00001,2023-01-01\n")
    cfg = parse_config({
        "data": {"tables": {"customers": {"path": str(customers)}}},
        "paths": {"features_dir": str(features_dir), "outputs_dir": str(tmp_path / "outputs"),
                  "reports_dir": str(tmp_path / "reports")},
        "tracking": {"tracking_uri": tracking_uri, "artifact_location": str(tmp_path / "artifacts"),
                     "experiment": "test-train"},
        "model": {"booster": {"max_rounds": 120}, "value_booster": {"max_rounds": 120}},
    })
    # what `churn features` records beside the table it writes, which `churn train` checks
    (tmp_path / "reports").mkdir(parents=True, exist_ok=True)
    (tmp_path / "reports" / "features_summary.json").write_text(json.dumps(
        {"built_from": built_from(cfg), "outputs": {"train.parquet": {"sha256": file_sha256(features_dir / "train.parquet")}}}))
    return cfg


@pytest.fixture(scope="module")
def signal_table() -> pd.DataFrame:
    table, _ = known_signal_table(customers=1500, cutoffs=6, seed=5)
    return table


def test_train_with_sqlite_store_registers_champion_then_challenger(tmp_path: Path, signal_table, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_config(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", signal_table)
    first = run(cfg, templates=TEMPLATES)
    assert [d["alias"] for d in first["champion"]] == ["champion", "champion"]
    metrics = json.loads((tmp_path / "reports" / "train_metrics.json").read_text())
    assert metrics["metrics"]["churn.roc_auc"] > metrics["metrics"]["baseline_recency_rule.roc_auc"]
    for plot in ("roc.png", "precision_recall.png", "reliability.png", "cumulative_gains.png", "profit_curve.png",
                 "feature_importance.png", "shap_summary.png", "value_by_decile.png"):
        assert (tmp_path / "reports" / "plots" / plot).stat().st_size > 10_000

    # Same data again: the new version cannot beat the champion by the margin.
    second = run(cfg, templates=TEMPLATES)
    assert [d["alias"] for d in second["champion"]] == ["challenger", "challenger"]
    assert second["champion"][0]["champion_metric"] == pytest.approx(first["champion"][0]["new_metric"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert str(client.get_model_version_by_alias(CHURN_MODEL_NAME, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(CHURN_MODEL_NAME, "challenger").version) == "2"

    # The registered model loads as a pyfunc and predicts probabilities.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    model = mlflow.pyfunc.load_model(f"models:/{CHURN_MODEL_NAME}@champion")
    predictions = model.predict(signal_table.drop(columns=["customer_id", "cutoff", "churned", "future_value"]).head(50)
                                .astype({"segment": "str"}))
    assert predictions["churn_probability"].between(0, 1).all()
    run_data = client.get_run(first["run_id"]).data
    assert run_data.params["labels.horizon_days"] == "90"
    assert run_data.tags["stage"] == "train" and run_data.tags["code_version"]

    # Other feature settings: `churn score` would refuse the champion with this config, so it is not
    # compared and the new version takes its place (before, it stayed champion and the new one was a
    # challenger, leaving no model this config could score with).
    other = cfg.model_copy(update={"features": cfg.features.model_copy(update={"btyd_history_days": 180})})
    summary = tmp_path / "reports" / "features_summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "built_from": built_from(other)}))
    third = run(other, templates=TEMPLATES)
    assert [d["alias"] for d in third["champion"]] == ["champion", "champion"]
    assert "champion was trained with features.btyd_history_days 365, this config has 180" in \
        third["champion"][0]["reason"]
    assert str(client.get_model_version_by_alias(CHURN_MODEL_NAME, "champion").version) == "3"


def test_a_model_from_before_a_setting_existed_is_compared_with_what_it_was_trained_with(
        tmp_path: Path, monkeypatch) -> None:
    """A training run that logged no `features.btyd_history_days` (before the setting existed) used every
    purchase before the cutoff: it differs from the default 365-day window, and agrees with an empty one."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("old", artifact_location=str(tmp_path / "artifacts"))
    old_run = client.create_run(experiment)
    params = flatten_params(parse_config({"data": {"tables": {"customers": {"path": "c.csv"}}}}).features, "features.")
    del params["features.btyd_history_days"]
    for key, value in params.items():
        client.log_param(old_run.info.run_id, key, value)
    client.set_terminated(old_run.info.run_id)
    today = parse_config({"data": {"tables": {"customers": {"path": "c.csv"}}}})
    assert settings_difference(client, old_run.info.run_id, today) == ("features.btyd_history_days", "365", "None")
    whole = parse_config({"data": {"tables": {"customers": {"path": "c.csv"}}}, "features": {"btyd_history_days": None}})
    assert settings_difference(client, old_run.info.run_id, whole) is None
    other_tool = client.create_run(experiment)  # a run that logged none of our settings is not compared
    client.log_param(other_tool.info.run_id, "learning_rate", "0.1")
    assert settings_difference(client, other_tool.info.run_id, today) is None


def test_the_engine_settings_never_make_a_model_or_feature_table_another_configs(tmp_path: Path, monkeypatch) -> None:
    """`features.pandas_max_rows`, `features.duckdb` and `features.spark` decide how the features are computed
    (which engine `auto` takes, its memory), never what: a user who raises the row limit to score a large bank
    on the pandas engine keeps the champion (it was refused, "features.pandas_max_rows is ... but the churn-risk
    model was trained with None") and the feature tables; a real setting still differs."""
    from pipelines.features import settings_of

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("engines", artifact_location=str(tmp_path / "artifacts"))
    trained = client.create_run(experiment)
    base = {"data": {"tables": {"customers": {"path": "c.csv"}}}}
    for key, value in flatten_params(parse_config(base).features, "features.").items():
        client.log_param(trained.info.run_id, key, value)
    client.set_terminated(trained.info.run_id)
    engines = parse_config({**base, "features": {"pandas_max_rows": 2_000_000_000, "engine": "pandas",
                                                 "duckdb": {"threads": 1, "memory_limit": "2GB"}}})
    assert settings_difference(client, trained.info.run_id, engines) is None
    assert not any(key.startswith(("features.pandas_max_rows", "features.duckdb.", "features.spark."))
                   for key in settings_of(engines))
    assert settings_of(engines)["features.engine"] == "pandas"  # pinning an engine is still recorded
    windows = parse_config({**base, "features": {"windows_days": [30, 90]}})
    assert settings_difference(client, trained.info.run_id, windows) == ("features.windows_days", "[30, 90]",
                                                                         "[30, 90, 180, 365]")


def test_failed_training_run_ends_failed(tmp_path: Path, signal_table, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_config(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", signal_table.assign(churned=0))
    with pytest.raises(StageError, match="only one churn class"):
        run(cfg, templates=TEMPLATES)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("test-train")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path: Path):
    """A real MLflow tracking server on 127.0.0.1, stopped after the test."""
    port = _free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
               "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"]
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240  # a cold start takes ~10 s; far longer on a loaded 2-core machine
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError((tmp_path / "server.log").read_text())
    else:
        process.terminate()
        raise RuntimeError("mlflow server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_train_against_real_mlflow_server_over_http(tmp_path: Path, signal_table, mlflow_server, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    cfg = make_config(tmp_path, "sqlite:///unused.db", signal_table)
    summary = run(cfg, templates=TEMPLATES)
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert client.get_run(summary["run_id"]).info.status == "FINISHED"
    assert str(client.get_model_version_by_alias(VALUE_MODEL_NAME, "champion").version) == "1"
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"], "plots")}
    assert "plots/roc.png" in artifacts
    assert not Path("unused.db").exists()


def test_train_refuses_features_built_with_other_uplift_rows(tmp_path: Path, signal_table) -> None:
    """The uplift rows (uplift.parquet) depend on uplift keys: a change there makes the tables stale."""
    from pipelines.features import check_built_from
    from pipelines.fingerprint import input_fingerprint

    cfg = make_config(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", signal_table)
    train_table = {"train_table": Path(cfg.paths.features_dir) / "train.parquet"}
    assert check_built_from(cfg, input_fingerprint(cfg, train_table))["built_from"]["settings"][
        "uplift.treatment_window_days"] == "31"
    changed = cfg.model_copy(update={"uplift": cfg.uplift.model_copy(update={"treatment_window_days": 14})})
    with pytest.raises(StageError, match=r"uplift.treatment_window_days is 14 in the config but .*train.parquet was "
                                         r"built with 31: run `churn features`"):
        check_built_from(changed, input_fingerprint(changed, train_table))
    # a key that only shapes the model (not the rows) never makes the tables stale
    bootstrap = cfg.model_copy(update={"uplift": cfg.uplift.model_copy(update={"bootstrap": 50})})
    check_built_from(bootstrap, input_fingerprint(bootstrap, train_table))

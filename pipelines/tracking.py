"""MLflow plumbing shared by every stage: where to track, one run per stage, what to tag.

The default store is a sqlite file in the project folder, so nothing needs a server;
MLFLOW_TRACKING_URI (or `tracking.tracking_uri`) points it at a shared server instead.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
from pydantic import BaseModel

from pipelines.config import Config

log = logging.getLogger("pipelines.tracking")


def configure_tracking(cfg: Config) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; returns its id."""
    uri = cfg.tracking.resolved_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if not uri.startswith(("http://", "https://", "databricks")):
        artifact_location = Path(cfg.tracking.artifact_location).resolve().as_uri()
    return mlflow.create_experiment(cfg.tracking.experiment, artifact_location=artifact_location)


def code_version() -> str:
    """The git commit the code runs from (with '+dirty' for local edits), else the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return f"churn-care {version('churn-care')}"
        except PackageNotFoundError:
            return "unknown"


def flatten_params(section: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config as flat `a.b.c` -> text params, the form MLflow stores."""
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


@contextmanager
def tracked_run(cfg: Config, stage: str, run_name: str | None = None,
                tags: dict[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """One MLflow run for one stage; a failure inside ends the run as FAILED and re-raises."""
    experiment_id = configure_tracking(cfg)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name or stage,
                           tags={"stage": stage, "code_version": code_version(), **(tags or {})})
    try:
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")

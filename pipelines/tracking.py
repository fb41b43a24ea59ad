"""MLflow plumbing shared by every stage: where to track, one run per stage, what to tag.

The default store is a sqlite file in the project folder, so nothing needs a server;
MLFLOW_TRACKING_URI (or `tracking.tracking_uri`) points it at a shared server instead.

A tracking server that does not answer is given up on after a few seconds, not minutes:
unless the environment sets them, MLflow's HTTP retries are bounded here, before any call
(`HTTP_RETRY_DEFAULTS`). Every run is tagged with the process id and host that run it, so
a later run of the same stage can end the runs of killed processes as KILLED.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
"""MLflow's defaults (7 retries, backoff factor 2, 120 s) wait about 4 minutes for a server that is
down; these give up after about 3 s when the server refuses, 90 s at worst when it never answers.
A value already in the environment wins."""
for _name, _value in HTTP_RETRY_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

import mlflow  # noqa: E402  (after the retry settings, which MLflow reads when it makes a request)
from mlflow.tracking import MlflowClient  # noqa: E402

from pipelines.config import Config  # noqa: E402
from pipelines.fingerprint import flatten_params  # noqa: E402,F401  (re-exported: stages import it from here)
from pipelines.io import StageError, process_alive, process_start  # noqa: E402

log = logging.getLogger("pipelines.tracking")


def _without_traceback(record: logging.LogRecord) -> bool:
    """Keep the line, drop the traceback (unless debugging): the stage reports the error itself."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        record.exc_info = None
        record.exc_text = None
    return True


# MLflow logs some store errors (a read-only or locked sqlite store) with their traceback, on its own
# handler, just before it raises them; the command then says what is wrong and how to fix it.
for _handler in logging.getLogger("mlflow").handlers:
    _handler.addFilter(_without_traceback)
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def configure_tracking(cfg: Config) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; returns its id."""
    uri = cfg.tracking.resolved_uri()
    users = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # MLflow writes the URI into MLFLOW_TRACKING_URI, and the environment's value wins over `tracking.tracking_uri`
    # (`resolved_uri`): left there, it would turn this config's store into the user's choice for every later
    # config run in the same process (a notebook, a scheduler, the tests). Only the user's own setting stays.
    if users is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = users
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


@contextmanager
def tracked_run(cfg: Config, stage: str, run_name: str | None = None,
                tags: dict[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """One MLflow run for one stage; a failure inside ends the run as FAILED and re-raises.

    Before it starts, runs of the same stage left RUNNING by a process of this host that is
    gone (killed) are ended as KILLED (`end_orphaned_runs`).
    """
    experiment_id = configure_tracking(cfg)
    end_orphaned_runs(experiment_id, stage)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name or stage,
                           tags={"stage": stage, "code_version": code_version(), "pid": str(os.getpid()),
                                 "pid_start": process_start(os.getpid()), "host": socket.gethostname(),
                                 **(tags or {})})
    try:
        yield run
    except BaseException:
        try:
            mlflow.end_run(status="FAILED")
        except Exception as error:  # the store itself may be what failed: report the first error, not this one
            log.debug("could not end MLflow run %s as FAILED: %s", run.info.run_id, error)
        raise
    mlflow.end_run(status="FINISHED")


def end_orphaned_runs(experiment_id: str, stage: str) -> list[str]:
    """End as KILLED the RUNNING runs of `stage` whose process (tags `pid`, `pid_start`, `host`) is gone.

    Only runs started on this host are judged; runs without a pid tag (older versions) are left alone.
    """
    client = MlflowClient()
    runs = client.search_runs([experiment_id], filter_string=f"tags.stage = '{stage}' and attributes.status = 'RUNNING'",
                              max_results=500)
    ended: list[str] = []
    host = socket.gethostname()
    for found in runs:
        tags = found.data.tags
        pid = tags.get("pid", "")
        if tags.get("host") != host or not pid.isdigit() or process_alive(int(pid), tags.get("pid_start")):
            continue
        client.set_tag(found.info.run_id, "ended_by", f"churn {stage}, pid {os.getpid()}: process {pid} was gone")
        client.set_terminated(found.info.run_id, status="KILLED")
        ended.append(found.info.run_id)
    if ended:
        log.warning("ended %d MLflow run(s) of stage %s left RUNNING by killed processes, as KILLED: %s",
                    len(ended), stage, ", ".join(ended))
    return ended


def load_registered_bundle(model_uri: str) -> Path:
    """Download a registered model and return its bundle folder (LightGBM text + JSON)."""
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    bundle = local / "artifacts" / "bundle"
    if not bundle.is_dir():
        raise StageError(f"{model_uri} is not a churn-care model (no artifacts/bundle inside)")
    return bundle

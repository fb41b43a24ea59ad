"""Fingerprints of a run's inputs: which files, how big, what content, which dates.

Logged with every MLflow run so a model or list can be traced to the exact data it saw.
No customer data is included: only counts, dates and hashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from pipelines.config import Config
from pipelines.io import file_sha256


def file_fingerprint(path: Path) -> dict[str, object]:
    """Size, SHA-256 and (for Parquet) row count of one file."""
    if not path.is_file():
        return {"path": str(path), "exists": False}
    entry: dict[str, object] = {"path": str(path), "bytes": path.stat().st_size, "sha256": file_sha256(path)}
    if path.suffix == ".parquet":
        entry["rows"] = pq.read_metadata(path).num_rows
    return entry


def input_fingerprint(cfg: Config, extra_files: dict[str, Path] | None = None) -> dict[str, object]:
    """Fingerprint of every configured input table plus any stage inputs named in `extra_files`."""
    tables = {name: file_fingerprint(Path(source.path)) for name, source in cfg.data.tables.items()}
    extra = {name: file_fingerprint(Path(path)) for name, path in (extra_files or {}).items()}
    return {"tables": tables, "stage_inputs": extra, "as_of": cfg.data.as_of}


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


ENGINE_SETTINGS = ("features.pandas_max_rows", "features.duckdb.", "features.spark.")
"""Settings that decide how the features are computed (which engine `auto` takes, its threads, memory and
session), never what: a feature table or model is the config's whatever they were (the engines give the same
features, cell for cell)."""
SETTINGS_NOT_COMPARED = ("labels.cutoffs.", "features.engine", *ENGINE_SETTINGS)
"""Settings a model may have been trained with differently from the config without scoring differently."""

SETTINGS_BEFORE_THEY_EXISTED = {"features.btyd_history_days": "None"}
"""What a model trained before a setting existed was trained with (its run has no such param): until
2026-12-07 the BTYD history was every purchase before the cutoff. A setting missing here and from a
run is not compared, and neither is any setting of a run that logged no `features.` param at all."""


def settings_difference(client: MlflowClient, run_id: str | None, cfg: Config) -> tuple[str, str, str] | None:
    """The first `features` or `labels` setting (key, the config's value, the model's) in which the
    config differs from what training run `run_id` logged (`churn train` logs the whole config), or None
    when they agree or there is no run to look at (a path, a run of another tool)."""
    if not run_id:
        return None
    try:
        trained_with = client.get_run(str(run_id)).data.params
    except MlflowException:
        return None
    now = {**flatten_params(cfg.features, "features."), **flatten_params(cfg.labels, "labels.")}
    # the defaults of the past apply to runs of `churn train` (they logged the features), not another tool's
    before = SETTINGS_BEFORE_THEY_EXISTED if any(k.startswith("features.") for k in trained_with) else {}
    for key, value in now.items():
        then = trained_with.get(key, before.get(key))
        if then is None or then == value or key.startswith(SETTINGS_NOT_COMPARED):
            continue
        return key, value, then
    return None

"""The config the stage benchmarks run on: a generated bank's five Parquet tables, outputs in a folder."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import Config, parse_config

TABLE_NAMES = ("customers", "transactions", "complaints", "surveys", "contacts")


def bank_config(data: Path, folder: Path | None = None, experiment: str = "bench") -> Config:
    """The tables `churn generate` wrote to `data`; with `folder`, outputs and a sqlite MLflow store there."""
    raw: dict = {"data": {"tables": {name: {"path": str(data / f"{name}.parquet")} for name in TABLE_NAMES}}}
    if folder is not None:
        raw["paths"] = {"features_dir": str(folder / "features"), "outputs_dir": str(folder / "outputs"),
                        "reports_dir": str(folder / "reports")}
        raw["tracking"] = {"tracking_uri": f"sqlite:///{folder}/mlflow.db", "artifact_location": str(folder / "art"),
                           "experiment": experiment}
    return parse_config(raw)

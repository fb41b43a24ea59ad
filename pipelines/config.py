"""The config file: one YAML validated by pydantic at the start of every command.

Errors name the key that is wrong (`labels.horizon_days: Input should be greater than 0`).
Relative paths are resolved against the folder the command runs in (the project root).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from features.contract import TABLES
from features.settings import FeatureSettings, LabelSettings, Strict
from models.retention import ScoringSettings
from models.rules import RuleSettings
from models.settings import EconomicsSettings, ModelSettings


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; the message names the key."""


class TableSource(Strict):
    """Where one input table lives and how its columns are named in the user's file."""

    path: Path
    format: str | None = Field(default=None, description="csv or parquet; default: from the suffix")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="contract column name -> column name in the file, for columns named differently",
    )

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in ("csv", "parquet"):
            raise ValueError("format must be 'csv' or 'parquet'")
        return value


class DataSettings(Strict):
    """The input tables; only `customers` is required."""

    tables: dict[str, TableSource]
    as_of: str | None = Field(
        default=None,
        description="Date the data is complete up to (exclusive); default: the day after the latest event",
    )

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, value: dict[str, TableSource]) -> dict[str, TableSource]:
        unknown = sorted(set(value) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; known tables: {sorted(TABLES)}")
        if "customers" not in value:
            raise ValueError("the customers table is required")
        for name, source in value.items():
            known = {c.name for c in TABLES[name].columns}
            bad = sorted(set(source.columns) - known)
            if bad and not TABLES[name].extra_columns_allowed:
                raise ValueError(
                    f"{name}.columns maps unknown contract column(s) {bad}; known: {sorted(known)}"
                )
        return value


class PathSettings(Strict):
    """Where stages write their outputs."""

    features_dir: Path = Path("data/features")
    outputs_dir: Path = Path("data/outputs")
    reports_dir: Path = Path("reports")


class TrackingSettings(Strict):
    """MLflow tracking: local sqlite store by default; MLFLOW_TRACKING_URI overrides."""

    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"
    experiment: str = "churn-care"

    def resolved_uri(self) -> str:
        """The tracking URI in force: the environment's MLFLOW_TRACKING_URI wins."""
        return os.environ.get("MLFLOW_TRACKING_URI") or self.tracking_uri


class DemoSettings(Strict):
    """What `churn generate --config` makes: the synthetic demo dataset (flags override)."""

    customers: int = Field(default=50_000, ge=10)
    seed: int = 42
    start: str = "2023-01-01"
    months: int = Field(default=30, ge=4, le=120)
    out: Path = Path("data/raw/demo")


class EvaluationSettings(Strict):
    """Extra evaluation inputs: the generator's hidden truth, for the demo and tests only."""

    truth_dir: Path | None = Field(
        default=None, description="Folder with the generator's _truth tables; enables the true-hazard ceiling"
    )


class Config(Strict):
    """The whole config file."""

    seed: int = 42
    data: DataSettings
    features: FeatureSettings = FeatureSettings()
    labels: LabelSettings = LabelSettings()
    paths: PathSettings = PathSettings()
    tracking: TrackingSettings = TrackingSettings()
    model: ModelSettings = ModelSettings()
    economics: EconomicsSettings = EconomicsSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    demo: DemoSettings = DemoSettings()
    scoring: ScoringSettings = ScoringSettings()
    rules: RuleSettings = RuleSettings()


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem, each naming the dotted key and what is wrong."""
    lines = [f"{source}: {error.error_count()} problem(s) in the config"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see configs/default.yaml)"
        lines.append(f"  - {key}: {message}")
    return "\n".join(lines)


def parse_config(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate an already-loaded mapping."""
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (try configs/default.yaml)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return parse_config(raw, str(path))

"""The config file: one YAML validated by pydantic at the start of every command.

Errors name the key that is wrong (`labels.horizon_days: Input should be greater than 0`).
Relative paths are resolved against the folder the command runs in (the project root).
The YAML is read as `yaml.safe_load` reads it (no tags that build Python objects), but a
key given twice in one mapping and a non-finite number (`.inf`, `.nan`) are errors too.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from features.contract import TABLES
from features.settings import FeatureSettings, LabelSettings, Strict
from models.retention import ScoringSettings
from models.complaint_ops.settings import ComplaintOpsSettings
from models.rules import RuleSettings
from models.settings import EconomicsSettings, ModelSettings
from models.uplift.settings import BacktestSettings, UpliftSettings


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
        description="Date the data is complete up to (exclusive), YYYY-MM-DD or an ISO date and time "
                    "(an offset such as +02:00 is converted to UTC); default: the day after the data's "
                    "last day of events",
    )

    @field_validator("as_of", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> str | None:
        """An ISO date or date and time, as text or as the date YAML reads from an unquoted 2025-06-30."""
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            moment = value
        elif isinstance(value, dt.date):
            return value.isoformat()
        elif isinstance(value, str):
            text = value.strip()
            try:
                return dt.date.fromisoformat(text).isoformat() if len(text) <= 10 else _iso_datetime(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a date; write it as YYYY-MM-DD (e.g. 2025-06-30) "
                                 "or YYYY-MM-DD HH:MM:SS") from None
        else:
            raise ValueError(f"{value!r} is not a date; write it as YYYY-MM-DD (e.g. 2025-06-30)")
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return moment.isoformat(sep=" ")

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
    complaints: ComplaintOpsSettings = ComplaintOpsSettings()
    uplift: UpliftSettings = UpliftSettings()
    backtest: BacktestSettings = BacktestSettings()


def _iso_datetime(text: str) -> str:
    """An ISO date and time as naive UTC text that pandas reads; ValueError when it is not one."""
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment.isoformat(sep=" ")


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem, each naming the dotted key and what is wrong."""
    return _problem_report(_validation_lines(error), source)


def _validation_lines(error: ValidationError) -> dict[str, str]:
    lines: dict[str, str] = {}
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see configs/default.yaml)"
        lines[key] = f"{lines[key]}; {message}" if key in lines else message
    return lines


def _problem_report(problems: dict[str, str], source: str) -> str:
    lines = [f"{source}: {len(problems)} problem(s) in the config"]
    lines += [f"  - {key}: {message}" for key, message in problems.items()]
    return "\n".join(lines)


NON_FINITE = "not a finite number (inf or nan); give a real number"


def non_finite_keys(value: object, key: str = "", _seen: set[int] | None = None) -> list[str]:
    """Dotted keys (list items by position) of every infinite or NaN number in a loaded mapping."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [key or "(top level)"]
    if not isinstance(value, (dict, list, tuple)):
        return []
    seen = set() if _seen is None else _seen
    if id(value) in seen:  # a YAML alias can make a list contain itself
        return []
    seen.add(id(value))
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return [found for name, item in items
            for found in non_finite_keys(item, f"{key}.{name}" if key else str(name), seen)]


def parse_config(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate an already-loaded mapping; every problem is listed, each naming its dotted key.

    Infinite and NaN numbers are refused wherever they are: `.inf` / `.nan` in the mapping
    (checked before pydantic, so even under an unknown key), and text such as "inf" that
    pydantic reads as a number (checked on the validated config).
    """
    problems = dict.fromkeys(non_finite_keys(raw), NON_FINITE)
    try:
        config = Config.model_validate(raw)
    except ValidationError as error:
        for key, message in _validation_lines(error).items():
            problems.setdefault(key, message)
        raise ConfigError(_problem_report(problems, source)) from None
    for key in non_finite_keys(config.model_dump()):
        problems.setdefault(key, NON_FINITE)
    for key, message in churn_flag_problems(config).items():
        problems.setdefault(key, message)
    if problems:
        raise ConfigError(_problem_report(problems, source))
    return config


def churn_flag_problems(config: Config) -> dict[str, str]:
    """What `labels.churn_flag` needs of the other sections, each problem under the key to change."""
    flag = config.labels.churn_flag
    if flag is None:
        return {}
    found: dict[str, str] = {}
    if config.data.as_of is None:
        found["data.as_of"] = ("required with labels.churn_flag: the snapshot date (the flag says who left in the "
                               "labels.horizon_days before it; the data holds no dates to infer it from)")
    if config.labels.definition != "closure":
        found["labels.definition"] = "must be closure with labels.churn_flag (the flag says who closed)"
    if config.labels.cutoffs.count != 1 or config.labels.cutoffs.anchor != "as_of":
        found["labels.cutoffs"] = ("must be {count: 1, anchor: as_of} with labels.churn_flag: the flag describes one "
                                   "window, [as_of - horizon_days, as_of)")
    if config.features.engine not in ("auto", "pandas"):
        found["features.engine"] = ("must be auto or pandas with labels.churn_flag: the dates derived from the flag "
                                    "and the tenure exist only in the loaded customers table")
    used = {flag.column, flag.tenure_column} - {None}
    leaking = [c for c in config.features.static_features if c in used]
    if leaking:
        found["features.static_features"] = (f"{leaking[0]!r} is labels.churn_flag's "
                                             f"{'column' if leaking[0] == flag.column else 'tenure_column'}: the flag "
                                             "is the label and the tenure becomes tenure_days; remove it from the list")
    mapped = config.data.tables.get("customers")
    if mapped is not None and "closed_date" in mapped.columns:
        found["data.tables.customers.columns"] = ("maps closed_date, but labels.churn_flag derives it from the flag: "
                                                  "use one or the other")
    if flag.tenure_column is not None and mapped is not None and "signup_date" in mapped.columns:
        found["labels.churn_flag.tenure_column"] = ("the customers' signup_date is mapped too "
                                                    "(data.tables.customers.columns): use one or the other")
    if flag.tenure_column is not None and flag.tenure_column == flag.column:
        found["labels.churn_flag.tenure_column"] = "is the flag column itself"
    return found


class DuplicateKey(yaml.YAMLError):
    """A key given twice in one YAML mapping (PyYAML would silently keep the last)."""


class ConfigLoader(yaml.SafeLoader):
    """`yaml.safe_load`'s loader (plain data only; tags that build Python objects are refused)
    that refuses a key given twice in one mapping, naming the dotted key and both lines.

    A date YAML cannot build (`2025-06-31`) stays text, so the config check names its key.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self.key_paths: dict[int, str] = {}
        self._note_key_paths(node, "")
        return super().construct_document(node)

    def _note_key_paths(self, node: yaml.Node, path: str) -> None:
        """The dotted key of every mapping node, for messages (each node once: aliases can loop)."""
        if id(node) in self.key_paths:
            return
        self.key_paths[id(node)] = path
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._note_key_paths(value_node, path)
                    continue
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                self._note_key_paths(value_node, f"{path}.{name}" if path else str(name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._note_key_paths(item, f"{path}.{i}" if path else str(i))

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # merged keys (<<) may be overridden on purpose
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first_line
                except TypeError:
                    continue  # an unhashable key: the constructor below says so
                line = key_node.start_mark.line + 1
                if seen:
                    parent = getattr(self, "key_paths", {}).get(id(node), "")
                    dotted = f"{parent}.{key}" if parent else str(key)
                    raise DuplicateKey(f"duplicate key {dotted} at line {line} (first at line {first_line[key]}); "
                                       "give each key once")
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.Node) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


ConfigLoader.add_constructor("tag:yaml.org,2002:timestamp", ConfigLoader.construct_yaml_timestamp)


def read_config_text(path: Path) -> str:
    """The config file's text; ConfigError when it is a folder, missing, unreadable or not UTF-8."""
    if path.is_dir():
        inside = sorted(str(p) for p in path.glob("*.y*ml"))[:3]
        hint = f"; e.g. {', '.join(inside)}" if inside else ""
        raise ConfigError(f"config {path} is a folder, not a file: give the YAML file itself{hint}")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (try configs/default.yaml)")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path} is not UTF-8 text (first bad byte at offset {error.start:,}, line {line}); "
                          "re-save it as UTF-8") from None
    return text.removeprefix("\ufeff")


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    text = read_config_text(path)
    try:
        raw = yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - ConfigLoader is a SafeLoader
    except DuplicateKey as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return parse_config(raw, str(path))

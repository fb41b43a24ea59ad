"""`churn init`: inspect a user's files and write a commented config that runs on them.

From nothing to a retention list in two commands:

    churn init --customers exports/customers.csv --transactions exports/tx.csv --out configs/mine.yaml
    churn run --config configs/mine.yaml

The files are read with the pipeline's own reader (`pipelines/tables.py`: the same
parsing, the same contract checks as `churn validate`), then every setting that depends
on the data is chosen from it, and the reason is written beside it in the config:

- **columns**: each contract column is found among the file's columns by name (case,
  spacing and punctuation ignored; synonyms in `features/profile.py::SYNONYMS`), `--column
  TABLE.CONTRACT=FILECOLUMN` overrides; only names that differ are written (`columns:`).
- **churn definition**: closures in the customers table -> `closure`; transactions and no
  closure -> `inactivity`; customers only -> `closure` with one cutoff anchored at as_of; customers
  only with a churn flag instead of closure dates (`Churn`, `Exited`, ...: `FLAG_NAMES`, or
  `--churn-flag`) -> `closure` with `labels.churn_flag`, the dates derived from the flag and a
  tenure column (features/snapshot.py), the window 90 days and as_of the given date, else the day
  after the latest signup, else the day init runs (both marked ASSUMPTION).
- **as_of**: `--as-of`, else the pipeline's own inference (`features.build.tables_as_of`).
- **horizon, cutoffs, feature windows**: 90 days and as many monthly cutoffs (at most 12)
  as the history holds with a full label window after them and the longest feature
  window before them; if that is fewer than 3, a shorter horizon (60, 30), then shorter
  feature windows. For inactivity the horizon is at least the customers' typical gap
  between purchases, and the look-back is the 90th percentile of those gaps.
  A snapshot gets one cutoff at as_of - horizon, the horizon being the shortest of 90,
  180, 365, 730 days holding at least 50 closures.
- **static features**: the customers' other columns, except personal data, identifiers,
  the outcome or anything recorded after it, export-time measures, dates, empty or
  constant columns and near-unique text (`features.profile.classify_static`).
- **value column** (no transactions): a numeric customers column named like money
  (`features.profile.value_column_candidates`), taken as the value per month.
- **money**: the typical value per horizon V is measured in the data; the margin is an
  assumption by kind of data (bank flows 5%, retail purchases 25%, charges 30%, balances
  0.2% a month), marked ASSUMPTION; contact, offer and playbook costs are scaled so that
  each costs the same share of a typical customer's margin as in the demo bank
  (`DEMO_VALUE_PER_90_DAYS`).

The config is written atomically (`pipelines.io.atomic_path`, as `write_text` does) and
renamed into place only after `pipelines.config.load_config` accepts the written file.
Exit codes (through `pipelines.cli`): 2 a bad option or a required column not found (the
message names the `--column` to add), 3 unreadable input or data that cannot define churn,
4 the output exists and `--force` was not given. Nothing is written on any of them.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.build import build_labels, eligible_customers, tables_as_of, training_cutoffs
from features.contract import TABLES, Tables
from features.ids import is_in
from features.profile import (History, StaticColumn, classify_static, date_share, guess_columns, history, normalise,
                              price_and_quantity, round_up, tokens, typical_gaps, value_column_candidates,
                              window_value)
from features.snapshot import DAYS_PER_UNIT
from features.settings import (DEFAULT_COMPLAINT_CATEGORIES, DEFAULT_COMPLAINT_CHANNELS, ChurnFlagSettings,
                               CutoffSettings, FeatureSettings, LabelSettings)
from features.static import numeric_values
from features.validation import Problem, ValidationFailed
from models.retention import PlaybookSettings
from models.settings import EconomicsSettings
from pipelines.config import ConfigError, TableSource, load_config, parse_config
from pipelines.io import StageError, atomic_path
from pipelines.tables import _file_columns, check_encoding, coerce_types, read_and_check, read_table, table_format

DEMO_VALUE_PER_90_DAYS = 700.0
"""Median net transaction value per customer over 90 days, among the customers with a
transaction in them, of the demo bank (`churn generate`): 612-787 over the last three
90-day windows of a 5,000-customer 24-month bank and of the 50,000-customer 30-month demo.
The demo's costs (`economics`, `scoring.playbook`) are set against this value."""
LIFETIME_DAYS = 720
"""Lifetime value spans about two years: `economics.lifetime_horizons` x horizon_days."""
MAX_CUTOFFS = 12
MIN_CUTOFFS = 3
SNAPSHOT_MIN_CHURNERS = 50


MAX_HORIZON_DAYS: int = next(m.le for m in LabelSettings.model_fields["horizon_days"].metadata if hasattr(m, "le"))
"""The longest labels.horizon_days a config accepts (its bound in `LabelSettings`)."""


class FlagDefaults:
    """What init assumes of a churn flag's window when the data cannot say."""

    horizon = 90
DAYS_PER_MONTH = 365.25 / 12
GUESS_MIN_PARSED = 0.5
"""A guessed column whose values mostly fail to parse is the wrong column (not bad data)."""


class InitProblem(Exception):
    """A bad option, or a column init cannot find: the message says which `--column` to add (exit 2)."""


@dataclass
class Decision:
    """One choice init made: the setting, its value and, in a few words, why."""

    setting: str
    value: str
    why: str


@dataclass(frozen=True)
class FlagChoice:
    """A customers snapshot with a churn flag instead of closure dates: the columns init took, and why."""

    column: str
    why: str
    churned_values: list[str] | None
    tenure: str | None
    tenure_why: str
    unit: str
    unit_why: str

    def settings(self) -> dict[str, Any]:
        """As `labels.churn_flag` in the config."""
        return {"column": self.column, "churned_values": self.churned_values, "tenure_column": self.tenure,
                "tenure_unit": self.unit}


FLAG_NAMES = ("churn", "churned", "churnflag", "ischurn", "ischurned", "churnlabel", "exited", "hasexited",
              "attrition", "attritionflag", "attrited", "left", "hasleft", "lapsed", "cancelled", "canceled",
              "target", "label")
"""Normalised names of a customers column taken for a churn flag, best first (its values are checked on reading)."""
TENURE_UNIT_WORDS = (("days", "days"), ("day", "days"), ("weeks", "weeks"), ("week", "weeks"), ("months", "months"),
                     ("month", "months"), ("mths", "months"), ("years", "years"), ("year", "years"), ("yrs", "years"))


@dataclass
class Plan:
    """Everything init decided, ready to be written."""

    snapshot_closures: dict[int, int] = field(default_factory=dict)  # horizon -> closures in it (snapshot)
    flag: FlagChoice | None = None  # a snapshot whose churn is a flag column (labels.churn_flag)
    horizon: int | None = None  # --horizon: the user's labels.horizon_days, instead of init's choice
    decisions: list[Decision] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    left_out: list[StaticColumn] = field(default_factory=list)


# ---------------------------------------------------------------- options


def parse_column_flags(flags: list[str], given: dict[str, Path]) -> dict[str, dict[str, str]]:
    """`--column TABLE.CONTRACT=FILECOLUMN` flags as {table: {contract column: file column}}."""
    out: dict[str, dict[str, str]] = {}
    for flag in flags:
        match = re.fullmatch(r"\s*([A-Za-z_]+)\.([A-Za-z_]+)\s*=(.+)", flag)
        if not match:
            raise InitProblem(f"--column {flag!r}: write it as TABLE.CONTRACT=FILECOLUMN, "
                              "e.g. --column customers.customer_id=CustomerID")
        table, contract, column = match.group(1), match.group(2), match.group(3).strip()
        if table not in TABLES:
            raise InitProblem(f"--column {flag!r}: unknown table {table!r}; tables: {', '.join(TABLES)}")
        known = [c.name for c in TABLES[table].columns]
        if contract not in known:
            raise InitProblem(f"--column {flag!r}: {table} has no contract column {contract!r}; "
                              f"its columns: {', '.join(known)}")
        if table not in given:
            raise InitProblem(f"--column {flag!r}: no --{table} file was given")
        out.setdefault(table, {})[contract] = column
    return out


# ---------------------------------------------------------------- columns


def _file_columns_of(table: str, path: Path) -> list[str]:
    """The file's column names, read as the pipeline reads them; unreadable files stop init (exit 3)."""
    source = TableSource(path=path)
    if not path.is_file():
        raise ValidationFailed([Problem(table, None, 0, f"file {path} does not exist",
                                        f"check the --{table} path (relative to the folder you run from)")])
    fmt = table_format(source)
    if fmt == "unknown":
        raise ValidationFailed([Problem(table, None, 0, f"cannot tell the format of {path}",
                                        "use a .csv or .parquet file")])
    has_bom = False
    if fmt == "csv":
        problems, has_bom = check_encoding(path, table)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ValidationFailed(errors)
    try:
        return [str(c) for c in _file_columns(path, fmt, has_bom)]
    except Exception as error:  # noqa: BLE001 - any reader failure is the same user problem
        raise ValidationFailed([Problem(table, None, 0, f"cannot read {path} as {fmt}: {error}",
                                        f"check the file is a valid {fmt} file")]) from None


def _missing_message(table: str, missing: list[str], file_columns: list[str]) -> str:
    lines = [f"{table}: no column found for {', '.join(missing)} (required by the data contract)."]
    lines.append(f"  the file has: {', '.join(file_columns)}")
    kinds = {"id": "an identifier", "datetime": "a date or date-time (ISO 8601)", "float": "a number"}
    for name in missing:
        spec = TABLES[table].column(name)
        meaning = kinds.get(spec.kind, spec.kind) + (f": {spec.description}" if spec.description else "")
        lines.append(f"  add: --column {table}.{name}=FILECOLUMN   ({meaning})")
    if table == "transactions" and "amount" in missing:
        pair = price_and_quantity(file_columns)
        if pair:
            lines.append(f"  amount = {pair[0]} x {pair[1]} cannot be guessed: add a column with the product "
                         "(the transaction's value) to the file and map it with --column transactions.amount=...")
    return "\n".join(lines)


def map_columns(table: str, file_columns: list[str], fixed: dict[str, str],
                rejected: dict[str, set[str]] | None = None, derived: tuple[str, ...] = ()) -> dict[str, str]:
    """contract -> file column for one table; required columns not found stop init (exit 2), except the
    `derived` ones (a churn flag's dates)."""
    spec = TABLES[table]
    bad = [f"{c} -> {f!r}" for c, f in fixed.items() if f not in file_columns]
    if bad:
        raise InitProblem(f"{table}: --column names column(s) the file does not have ({', '.join(bad)}); "
                          f"the file has: {', '.join(file_columns)}")
    mapping = guess_columns(table, file_columns, [c.name for c in spec.columns], fixed, rejected)
    missing = [c.name for c in spec.columns if c.required and c.name not in mapping and c.name not in derived]
    if missing:
        raise InitProblem(_missing_message(table, missing, file_columns))
    clash = [c for c, f in mapping.items() if f != c and c in file_columns and c not in mapping.values()]
    if clash and spec.extra_columns_allowed:
        raise InitProblem(f"{table}: the file has a column named {clash[0]!r} but {mapping[clash[0]]!r} was "
                          f"chosen for it; rename one of them in the file, or map {clash[0]} to the column "
                          f"you mean with --column {table}.{clash[0]}={clash[0]}")
    return mapping


def _closed_date_column(path: Path, file_columns: list[str], mapping: dict[str, str],
                        fixed: dict[str, str], plan: Plan) -> dict[str, str]:
    """The customers mapping with closed_date only if its column holds dates (a `closed` yes/no
    flag is not a closure date): each guessed candidate must have >= 90% ISO dates."""
    if "closed_date" in fixed or "closed_date" not in mapping:
        return mapping
    required = {c: f for c, f in mapping.items() if c != "closed_date"}
    raw, problems = read_table("customers", TableSource(path=path, columns=required))
    if raw is None:
        raise ValidationFailed([p for p in problems if p.severity == "error"])
    rejected: set[str] = set()
    current = mapping
    while "closed_date" in current:
        column = current["closed_date"]
        values = raw[column] if column in raw.columns else raw.get("closed_date")
        if values is None or not values.notna().any() or date_share(values) >= 0.9:
            return current
        rejected.add(column)
        plan.warnings.append(f"customers.{column} looks like a closure column by its name but does not hold "
                             "dates; not used as closed_date (map the right one with --column "
                             "customers.closed_date=FILECOLUMN)")
        current = guess_columns("customers", file_columns, [c.name for c in TABLES["customers"].columns],
                                required, {"closed_date": rejected})
    return current


def choose_flag(file_columns: list[str], fixed: dict[str, str], has_transactions: bool, column: str | None,
                churned_values: list[str] | None, tenure: str | None, unit: str | None,
                why: str = "given with --churn-flag") -> FlagChoice | None:
    """The churn flag (and tenure) of a customers snapshot without closure dates, or None.

    Given with --churn-flag, else found by name (`FLAG_NAMES`, best first) when the customers file has
    no closure date column (by name or --column) and there is no transactions file. The tenure: --tenure,
    else a column named like tenure, unless the file has signup dates; its unit from --tenure-unit, else
    from its name, else months (an assumption the config says)."""
    by_norm = {normalise(c): c for c in reversed(file_columns)}
    for option, name in (("--churn-flag", column), ("--tenure", tenure)):
        if name is not None and name not in file_columns:
            raise InitProblem(f"{option} {name!r}: the customers file has no such column; it has: "
                              f"{', '.join(file_columns)}")
    contract = [c.name for c in TABLES["customers"].columns]
    guessed = guess_columns("customers", file_columns, contract, fixed)
    if column is not None:
        if guessed.get("closed_date") == column:  # the closure-like column without dates
            guessed.pop("closed_date")
    else:
        if has_transactions or "closed_date" in guessed:
            return None
        column = next((by_norm[n] for n in FLAG_NAMES if n in by_norm and by_norm[n] not in guessed.values()), None)
        if column is None:
            return None
        why = ("found by its name: the customers file has no closure dates and there are no transactions, so "
               "churn is this flag (who left in the window before the snapshot date)")
    if "closed_date" in guessed and column is not None:
        raise InitProblem(f"--churn-flag {column!r}: the customers file also has closure dates "
                          f"({guessed['closed_date']!r}); use one or the other (leave out --churn-flag to use the dates)")
    tenure_why = ""
    if "signup_date" in guessed:
        if tenure is not None:
            raise InitProblem(f"--tenure {tenure!r}: the customers file also has signup dates "
                              f"({guessed['signup_date']!r}); they give the tenure: leave out --tenure")
        tenure_why = f"none needed: the file's signup dates ({guessed['signup_date']!r}) give each customer's tenure"
    elif tenure is not None:
        tenure_why = "given with --tenure"
    else:
        tenure = next((c for c in file_columns if "tenure" in normalise(c) and c != column), None)
        tenure_why = ("found by its name" if tenure is not None else
                      "none found (no column named like tenure): tenure_days is the same for every customer; "
                      "name one with --tenure")
    if unit is not None and unit not in DAYS_PER_UNIT:
        raise InitProblem(f"--tenure-unit {unit!r}: write days, weeks, months or years")
    if unit is not None:
        unit_why = "given with --tenure-unit"
    else:
        words = tokens(tenure) if tenure is not None else []
        unit = next((u for word, u in TENURE_UNIT_WORDS if word in words), None)
        unit_why = (f"from the column's name ({tenure!r})" if unit is not None else
                    "ASSUMPTION: the column's name does not say; months (set days, weeks, months or years)")
        unit = unit or "months"
    return FlagChoice(column, why, churned_values, tenure, tenure_why, unit, unit_why)


def _latest_signup(path: Path, mapping: dict[str, str]) -> pd.Timestamp | None:
    """The latest parseable signup date of the customers file, or None (no signup column, or no date)."""
    column = mapping.get("signup_date")
    if column is None:
        return None
    raw, _ = read_table("customers", TableSource(path=path, columns={c: f for c, f in mapping.items() if c != f}),
                        only=("signup_date",), derived=("closed_date",))
    if raw is None or "signup_date" not in raw:
        return None
    latest = coerce_types(raw, TABLES["customers"])[0]["signup_date"].max()  # parsed as every stage parses it
    return None if pd.isna(latest) else pd.Timestamp(latest)


# ---------------------------------------------------------------- reading


def read_tables(paths: dict[str, Path], mappings: dict[str, dict[str, str]], guessed: dict[str, set[str]],
                as_of: str | None, flag: FlagChoice | None = None, horizon: int | None = None
                ) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """Every table through the pipeline's reader and checks (`read_and_check`), as `churn validate` would;
    with a churn flag, its dates derived as the stages will derive them (at `horizon`, else the default)."""
    raw: dict[str, Any] = {"data": {"as_of": as_of, "tables": {
        name: {"path": str(path), "columns": {c: f for c, f in mappings[name].items() if c != f}}
        for name, path in paths.items()}}}
    if flag is not None:
        raw["labels"] = {"churn_flag": flag.settings(), "horizon_days": horizon or FlagDefaults.horizon,
                         "cutoffs": {"count": 1, "anchor": "as_of"}}
    try:
        cfg = parse_config(raw, "churn init")
    except ConfigError as error:
        raise InitProblem(str(error)) from None
    frames, _, problems = read_and_check(cfg)
    for problem in problems:
        column = problem.column
        if column is None or column not in guessed.get(problem.table, set()):
            continue
        rows = len(frames[problem.table])
        if problem.message.startswith("values that are not") and problem.rows > GUESS_MIN_PARSED * rows:
            file_column = mappings[problem.table][column]
            raise ValidationFailed([Problem(
                problem.table, column, problem.rows,
                f"the file's column {file_column!r}, taken for {column} by its name, holds {problem.message}",
                f"if it is the right column, {problem.fix[0].lower()}{problem.fix[1:]}; if not, name the right "
                f"one with --column {problem.table}.{column}=FILECOLUMN", problem.examples)])
    fatal = [p for p in problems if p.severity == "error" and p.column is None and p.rows == 0]
    if fatal or "customers" not in frames:
        raise ValidationFailed(fatal or [p for p in problems if p.severity == "error"])
    return frames, problems


# ---------------------------------------------------------------- choices


def _labels(definition: str, horizon: int, lookback: int = 180, count: int = 120,
            anchor: str = "month_start") -> LabelSettings:
    return LabelSettings(definition=definition, horizon_days=horizon, inactivity_lookback_days=lookback,
                         cutoffs=CutoffSettings(count=count, anchor=anchor))


def full_window_cutoffs(tables: Tables, horizon: int, windows: tuple[int, ...], start: pd.Timestamp) -> list:
    """The pipeline's monthly cutoffs (`training_cutoffs`) with a full label window after them and
    the longest feature window of history before them (from the dense history's start)."""
    cutoffs = training_cutoffs(tables, _labels("closure", horizon))
    return [c for c in cutoffs if c - pd.Timedelta(days=max(windows)) >= start]


def choose_timing(tables: Tables, start: pd.Timestamp,
                  horizons: list[int]) -> tuple[int, tuple[int, ...], int, dict[str, str]]:
    """horizon, feature windows, cutoff count and why (per setting): the first of (windows, longest
    first) x (horizons, longest first) with at least `MIN_CUTOFFS` full cutoffs; else the one with
    the most. A shorter horizon is tried before shorter feature windows."""
    default = FeatureSettings().windows_days
    options = [default] + [tuple(w for w in default if w <= cap) for cap in (180, 90)]
    options = [w for i, w in enumerate(options) if w and w not in options[:i]]
    tried: list[tuple[int, int, tuple[int, ...]]] = []
    for windows in options:
        for horizon in horizons:
            n = len(full_window_cutoffs(tables, horizon, windows, start))
            tried.append((n, -options.index(windows), horizon, windows))  # type: ignore[arg-type]
            if n >= MIN_CUTOFFS:
                return horizon, windows, min(n, MAX_CUTOFFS), _timing_why(n, horizon, windows, default, horizons)
    n, _, horizon, windows = max(tried, key=lambda t: (t[0], t[1]))  # type: ignore[misc]
    if n == 0:
        if not training_cutoffs(tables, _labels("closure", horizons[-1])):
            raise ValidationFailed([Problem(
                "transactions" if tables.transactions is not None else "customers", None, 0,
                f"the history ({start.date()} to {tables.as_of.date()}) is too short for even one training "
                f"cutoff with a {horizons[-1]}-day label window after a month start",
                "supply a longer history, or give --as-of later if the data runs beyond it")])
        horizon, windows = horizons[-1], options[-1]
        why = _timing_why(1, horizon, windows, default, horizons)
        why["count"] = (f"the history is too short for {max(windows)} days of it before any cutoff: 1 cutoff, "
                        "whose longest features see only part of their window")
        return horizon, windows, 1, why
    return horizon, windows, n, _timing_why(n, horizon, windows, default, horizons)


def _timing_why(n: int, horizon: int, windows: tuple[int, ...], default: tuple[int, ...],
                horizons: list[int]) -> dict[str, str]:
    why = {"horizon": f"{horizon} days, the longest tried ({', '.join(map(str, horizons))}) with {MIN_CUTOFFS}+ "
                      "monthly cutoffs"}
    if horizon == 90 and horizons[0] == 90:
        why["horizon"] = "the default 90 days (a quarter): the history holds enough cutoffs with it"
    elif horizon != horizons[0]:
        why["horizon"] = (f"shortened from {horizons[0]} days: the history is too short for {MIN_CUTOFFS} monthly "
                          f"cutoffs with a full {horizons[0]}-day label window after them and "
                          f"{max(windows)} days of history before them")
    if windows != default:
        why["windows"] = (f"cut to {list(windows)} (from {list(default)}): the history is too short for "
                          f"{MIN_CUTOFFS} monthly cutoffs with {max(default)} days of history before them at any "
                          f"horizon tried ({', '.join(map(str, horizons))} days)")
    why["count"] = (f"{n} monthly cutoff(s) have a full {horizon}-day label window after them and {max(windows)} "
                    "days of history (the longest feature window) before them"
                    + (f"; the latest {MAX_CUTOFFS} are used" if n > MAX_CUTOFFS else "")
                    + (f" (fewer than {MIN_CUTOFFS}: the model learns from few moments)" if n < MIN_CUTOFFS else ""))
    return why


def _event_times(tables: Tables) -> pd.Series:
    parts = [getattr(tables, name)[TABLES[name].event_time] for name in ("transactions", "complaints", "surveys",
                                                                         "contacts")
             if getattr(tables, name) is not None and len(getattr(tables, name))]
    return pd.concat(parts, ignore_index=True) if parts else pd.Series([], dtype="datetime64[us]")


def _money(value: float) -> float:
    """A money figure with three significant digits (enough for a working assumption)."""
    if not value or not math.isfinite(value):
        return 0.0
    return float(f"{value:.3g}")


def _num(value: float) -> str:
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


# ---------------------------------------------------------------- YAML with comments


class Yaml:
    """A YAML document written line by line, with a comment beside or above each choice."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def comment(self, text: str, indent: int = 0) -> None:
        for paragraph in text.split("\n"):
            lead = " " * (len(paragraph) - len(paragraph.lstrip(" ")))
            line = lead
            for word in paragraph.split():
                if line.strip() and len(line) + len(word) + 1 > 96 - indent:
                    self.lines.append(" " * indent + "# " + line)
                    line = lead + "  " + word
                else:
                    line = f"{line} {word}" if line.strip() else line + word
            self.lines.append(" " * indent + "# " + line if line.strip() else " " * indent + "#")

    def key(self, indent: int, name: str, value: Any = ..., note: str | None = None) -> None:
        text = " " * indent + _yaml_key(name) + ":"
        if value is not ...:
            text += " " + _yaml_value(value)
        if note:
            text += "   # " + note.replace("\n", " ")
        self.lines.append(text)

    def blank(self) -> None:
        self.lines.append("")

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _yaml_key(name: str) -> str:
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.lower() not in _YAML_WORDS
    return name if plain else json.dumps(name, ensure_ascii=False)


def _yaml_value(value: Any) -> str:
    """JSON flow style (a subset of YAML): strings always quoted, so dates stay text."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_yaml_key(str(k))}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, str) and re.fullmatch(r"[a-z_][a-z0-9_]*", value) and value not in _YAML_WORDS:
        return value
    if isinstance(value, (bool, type(None), str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(float(value)) if value != int(value) or abs(value) >= 1e15 else f"{value:.1f}"
    return str(value)


# ---------------------------------------------------------------- the command


def run(paths: dict[str, Path], column_flags: list[str], out: Path, as_of: str | None = None,
        force: bool = False, progress: Callable[[str], None] | None = None,
        argv: list[str] | None = None, churn_flag: str | None = None, churned_values: list[str] | None = None,
        tenure: str | None = None, tenure_unit: str | None = None, horizon: int | None = None) -> dict[str, Any]:
    """Inspect the files, decide every data-dependent setting, write the commented config to `out`.

    `horizon`: labels.horizon_days as the user knows it (a churn flag's window is not in the data);
    otherwise init chooses it from the data.

    `churn_flag`, `churned_values`, `tenure`, `tenure_unit`: a snapshot whose churn is a flag column
    (`labels.churn_flag`); without them such a column is found by name (`FLAG_NAMES`) when the customers
    have no closure dates and there are no transactions.

    Raises InitProblem (bad option or column not found: exit 2), ValidationFailed (unreadable
    input: exit 3), StageError (`out` exists without `force`: exit 4).
    """
    say = progress or (lambda message: None)
    out = Path(out)
    if out.exists() and not force:
        raise StageError(f"{out} already exists; nothing was written. Add --force to replace it, "
                         "or choose another --out")
    paths = {name: Path(p) for name, p in paths.items() if p is not None}
    fixed = parse_column_flags(column_flags, paths)
    if horizon is not None and not 1 <= horizon <= MAX_HORIZON_DAYS:
        raise InitProblem(f"--horizon {horizon}: give the label window in days, 1 to {MAX_HORIZON_DAYS} "
                          "(labels.horizon_days; e.g. 30, 90)")
    plan = Plan(horizon=horizon)

    say("reading the column names")
    mappings: dict[str, dict[str, str]] = {}
    guessed: dict[str, set[str]] = {}
    for name in TABLES:
        if name not in paths:
            continue
        columns = _file_columns_of(name, paths[name])
        if name == "customers":
            plan.flag = choose_flag(columns, fixed.get(name, {}), "transactions" in paths, churn_flag,
                                    churned_values, tenure, tenure_unit)
        derived = ("signup_date", "closed_date") if name == "customers" and plan.flag is not None else ()
        mapping = map_columns(name, columns, fixed.get(name, {}), derived=derived)
        if name == "customers" and plan.flag is None:
            guessed_closure = mapping.get("closed_date")
            mapping = _closed_date_column(paths[name], columns, mapping, fixed.get(name, {}), plan)
            if guessed_closure is not None and "closed_date" not in mapping and "transactions" not in paths:
                # a closure column without dates, and nothing else to say who churned: it is the flag
                plan.flag = choose_flag(columns, fixed.get(name, {}), False, guessed_closure, churned_values,
                                        tenure, tenure_unit, why=f"{guessed_closure!r} is named like a closure but "
                                        "holds no dates, and there are no transactions: it is the churn flag")
        mappings[name] = mapping
        guessed[name] = {c for c in mapping if c not in fixed.get(name, {})}

    flag_as_of_why = ""
    if plan.flag is not None and as_of is None:
        latest = _latest_signup(paths["customers"], mappings["customers"])
        if latest is not None:
            as_of = str((latest.normalize() + pd.Timedelta(days=1)).date())
            flag_as_of_why = ("ASSUMPTION: the day after the latest signup (the data holds no other date); set it to "
                              "the day the snapshot was taken (the flag says who left in the labels.horizon_days "
                              "before it)")
        else:  # nothing in the data is dated
            as_of = str(pd.Timestamp.now(tz="UTC").date())
            flag_as_of_why = ("ASSUMPTION: the data holds no date, so the day init ran; set it to the day the snapshot "
                              "was taken (the flag says who left in the labels.horizon_days before it)")
    say("reading the tables with the pipeline's reader and checks")
    frames, problems = read_tables(paths, mappings, guessed, as_of, plan.flag, plan.horizon)
    if flag_as_of_why:
        as_of_ts, as_of_why = pd.Timestamp(as_of), flag_as_of_why
    elif as_of is not None:
        as_of_ts, as_of_why = pd.Timestamp(as_of), "given with --as-of"
    else:
        try:
            as_of_ts = tables_as_of(Tables(**frames))
        except ValueError as error:
            raise InitProblem(f"{error}; give the date with --as-of YYYY-MM-DD") from None
        as_of_why = ("inferred from the data exactly as every stage would (features.build.tables_as_of): the "
                     "day after the data's last day")
        late = _rows_on_or_after(frames, as_of_ts)
        if late:
            as_of_why += f" ({late} dated on or after it are past the data's end: check them)"
    tables = Tables(**frames, as_of=as_of_ts)
    customers = tables.customers
    say(f"data as of {as_of_ts.date()}; deciding the settings")

    config = _decide(tables, paths, mappings, fixed, plan, as_of_ts, as_of_why, problems, out, argv)
    with atomic_path(out, ".yaml") as tmp:
        tmp.write_text(config, encoding="utf-8")
        try:
            load_config(tmp)
        except ConfigError as error:
            raise InitProblem(f"the config init wrote does not load (a bug in churn init, please report it):\n"
                              f"{str(error).replace(str(tmp), str(out))}") from None
    say(f"wrote {out}")
    return {"out": str(out), "decisions": plan.decisions, "warnings": plan.warnings, "left_out": plan.left_out,
            "problems": [p for p in problems if p.severity == "error"], "customers": len(customers),
            "next": f"churn run --config {out}"}


def _rows_on_or_after(frames: dict[str, pd.DataFrame], moment: pd.Timestamp) -> str:
    """'3 transactions rows (e.g. 2099-01-01)': event rows dated on or after `moment`, if any."""
    parts = []
    for name, frame in frames.items():
        column = TABLES[name].event_time
        if column is None or column not in frame or not len(frame):
            continue
        late = frame.loc[frame[column] >= moment, column]
        if len(late):
            parts.append(f"{len(late):,} {name} row(s) (e.g. {late.max().date()})")
    return ", ".join(parts)


def _decide(tables: Tables, paths: dict[str, Path], mappings: dict[str, dict[str, str]],
            fixed: dict[str, dict[str, str]], plan: Plan, as_of: pd.Timestamp, as_of_why: str,
            problems: list[Problem], out: Path, argv: list[str] | None) -> str:
    """Every data-dependent setting, as the text of the commented config."""
    customers = tables.customers
    closures = int(customers["closed_date"].notna().sum()) if "closed_date" in customers else 0
    has_tx = tables.transactions is not None and len(tables.transactions) > 0
    snapshot = not any(getattr(tables, n) is not None for n in ("transactions", "complaints", "surveys", "contacts"))
    contract_customer = {c.name for c in TABLES["customers"].columns}
    statics = classify_static(customers, contract_customer, customers.get("closed_date"))
    kept = [s for s in statics if s.kept]
    plan.left_out = [s for s in statics if not s.kept]

    flag = plan.flag
    if flag is not None:  # the flag and tenure columns are settings of their own (labels.churn_flag), never features
        own = {flag.column, flag.tenure}
        kept = [s for s in kept if s.name not in own]
        plan.left_out = [s for s in plan.left_out if s.name not in own]

    # ---- churn definition
    if flag is not None and not closures:
        values = sorted(map(str, customers[flag.column].dropna().astype("str").unique()))[:6]
        raise ValidationFailed([Problem(
            "customers", flag.column, 0,
            f"the churn flag {flag.column!r} marks no customer as churned (its values: {values})",
            "give with --churned-value the value(s) that mean churned (e.g. --churned-value "
            f"{shlex.quote(values[0]) if values else 'VALUE'}), or name the right column with --churn-flag")])
    if flag is not None:
        definition = "closure"
        definition_why = (f"{closures:,} customers ({closures / len(customers):.1%}) are flagged as churned in "
                          f"{flag.column!r} ({flag.why}): churn = leaving within the horizon; labels.churn_flag "
                          "derives each customer's closure (and signup) date from the flag (and the tenure)")
    elif closures:
        definition = "closure"
        definition_why = (f"{closures:,} customers ({closures / len(customers):.1%}) have a closed_date: churn = "
                          "the account closes within the horizon")
    elif has_tx:
        definition = "inactivity"
        definition_why = ("no closed_date in the customers table, but transactions: churn = no transaction "
                          "within the horizon (or a closure)")
    else:
        flags = [s.name for s in plan.left_out if s.kind == "outcome"]
        hint = f" (the column(s) {flags} look like a churn flag, but the pipeline needs the date of closure)" if flags else ""
        raise ValidationFailed([Problem(
            "customers", "closed_date", 0,
            "customers only and no closed_date: nothing says who churned or when" + hint,
            "add closed_date (the closure date, empty while open) to the customers file, or give a "
            "--transactions file (churn = no transaction in the horizon)")])

    # ---- timing
    decisions = plan.decisions
    lookback: int | None = None
    lookback_why = ""
    gaps = None
    hist: History | None = None
    given = plan.horizon
    given_why = "given with --horizon"
    if flag is not None:
        horizon, count, anchor, windows = given or FlagDefaults.horizon, 1, "as_of", FeatureSettings().windows_days
        why = {"horizon": (f"{given_why}: the window the flag covers (who left in the days before the snapshot date)"
                           if given else
                           "ASSUMPTION: the window the flag covers (who left in the days before the snapshot date) is "
                           "not in the data; 90 days unless you know it (churn init --horizon DAYS): set your flag's "
                           "window (e.g. 30 for 'left within the last month'); it sets the value per horizon and the "
                           "list's horizon"),
               "count": "a flag describes one window: one cutoff at its start, exactly as_of - horizon_days "
                        "(anchor: as_of); every customer of the snapshot is in it"}
        short = {"horizon": "--horizon" if given else "ASSUMPTION: the flag's window", "count": "churn flag snapshot"}
    elif snapshot:
        horizon, count, anchor, windows = _snapshot_horizon(tables, plan), 1, "as_of", FeatureSettings().windows_days
        why = {"horizon": f"{given_why} ({plan.snapshot_closures[horizon]:,} closures in it)" if given else
                          _snapshot_why(plan),
               "count": "a snapshot has one moment to learn from: one cutoff, exactly as_of - horizon_days "
                        "(anchor: as_of), whose churners are the closures in the days after it"}
        short = {"horizon": f"{plan.snapshot_closures[horizon]:,} closures in it", "count": "snapshot"}
    else:
        hist = history(_event_times(tables), as_of)
        horizons = [given] if given else [90, 60, 30]
        if definition == "inactivity":
            tx = tables.transactions
            gaps = typical_gaps(tx["customer_id"], tx["timestamp"])
            if len(gaps):
                median_gap = float(gaps.median())
                first = min(365, max(90, round_up(median_gap)))
                if not given:
                    horizons = [first] + [h for h in (60, 30) if h >= median_gap and h < first]
                p90 = float(gaps.quantile(0.9))
                lookback = min(730, max(90, round_up(p90)))
                lookback_why = (f"The 90th percentile of the customers' typical (median) gap between purchase days "
                                f"is {p90:,.0f} days (over {len(gaps):,} customers with 2+ purchase days), rounded up "
                                "to 30 days and kept within [90, 730]")
            else:
                lookback, lookback_why = 180, "No customer has two purchase days: the default 180 days"
        horizon, windows, count, why = choose_timing(tables, hist.start, horizons)
        anchor = "month_start"
        if given:
            why["horizon"] = given_why
        elif definition == "inactivity" and gaps is not None and len(gaps):
            floor = (f"horizons tried: {horizons} days, none shorter than the customers' median gap between "
                     f"purchase days ({gaps.median():,.0f} days), so a usual pause is not counted as churn")
            why["horizon"] = f"{why['horizon']}; {floor}"
        short = {"horizon": "--horizon" if given else "default" if horizon == 90 and horizons[0] == 90 else
                 "shortened: short history" if horizon < horizons[0] else "median purchase gap",
                 "count": f"cutoffs with full windows{', capped at 12' if count == MAX_CUTOFFS else ''}"}
    labels = _labels(definition, horizon, lookback or 180, count, anchor)
    if flag is not None:  # the flag's one cutoff stands whatever the events (a campaign's contacts from that day on)
        labels = labels.model_copy(update={"churn_flag": ChurnFlagSettings(**flag.settings())})

    # ---- what the choice means at the latest cutoff
    cutoffs = training_cutoffs(tables, labels)
    latest = cutoffs[-1] if cutoffs else None
    population_note = ""
    excluded_note = ""
    excluded_share = 0.0
    rate = float("nan")
    if latest is not None:
        latest_labels = build_labels(tables, latest, labels)
        rate = float(latest_labels["churned"].mean()) if len(latest_labels) else float("nan")
        population_note = (f"at the latest training cutoff ({latest.date()}): {len(latest_labels):,} customers, "
                           f"{int(latest_labels['churned'].sum()):,} churned ({rate:.1%})")
        if len(latest_labels) and latest_labels["churned"].sum() == 0:
            plan.warnings.append(f"no customer churned in the label window of the latest cutoff ({latest.date()}); "
                                 "the features stage refuses a training table without churners")
        if definition == "inactivity":
            tx = tables.transactions
            before = tx.loc[tx["timestamp"] < latest, "customer_id"].astype("str").unique()
            open_ = customers[(customers["signup_date"] < latest)
                              & ~(customers.get("closed_date", pd.Series(pd.NaT, index=customers.index)) < latest)]
            base = int(is_in(open_["customer_id"], before).sum())
            inside = len(eligible_customers(tables, latest, labels))
            left = max(base - inside, 0)
            share = excluded_share = left / base if base else 0.0
            excluded_note = (f"at the latest cutoff ({latest.date()}) it leaves out {left:,} of the {base:,} open "
                             f"customers with any past purchase ({share:.1%}): their last purchase is older than "
                             f"{lookback} days; `churn features` writes them, with the reason, to the `excluded` "
                             "table (features_dir/excluded.parquet)")

    decisions.append(Decision("labels.definition", definition, definition_why.split(":")[0]))
    if flag is not None:
        decisions.append(Decision("labels.churn_flag", f"{flag.column}" + (f", tenure {flag.tenure} ({flag.unit})"
                                                                          if flag.tenure else ""),
                                  "who left, and how long they had been customers"))
    decisions.append(Decision("data.as_of", str(as_of.date()), "--as-of" if "given" in as_of_why
                              else "ASSUMPTION: no date in the data, the day init ran" if as_of_why.startswith("ASSUMPTION")
                              else "the day after the data's last day"))
    decisions.append(Decision("labels.horizon_days", str(horizon), short["horizon"]))
    decisions.append(Decision("labels.cutoffs", f"{count} ({anchor})", short["count"]))
    if population_note:
        decisions.append(Decision("latest training cutoff", population_note.split("(", 1)[1].split(")")[0],
                                  population_note.split(": ", 1)[1]))
    if lookback is not None:
        decisions.append(Decision("labels.inactivity_lookback_days", str(lookback),
                                  f"p90 purchase gap; leaves out {excluded_share:.1%}" if excluded_note
                                  else "p90 of purchase gaps"))
    if windows != FeatureSettings().windows_days:
        decisions.append(Decision("features.windows_days", str(list(windows)), "history too short for longer ones"))

    # ---- value and money
    money = _money_plan(tables, definition, horizon, has_tx, plan)
    decisions.append(Decision("features.static_features", f"{len(kept)} column(s)",
                              f"{len(plan.left_out)} left out" if plan.left_out else "every other column"))
    if money["value_column"]:
        decisions.append(Decision("labels.customer_value_column", money["value_column"], money["value_column_why"]))
    decisions.append(Decision("economics.value_margin", str(money["margin"]), "an assumption: set your real margin"))
    if money["scale"] is not None:
        decisions.append(Decision("costs (contact, offer, playbook)", f"x {money['scale']:.3g} of the demo's",
                                  f"typical value per horizon {_num(money['value'])}"))
    else:
        decisions.append(Decision("costs (contact, offer, playbook)", "demo defaults", "no money figure in the data"))

    categories = _complaint_lists(tables)
    return _write_yaml(tables, paths, mappings, fixed, plan, as_of, as_of_why, problems, out, argv,
                       definition=definition, definition_why=definition_why, horizon=horizon, why=why,
                       count=count, anchor=anchor, windows=windows, lookback=lookback,
                       lookback_why=lookback_why, excluded_note=excluded_note, population_note=population_note,
                       kept=kept, money=money, categories=categories, hist=hist, snapshot=snapshot,
                       no_transactions=not has_tx, churn_rate=rate)


def _snapshot_horizon(tables: Tables, plan: Plan) -> int:
    """Shortest of 90, 180, 365, 730 days whose window before as_of holds >= 50 closures (else the
    one holding the most): one cutoff as_of - horizon, its churners are those closures."""
    counts: list[tuple[int, int]] = []
    for horizon in (plan.horizon,) if plan.horizon else (90, 180, 365, 730):
        cutoff = tables.as_of - pd.Timedelta(days=horizon)
        labels = build_labels(tables, cutoff, _labels("closure", horizon, count=1, anchor="as_of"))
        churners = int(labels["churned"].sum())
        counts.append((horizon, churners))
        if churners >= SNAPSHOT_MIN_CHURNERS:
            break
    best = next((h for h, n in counts if n >= SNAPSHOT_MIN_CHURNERS), None)
    if best is None:
        most = max(n for _, n in counts)
        if most == 0:
            raise ValidationFailed([Problem(
                "customers", "closed_date", 0,
                f"no closure in the {counts[-1][0]} days before as_of ({tables.as_of.date()}): a snapshot model "
                "learns from recent closures", "check closed_date, or give --as-of (the snapshot date)"
                + (" or a longer --horizon" if plan.horizon else ""))])
        best = next(h for h, n in counts if n == most)
        plan.warnings.append(f"only {most} closures within {best} days before as_of: too few for a reliable model")
    plan.snapshot_closures = dict(counts)
    return best


def _money_plan(tables: Tables, definition: str, horizon: int, has_tx: bool, plan: Plan) -> dict[str, Any]:
    """The value per horizon V, the margin assumption and the cost scale against the demo bank."""
    economics = EconomicsSettings()
    lifetime_horizons = max(1, round(LIFETIME_DAYS / horizon))
    result: dict[str, Any] = {"value_column": None, "value_column_why": "", "value": None, "value_why": "",
                              "margin": economics.value_margin, "margin_why": "", "scale": None,
                              "lifetime_horizons": lifetime_horizons}
    as_of = tables.as_of
    if has_tx:
        tx = tables.transactions
        sums = window_value(tx["customer_id"], tx["timestamp"], tx["amount"], as_of - pd.Timedelta(days=horizon), as_of)
        value = float(sums.median()) if len(sums) else float("nan")
        why = (f"median, over the {len(sums):,} customers with a transaction in the last {horizon} days before "
               f"as_of, of their net transaction amount in those days")
        if not value > 0 and len(sums):
            positive = window_value(tx["customer_id"], tx["timestamp"], tx["amount"].clip(lower=0),
                                    as_of - pd.Timedelta(days=horizon), as_of)
            value = float(positive.median())
            why += " was not positive, so of their incoming (positive) amounts"
        result.update(value=value, value_why=why)
        if definition == "inactivity":
            result.update(margin=0.25, margin_why=(
                "ASSUMPTION, set your real margin: purchases without account closures look like retail, where "
                "about 25% of the spend is gross margin"))
        else:
            result.update(margin=economics.value_margin, margin_why=(
                "ASSUMPTION, set your real margin: account flows with closures look like a bank, which earns a "
                "few percent of the money moved (the demo bank's 5%)"))
    else:
        customers = tables.customers
        contract = {c.name for c in TABLES["customers"].columns}
        left = {s.name for s in plan.left_out if s.kind in ("personal data", "identifier", "outcome")}
        candidates = value_column_candidates(customers, contract | left)
        if candidates:
            column, note = candidates[0]
            monthly = numeric_values(customers[column])
            value = float(monthly.median()) * horizon / DAYS_PER_MONTH
            others = [c for c, _ in candidates[1:]]
            result.update(value_column=column, value_column_why=(
                f"a numeric money-looking column ({note}), taken as each customer's value per month"
                + (f"; other candidates: {others}" if others else "")), value=value, value_why=(
                f"median {column} ({float(monthly.median()):,.2f} a month) x {horizon} days"))
            if "balance" in column.lower():
                result.update(margin=0.002, margin_why=(
                    "ASSUMPTION, set your real margin: a balance earns the institution about 2.5% a year "
                    "(net interest margin), 0.2% a month"))
            else:
                result.update(margin=0.3, margin_why=(
                    "ASSUMPTION, set your real margin: a charge, fee or premium the customer pays; about 30% of it "
                    "is profit after the cost of serving them"))
        else:
            result.update(margin_why="not used: there is no value in the data (see labels.customer_value_column)")
            plan.warnings.append("no transactions and no money-looking numeric customers column: the list will be "
                                 "ranked by risk only and money figures (value at risk, profit) cannot be computed")
            return result
    value = result["value"]
    if value is None or not value > 0:
        plan.warnings.append("the data's typical value is not positive: costs are left at the demo's defaults")
        return result
    reference = economics.value_margin * DEMO_VALUE_PER_90_DAYS * economics.lifetime_horizons
    result["scale"] = result["margin"] * value * lifetime_horizons / reference
    result["reference"] = reference
    return result


def _complaint_lists(tables: Tables) -> dict[str, Any]:
    """The data's complaint categories and channels, when they are not the defaults' names."""
    out: dict[str, Any] = {}
    complaints = tables.complaints
    if complaints is None or not len(complaints):
        return out
    name_ok = re.compile(r"^[a-z0-9][a-z0-9_]*$")
    for column, defaults, key in (("category", DEFAULT_COMPLAINT_CATEGORIES, "complaint_categories"),
                                  ("channel", DEFAULT_COMPLAINT_CHANNELS, "complaint_channels")):
        if column not in complaints:
            continue
        counts = complaints[column].astype("str").value_counts()
        counts = counts[counts.index.notna()]
        top = counts.index[: min(len(counts), 10)]
        if all(v in defaults for v in top):
            continue
        usable = [v for v in counts.index if name_ok.match(v) and v != "other"][:50]
        pooled = [v for v in counts.index if v not in usable]
        if usable:
            out[key] = (usable, pooled)
    return out


# ---------------------------------------------------------------- writing


def _write_yaml(tables: Tables, paths: dict[str, Path], mappings: dict[str, dict[str, str]],
                fixed: dict[str, dict[str, str]], plan: Plan, as_of: pd.Timestamp, as_of_why: str,
                problems: list[Problem], out: Path, argv: list[str] | None, **d: Any) -> str:
    y = Yaml()
    stamp = pd.Timestamp.now().strftime("%Y-%m-%d %H:%M")
    command = " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    y.comment(f"Written by `churn init` on {stamp} from your files: churn {command}")
    y.comment("Every value chosen from the data says why beside it. Check the lines marked ASSUMPTION, then run:")
    y.comment(f"  churn run --config {out}")
    y.comment("Keys not written here take the defaults documented in configs/default.yaml.")
    y.comment("")
    y.comment("What init found:")
    for name in TABLES:
        frame = getattr(tables, name)
        if frame is None:
            continue
        when = TABLES[name].event_time or "signup_date"
        span = ""
        if when in frame and frame[when].notna().any():
            span = f", {when} {frame[when].min().date()} to {frame[when].max().date()}"
        extra = ""
        if name == "customers":
            closed = int(frame["closed_date"].notna().sum()) if "closed_date" in frame else 0
            extra = (f", {closed:,} flagged as churned in {plan.flag.column!r} (their dates derived: labels.churn_flag)"
                     if plan.flag is not None else f", {closed:,} with a closed_date")
        elif len(frame):
            per = len(frame) / max(frame["customer_id"].nunique(), 1)
            extra = f", {frame['customer_id'].nunique():,} customers ({per:,.1f} rows each)"
        y.comment(f"  {name}: {len(frame):,} rows{span}{extra}", 0)
    hist: History | None = d["hist"]
    if hist is not None and pd.notna(hist.start):
        y.comment(f"  history: {hist.months} months of events from {hist.start.date()} "
                  f"(median {hist.median_per_month:,.0f} events a month)"
                  + (f"; {hist.ignored:,} earlier event(s) in sparse months (from {hist.first.date()}) are not "
                     "counted as history when choosing the cutoffs" if hist.ignored else ""))
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        y.comment(f"  INPUT PROBLEMS: `churn validate` will stop on {len(errors)} problem(s) until they are "
                  "fixed in the files:")
        for problem in errors[:10]:
            y.comment(f"    - {problem}")
    for warning in plan.warnings:
        y.comment(f"  NOTE: {warning}")
    y.blank()

    # data
    y.key(0, "data")
    y.comment(f"as_of: the date the data is complete up to (exclusive); {as_of_why}. Fixed here so every "
              "stage uses the same date; " + ("with a new snapshot, set its date." if plan.flag is not None else
                                              "set it to null to infer it again after refreshing the files "
                                              "(or to the new date)."), 2)
    y.key(2, "as_of", str(as_of.date()))
    y.key(2, "tables")
    for name, path in paths.items():
        y.key(4, name)
        y.key(6, "path", str(path))
        columns = {c: f for c, f in mappings[name].items() if c != f}
        if columns:
            how = ", ".join(f"{c}={f!r} ({'--column' if c in fixed.get(name, {}) else 'by its name'})"
                            for c, f in columns.items())
            y.comment(f"contract column: your file's column name. {how}", 6)
            y.key(6, "columns", columns)
        derived = {"signup_date", "closed_date"} if name == "customers" and plan.flag is not None else set()
        if derived - set(mappings[name]):
            y.comment(f"derived from the churn flag (labels.churn_flag): {', '.join(sorted(derived - set(mappings[name])))}", 6)
        unmapped = [c.name for c in TABLES[name].columns if c.name not in mappings[name] and c.name not in derived]
        if unmapped:
            y.comment(f"not found in the file (optional; map with --column {name}.COLUMN=FILECOLUMN): "
                      f"{', '.join(unmapped)}", 6)
    y.blank()

    # features
    kept: list[StaticColumn] = d["kept"]
    windows = d["windows"]
    y.key(0, "features")
    if windows != FeatureSettings().windows_days:
        y.comment(f"windows_days: {d['why']['windows']}.", 2)
        y.key(2, "windows_days", list(windows))
    y.comment("static_features: the customers' other columns, typed from their content (numeric when every "
              "non-empty value is a number, else categorical). Their values are as exported, not as of each "
              "cutoff: keep only attributes that do not change after the fact.", 2)
    y.key(2, "static_features", [s.name for s in kept])
    y.key(2, "static_types", {s.name: s.kind for s in kept})
    if plan.left_out:
        y.comment("left out (personal data never becomes a feature; add another column back to static_features "
                  "only if it is a real attribute, stable and known before the outcome):", 2)
        for s in plan.left_out:
            y.comment(f"  - {s.name}: {s.why}", 2)
    for key, (usable, pooled) in d["categories"].items():
        y.comment(f"{key}: your complaints' values, most frequent first (the defaults name the demo bank's)"
                  + (f"; pooled as `other` (not usable in column names or beyond 50): {pooled[:10]}" if pooled else ""),
                  2)
        y.key(2, key, usable)
        if key == "complaint_categories":
            y.key(2, "top_complaint_categories", min(10, len(usable)), "the first this-many get a count column each")
    y.blank()

    # labels
    definition = d["definition"]
    y.key(0, "labels")
    y.comment(f"definition: {d['definition_why']}.", 2)
    y.key(2, "definition", definition)
    note = d["population_note"]
    y.comment(f"horizon_days: churn within this many days after a cutoff; {d['why']['horizon']}."
              + (f" {note[0].upper()}{note[1:]}." if note else ""), 2)
    y.key(2, "horizon_days", d["horizon"])
    if d["lookback"] is not None:
        y.comment(f"inactivity_lookback_days: who counts as a customer at a cutoff: a purchase in this many days "
                  f"before it. {d['lookback_why']}."
                  + (f" {d['excluded_note'][0].upper()}{d['excluded_note'][1:]}." if d["excluded_note"] else ""), 2)
        y.key(2, "inactivity_lookback_days", d["lookback"])
    money = d["money"]
    if money["value_column"]:
        y.comment(f"customer_value_column: {money['value_column_why']}; it is the customer's value when there "
                  "are no transactions.", 2)
        y.key(2, "customer_value_column", money["value_column"])
    elif d["no_transactions"]:
        y.comment("customer_value_column: none found (no numeric column named like charge, fee, revenue, value, "
                  "spend, amount, price, premium, balance or cost): the list will be ranked by risk only. Name "
                  "a customers column holding each customer's value per month here to rank by value at risk.", 2)
        y.key(2, "customer_value_column", None)
    y.key(2, "cutoffs")
    y.comment(f"count: {d['why']['count']}.", 4)
    y.key(4, "count", d["count"])
    if d["anchor"] == "as_of":  # a snapshot, or a churn flag (which may come with a contact history)
        y.key(4, "anchor", "as_of", f"the cutoff is exactly as_of - {d['horizon']} days")
    else:
        y.key(4, "anchor", "month_start", "cutoffs on the first of a month, the latest with a full label window")
    y.key(4, "spacing_months", 1)
    if plan.flag is not None:
        flag = plan.flag
        y.comment("churn_flag: churn is a flag column: who left in the window [as_of - horizon_days, as_of). When "
                  "the table is read, each flagged customer's closed_date is the window's start and each "
                  "customer's signup_date the window's start minus the tenure (features/snapshot.py). The day each "
                  "churner left is unknown, so no time to churn is learnt; `churn score` scores the customers "
                  "who stayed, as of the window's start, the moment the snapshot describes.", 2)
        y.key(2, "churn_flag")
        y.key(4, "column", flag.column, flag.why)
        if flag.churned_values:
            y.key(4, "churned_values", flag.churned_values, "given with --churned-value: any other value means stayed")
        else:
            y.comment("churned_values: not set: 1, true, yes, y, t (any case) mean churned; 0, false, no, n, f "
                      "stayed; list your own (any other value then means stayed)", 4)
        y.key(4, "tenure_column", flag.tenure, flag.tenure_why)
        if flag.tenure is not None:
            y.key(4, "tenure_unit", flag.unit, flag.unit_why)
    y.blank()

    # paths and tracking of their own
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", out.stem) or "mine"
    y.comment(f"Outputs and MLflow store of their own, so this config's runs and models never mix with the demo's "
              f"(MLFLOW_TRACKING_URI in the environment still wins). Browse: mlflow ui --backend-store-uri "
              f"sqlite:///mlflow-{stem}.db")
    y.key(0, "paths")
    y.key(2, "features_dir", f"data/{stem}/features")
    y.key(2, "outputs_dir", f"data/{stem}/outputs")
    y.key(2, "reports_dir", f"reports/{stem}")
    y.key(0, "tracking")
    y.key(2, "tracking_uri", f"sqlite:///mlflow-{stem}.db")
    y.key(2, "artifact_location", f"mlartifacts-{stem}")
    y.key(2, "experiment", f"churn-care-{stem}")
    y.blank()

    # economics and playbook
    economics = EconomicsSettings()
    scale = money["scale"]
    y.key(0, "economics")
    if scale is None:
        y.comment("Money figures cannot be computed from this data (no transactions and no value column): the "
                  "demo's defaults are kept and do not affect a list ranked by risk.", 2)
    else:
        y.comment(f"Costs scaled to your money. Typical value per horizon V = {_num(money['value'])} "
                  f"({money['value_why']}). A typical customer's margin over about two years = value_margin x V x "
                  f"lifetime_horizons = {money['margin']} x {_num(money['value'])} x {money['lifetime_horizons']} = "
                  f"{_num(money['margin'] * money['value'] * money['lifetime_horizons'])}; in the demo bank "
                  f"{economics.value_margin} x {DEMO_VALUE_PER_90_DAYS:,.0f} x {economics.lifetime_horizons} = "
                  f"{_num(money['reference'])}, with contact {economics.contact_cost:g} and offer "
                  f"{economics.offer_cost:g}. Every cost below is the demo's x {scale:.3g}, so each action costs "
                  "the same share of a typical customer's margin. Replace them with your real costs.", 2)
    y.key(2, "contact_cost", _money(economics.contact_cost * (scale or 1.0)))
    y.key(2, "offer_cost", _money(economics.offer_cost * (scale or 1.0)))
    y.key(2, "lifetime_horizons", money["lifetime_horizons"],
          f"{money['lifetime_horizons']} x {d['horizon']} days = about two years of value")
    y.comment(f"value_margin: {money['margin_why']}.", 2)
    y.key(2, "value_margin", money["margin"])
    rate = d["churn_rate"]
    share = min(0.2, max(0.01, math.ceil(100 * rate) / 100)) if rate == rate else 0.05
    flag_top = money["value"] is None or (rate == rate and rate < 0.1)
    if flag_top or scale is not None:
        y.blank()
        y.key(0, "scoring")
    if flag_top:
        y.key(2, "segments")
        if money["value"] is None:
            why = "with no value in the data the list takes the churn-warning customers by risk alone; "
        else:
            why = ("the win-back action of the churn_warning segment should reach the riskiest customers (the "
                   "expected-benefit rule still decides who is worth a call); ")
        y.comment(f"churn_warning_top_share: {why}a probability threshold (0.3) is rarely reached when few "
                  f"customers churn, so the top {share:.0%} by risk are flagged too: the churn rate at the latest "
                  f"training cutoff ({rate:.1%}), rounded up to a whole percent, within [1%, 20%]. Team capacities "
                  "(scoring.selection.capacity) still cap the list.", 4)
        y.key(4, "churn_warning_top_share", share)
        plan.decisions.append(Decision("scoring.segments.churn_warning_top_share", f"{share:.2f}",
                                       "risk-only list: the top share by risk" if money["value"] is None
                                       else "few churners: the riskiest get the win-back action"))
    if scale is not None:
        playbook = PlaybookSettings()
        y.key(2, "playbook")
        y.comment(f"The demo's care playbook (configs/default.yaml) with each cost x {scale:.3g} (see economics).", 4)
        y.key(4, "actions")
        for segment, action in playbook.actions.items():
            _action(y, 6, segment, action.model_dump(), scale)
        _action(y, 4, "complaint_first", playbook.complaint_first.model_dump(), scale)
    return y.text()


def _action(y: Yaml, indent: int, name: str, action: dict[str, Any], scale: float) -> None:
    y.key(indent, name)
    for key, value in action.items():
        if key == "cost":
            y.key(indent + 2, key, _money(value * scale), f"demo {value:g} x {scale:.3g}")
        else:
            y.key(indent + 2, key, value)


def _snapshot_why(plan: Plan) -> str:
    counts = plan.snapshot_closures
    seen = ", ".join(f"{n:,} within {h} days" for h, n in counts.items())
    return (f"the shortest of 90, 180, 365, 730 days whose window before as_of holds at least "
            f"{SNAPSHOT_MIN_CHURNERS} closures to learn from ({seen})")


def decisions_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The decisions as (setting, value, why) rows for the console."""
    return [(d.setting, d.value, d.why) for d in result["decisions"]]


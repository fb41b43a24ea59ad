"""The `features` stage: training and scoring feature tables from the validated input tables.

Reads the tables named in the config (validated by `pipelines.tables.load_tables`), builds
the training table (every training cutoff, with labels) and the scoring table (at the
data's as-of date, no labels), and writes these five files together (`pipelines.io.StageOutputs`:
a new generation switched in with one rename, so readers never see tables of two runs side by
side; a second run on the same folder stops at once):

- `{paths.features_dir}/train.parquet`: one row group per cutoff, written as each cutoff
  is built, so a large table is never held in memory whole;
- `{paths.features_dir}/score.parquet`;
- `{paths.features_dir}/excluded.parquet`: the customers a population rule left out (today
  the `inactivity` look-back, `labels.inactivity_lookback_days`), per cutoff, with the
  reason and the key that controls it (`table`: train or score);
- `{paths.features_dir}/uplift.parquet`: the uplift training rows (`models/uplift/data.py`):
  customers at a month-start cutoff whose first contact record in the next
  `uplift.treatment_window_days` is contacted (treatment 1) or randomised control (0), with
  the churn features at the cutoff and the churn label; empty, with the reason in the
  summary, when the contacts table has no control group;
- `{paths.reports_dir}/features_summary.json`: rows, cutoffs, churn rate per cutoff, how
  many customers each population rule left out, and the feature list (no customer data);
  also what the tables were built from (`built_from`: every `features` and `labels` setting,
  `data.as_of`, each input table's sha256) and each table's sha256 (`outputs`). `churn train`
  refuses a training table whose record does not match its own config and data
  (`check_built_from`), naming the key.

A training table with no churner at all (or only churners) is refused with the dates and
keys that decide the labels: that is a config or data problem, not a model to fit.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import (ExclusionSink, build_scoring_table, feature_columns, iter_training_tables,
                            prepare_taking, scoring_table_of, tables_as_of, uplift_stage_inputs)
from features.contract import EVENT_TABLES, Tables
from features.ids import training_sample
from features.labels import EXCLUSION_REASONS
from models.uplift.data import (build_uplift_table, control_group_problem, iter_training_and_uplift_tables,
                               uplift_table)
from pipelines.config import Config
from pipelines.fingerprint import ENGINE_SETTINGS, flatten_params, input_fingerprint
from pipelines.io import StageError, StageOutputs, write_frames, write_json, write_parquet
from pipelines.outputs import stage_paths
from pipelines.relational import RelationalSource, resolve_engine
from pipelines.tables import (held_rows, input_rows, load_sampled_tables, load_tables, pandas_row_limit,
                              release_memory, scoring_read_from, table_format)

TRAIN_FILE = "train.parquet"
SCORE_FILE = "score.parquet"
EXCLUDED_FILE = "excluded.parquet"
SUMMARY_FILE = "features_summary.json"
UPLIFT_FILE = "uplift.parquet"


def write_training_table(frames: Any, path: Path, on_cutoff: Callable[[pd.DataFrame], None],
                         check: Callable[[list[tuple[str, int, int]]], None] | None = None) -> None:
    """Write the per-cutoff frames into one Parquet file atomically, one row group per cutoff.

    `check` sees (cutoff, rows, churners) of every cutoff before the file is committed and
    may raise to refuse the table (nothing is then written).
    """
    rates: list[tuple[str, int, int]] = []

    def record(frame: pd.DataFrame) -> None:
        on_cutoff(frame)
        rates.append((str(pd.Timestamp(frame["cutoff"].iloc[0]).date()), len(frame), int(frame["churned"].sum())))

    def verify(wrote: bool) -> None:
        if not wrote:
            raise StageError("no training rows: every training cutoff has an empty population "
                             "(see the population rules in docs/data-contract.md)")
        if check is not None:
            check(rates)

    write_frames(frames, path, record, verify)


SCORE_PIECE_ROWS = 250_000
"""Rows of the scoring table the relational engines hand over at a time (`RelationalSource.scoring_pieces`),
each written as it comes: at 10M customers the whole table would be about 6 GB in pandas."""


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build and write the training and scoring tables; return the summary that was written."""
    say = progress or (lambda message: None)
    features_dir = Path(cfg.paths.features_dir)
    outputs = StageOutputs("features", stage_paths(cfg, "features"), say)
    with outputs, outputs.commit() as files:  # the five files switch in together when the block ends
        summary = _build(cfg, say, files, outputs)
    say(f"wrote {features_dir / TRAIN_FILE} ({summary['train']['rows']:,} rows, {summary['feature_count']} features), "
        f"{features_dir / SCORE_FILE} ({summary['score']['rows']:,} rows) and {features_dir / EXCLUDED_FILE} "
        f"({summary['outputs'][EXCLUDED_FILE]['rows']:,} rows) and the uplift rows {features_dir / UPLIFT_FILE} "
        f"({summary['outputs'][UPLIFT_FILE]['rows']:,})")
    return summary


def _build(cfg: Config, say: Callable[[str], None], files: dict[str, Path], outputs: StageOutputs) -> dict[str, Any]:
    fingerprint = input_fingerprint(cfg)  # the inputs' sha256 before they are read: a table changed meanwhile shows
    origin = built_from(cfg, fingerprint)  # as configured (`auto` stays auto): what `churn train` compares
    cfg = resolve_engine(cfg, say, features_held_rows)
    relational: RelationalSource | None = None
    read = uplift_stage_inputs(cfg.features, cfg.labels)  # the columns the features and labels read, contacts whole
    split = cfg.features.engine == "pandas" and reads_in_two_parts(cfg)
    first_event: pd.Timestamp | None = None
    if split:
        tables, sample = load_sampled_tables(cfg, whole=("customers", "contacts"), columns=read)
        first_event = sample.first_event if sample is not None else None
        say(f"the training sample's rows loaded ({', '.join(tables.present())}; every customer and contact, the "
            f"events of {sample.kept if sample is not None else len(tables.customers):,} customers: "
            "labels.max_training_customers); every row would not fit in memory "
            f"({pandas_row_limit(cfg)[1]}); the scoring table's rows are read after the training rows are written; "
            f"data as of {tables_as_of(tables).date()}")
    elif cfg.features.engine == "pandas":
        tables = load_tables(cfg, columns=read)
        say(f"tables loaded ({', '.join(tables.present())}); data as of {tables_as_of(tables).date()}")
    else:
        relational = RelationalSource(cfg, say, fingerprint=fingerprint)
        tables = relational.tables
    as_of = tables_as_of(tables)
    features_dir = Path(cfg.paths.features_dir)
    per_cutoff: list[dict[str, Any]] = []
    columns: list[str] = []
    excluded: list[pd.DataFrame] = []
    latest_counts: dict[str, int] = {}

    def train_sink(frame: pd.DataFrame, counts: dict[str, int]) -> None:
        excluded.append(frame.assign(table="train"))
        latest_counts.clear()
        latest_counts.update(counts)

    def record(frame: pd.DataFrame) -> None:
        cutoff = pd.Timestamp(frame["cutoff"].iloc[0])
        rate = float(frame["churned"].mean())
        dropped = latest_counts.get("no_transaction_in_lookback", 0)
        per_cutoff.append({"cutoff": cutoff.date().isoformat(), "rows": int(len(frame)), "churn_rate": rate,
                           "not_in_population": dict(latest_counts)})
        if not columns:
            columns.extend(feature_columns(frame))
        note = (f"; {dropped:,} left out: no transaction in the {cfg.labels.inactivity_lookback_days} days "
                "before (labels.inactivity_lookback_days)") if dropped else ""
        say(f"cutoff {cutoff.date()}: {len(frame):,} customers, churn rate {rate:.1%}{note}")

    uplift_too = cfg.uplift if cfg.uplift.enabled and control_group_problem(tables.contacts) is None else None
    uplift_pieces: list[tuple[pd.DataFrame, dict[str, int]]] = []

    def training_and_uplift() -> Iterator[pd.DataFrame]:
        """The training frames; the uplift rows of the same pass kept aside (each shared cutoff computed once)."""
        for kind, frame, counts in iter_training_and_uplift_tables(tables, cfg.features, cfg.labels, cfg.uplift,
                                                                   train_sink, first_event):
            if kind == "train":
                yield frame
            else:
                uplift_pieces.append((frame, counts))

    if relational is not None:
        training = relational.training(train_sink, uplift_too)  # the uplift rows in the same pass
    elif uplift_too is not None:
        training = training_and_uplift()
    else:
        training = iter_training_tables(tables, cfg.features, cfg.labels, train_sink, first_event)
    write_training_table(training, files[TRAIN_FILE], record, check=lambda rates: _check_labels(rates, tables, cfg))
    sampled = sample_left_out(tables.customers["customer_id"], cfg.labels.max_training_customers)
    if sampled is not None:
        excluded.append(sampled[0])
        say(f"training rows from a uniform sample of {sampled[1]['in_sample']:,} of {sampled[1]['customers']:,} "
            f"customers (labels.max_training_customers); the other {sampled[1]['left_out']:,} are listed in "
            f"{features_dir / EXCLUDED_FILE} (reason {SAMPLE_REASON}); "
            + ("the uplift rows are the sample's too, " if uplift_too is not None else "")
            + "the scoring table holds everyone")
    say("building the scoring table")
    score_excluded: dict[str, int] = {}

    def score_sink(frame: pd.DataFrame, counts: dict[str, int]) -> None:
        excluded.append(frame.assign(table="score"))
        score_excluded.update(counts)

    present = tables.present() if relational is None else list(cfg.data.tables)
    if split:  # the sample's events and every customer go (the contacts stay: the uplift rows' account); the
        # scoring cutoff's rows are then read as `churn score` reads them
        tables = replace(tables, customers=tables.customers.iloc[:0], transactions=None, complaints=None, surveys=None)
        release_memory()
        score_rows = write_frames([scoring_table(cfg, read, as_of, score_sink)], files[SCORE_FILE])
    else:
        score_rows = write_frames([build_scoring_table(tables, cfg.features, cfg.labels, on_excluded=score_sink)]
                                  if relational is None else relational.scoring_pieces(score_sink,
                                                                                       piece_rows=SCORE_PIECE_ROWS),
                                  files[SCORE_FILE])
    left = excluded_table(excluded)
    write_parquet(left, files[EXCLUDED_FILE])
    one_pass = relational is None and uplift_too is not None  # the uplift rows came with the training rows
    uplift_rows, uplift_summary = build_uplift_rows(tables, cfg, say, relational,
                                                    uplift_table(uplift_pieces) if one_pass else None)
    write_parquet(uplift_rows, files[UPLIFT_FILE])
    summary: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "tables": present,
        "engine": cfg.features.engine,
        "label_definition": cfg.labels.definition,
        "horizon_days": cfg.labels.horizon_days,
        "window_convention": "[start, end): features use events before the cutoff; labels [cutoff, cutoff + horizon)",
        "train": {
            "rows": sum(item["rows"] for item in per_cutoff),
            "cutoffs": [item["cutoff"] for item in per_cutoff],
            "rows_per_cutoff": {item["cutoff"]: item["rows"] for item in per_cutoff},
            "churn_rate_per_cutoff": {item["cutoff"]: item["churn_rate"] for item in per_cutoff},
            "not_in_population_per_cutoff": {item["cutoff"]: item["not_in_population"] for item in per_cutoff},
        },
        "score": {"rows": score_rows, "cutoff": as_of.isoformat(),
                  "not_in_population": score_excluded},
        "population_rules": {name: {"meaning": meaning, "controlled_by": key}
                             for name, (meaning, key) in EXCLUSION_REASONS.items()},
        "excluded_file": str(features_dir / EXCLUDED_FILE),
        "feature_count": len(columns),
        "features": columns,
        "built_from": origin,
        "uplift": uplift_summary,
        "training_sample": sampled[1] if sampled is not None else None,
    }
    summary["outputs"] = {name: {"sha256": outputs.sha256(name), "rows": int(rows)} for name, rows in
                          ((TRAIN_FILE, summary["train"]["rows"]), (SCORE_FILE, score_rows), (EXCLUDED_FILE, len(left)),
                           (UPLIFT_FILE, len(uplift_rows)))}
    write_json(summary, files[SUMMARY_FILE])
    dropped = score_excluded.get("no_transaction_in_lookback", 0)
    if dropped:
        say(f"scoring date {as_of.date()}: {dropped:,} customers left out (no transaction in the "
            f"{cfg.labels.inactivity_lookback_days} days before; labels.inactivity_lookback_days); "
            f"who they are: {features_dir / 'excluded.parquet'}")
    return summary


def build_uplift_rows(tables: Tables, cfg: Config, say: Callable[[str], None],
                      relational: RelationalSource | None = None,
                      built: tuple[pd.DataFrame, dict[str, int]] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The uplift training rows and what to say about them (rows, control rows, who was left out, or why none);
    `relational`: the source the rows' features come from when `features.engine` is not pandas; `built`: the
    rows and counts already made in the training rows' pass (`iter_training_and_uplift_tables`)."""
    settings = {"treatment_window_days": cfg.uplift.treatment_window_days,
                "cutoff_spacing_months": cfg.uplift.cutoff_spacing_months}
    empty = pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "cutoff": pd.Series([], dtype="datetime64[us]"),
                          "treatment": pd.Series([], dtype="int64")})
    why = control_group_problem(tables.contacts) if cfg.uplift.enabled else "uplift.enabled is false"
    if why is not None:
        say(f"no uplift rows: {why}; the list is ranked by value at risk")
        return empty, {"rows": 0, "why_none": why, "settings": settings}
    if built is None:
        say("building the uplift rows (contacted and randomised control customers at each month start)")
    rows, left_out = (built if built is not None
                      else build_uplift_table(tables, cfg.features, cfg.labels, cfg.uplift) if relational is None
                      else relational.uplift(cfg.uplift))
    if rows.empty:
        why = ("no contact record falls in a treatment window whose label window ends by data.as_of "
               f"(uplift.treatment_window_days {cfg.uplift.treatment_window_days}, labels.horizon_days "
               f"{cfg.labels.horizon_days})")
        say(f"no uplift rows: {why}")
        return empty, {"rows": 0, "why_none": why, "left_out": left_out, "settings": settings}
    control = int((rows["treatment"] == 0).sum())
    say(f"uplift rows: {len(rows):,} ({control:,} randomised control) at {rows['cutoff'].nunique()} cutoffs"
        + (f"; left out: {', '.join(f'{k} {v:,}' for k, v in left_out.items() if v)}" if any(left_out.values()) else ""))
    return rows, {"rows": int(len(rows)), "control_rows": control, "cutoffs": int(rows["cutoff"].nunique()),
                  "left_out": left_out, "settings": settings,
                  "definition": "first contact record in [cutoff, cutoff + uplift.treatment_window_days) of a "
                                "customer in the population at the cutoff; features at the cutoff; churn label of the cutoff"}


UPLIFT_TABLE_KEYS: tuple[str, ...] = ("enabled", "treatment_window_days", "cutoff_spacing_months")
"""The `uplift` keys the uplift table (uplift.parquet) is built with; the others only shape the model."""


def settings_of(cfg: Config) -> dict[str, str]:
    """The settings the feature tables depend on: every `features` and `labels` key, `data.as_of`, and
    the `uplift` keys that decide the uplift rows (`UPLIFT_TABLE_KEYS`); not the `ENGINE_SETTINGS`
    (`features.pandas_max_rows`, `features.duckdb`, `features.spark`: which engine `auto` takes, its threads,
    memory and session change how fast, never what is computed)."""
    features = {key: value for key, value in flatten_params(cfg.features, "features.").items()
                if not key.startswith(ENGINE_SETTINGS)}
    return {**features, **flatten_params(cfg.labels, "labels."), "data.as_of": str(cfg.data.as_of),
            **{f"uplift.{key}": str(getattr(cfg.uplift, key)) for key in UPLIFT_TABLE_KEYS}}


def built_from(cfg: Config, fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the feature tables are built from: the settings and each input table's sha256, rows and bytes."""
    fingerprint = fingerprint or input_fingerprint(cfg)
    return {"settings": settings_of(cfg),
            "tables": {name: {k: entry.get(k) for k in ("sha256", "rows", "bytes")}
                       for name, entry in fingerprint["tables"].items()}}  # type: ignore[union-attr]


def check_built_from(cfg: Config, fingerprint: dict[str, Any], summary_path: Path | None = None) -> dict[str, Any]:
    """Refuse (StageError, exit 4) a training table not built from this config and these inputs.

    `fingerprint` is `input_fingerprint(cfg, {"train_table": train.parquet})`. Compares the
    record in `features_summary.json` with the config's settings, the input tables' sha256
    and the training table's own sha256; the message names the first key or file that
    differs and says to run `churn features`. Returns the summary. `summary_path`: where to read
    the summary (default its public path; a reader gives the one of the generation it reads).
    """
    public_summary = Path(cfg.paths.reports_dir) / SUMMARY_FILE
    summary_path = summary_path or public_summary
    train_path = Path(cfg.paths.features_dir) / TRAIN_FILE
    rerun = "run `churn features` with this config first"
    if not summary_path.is_file():
        raise StageError(f"{public_summary} does not exist, so nothing says which settings and data {train_path} was "
                         f"built from: {rerun}")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise StageError(f"{public_summary} is not valid JSON ({error}): {rerun}") from None
    record = summary.get("built_from") if isinstance(summary, dict) else None
    if not isinstance(record, dict) or "settings" not in record:
        raise StageError(f"{public_summary} was written by an older version and does not say which settings {train_path} "
                         f"was built with: {rerun}")
    then = record["settings"]
    for key, value in settings_of(cfg).items():
        if key in then and then[key] != value:
            raise StageError(f"{key} is {value} in the config but {train_path} was built with {then[key]}: {rerun}")
    tables_now = fingerprint["tables"]
    tables_then = record.get("tables", {})
    for name in sorted(set(tables_now) | set(tables_then)):
        if name not in tables_then:
            raise StageError(f"data.tables.{name} is in the config but {train_path} was built without it: {rerun}")
        if name not in tables_now:
            raise StageError(f"{train_path} was built with data.tables.{name}, which is no longer in the config: {rerun}")
        if tables_now[name].get("sha256") != tables_then[name].get("sha256"):
            raise StageError(f"input table {name} ({tables_now[name].get('path')}) has changed since {train_path} was "
                             f"built (sha256 {str(tables_then[name].get('sha256'))[:12]} then, "
                             f"{str(tables_now[name].get('sha256'))[:12]} now): {rerun}")
    written = summary.get("outputs", {}).get(TRAIN_FILE, {}).get("sha256")
    actual = fingerprint["stage_inputs"]["train_table"].get("sha256")
    if written != actual:
        raise StageError(f"{train_path} is not the table {public_summary} describes (sha256 {str(actual)[:12]}, "
                         f"recorded {str(written)[:12]}): it was replaced after `churn features` ran; {rerun}")
    return summary


def reads_in_two_parts(cfg: Config) -> bool:
    """Whether the pandas engine reads the training sample's rows (`load_sampled_tables`: the events of
    `labels.max_training_customers` customers, every customer and contact) and, once the training and uplift
    rows are written, the scoring cutoff's (`scoring_table`), instead of every table whole: when every row
    would not fit (`pandas_row_limit`) but each part does (`two_part_rows`). The same outputs either way."""
    parts = two_part_rows(cfg)
    return parts is not None and parts[0] <= pandas_row_limit(cfg)[0]


def two_part_rows(cfg: Config) -> tuple[int, str] | None:
    """The rows of the larger part of a two-part read and which (`reads_in_two_parts`), or None when it does not
    apply: every row fits, the data has no more customers than the sample, a churn flag (the scoring dates come
    from the loaded customers), or an event table that is not Parquet (read in batches, the transactions from the
    scoring look-back on). The parts: the training sample's (a uniform share of the events, every customer and
    contact) and the scoring cutoff's (`pipelines.tables.held_rows` of its transactions)."""
    limit = cfg.labels.max_training_customers
    events = [name for name in EVENT_TABLES if name in cfg.data.tables]
    customers = input_rows(cfg, ["customers"])
    if (limit is None or cfg.labels.churn_flag is not None or customers <= limit
            or any(table_format(cfg.data.tables[name]) != "parquet" for name in events)
            or input_rows(cfg) <= pandas_row_limit(cfg)[0]):
        return None
    sample = customers + input_rows(cfg, ["contacts"]) + int(limit / customers * input_rows(cfg, ["transactions",
                                                                                                  "complaints",
                                                                                                  "surveys"]))
    scoring, which = held_rows(cfg, transactions_from=functools.partial(scoring_read_from, as_of=None, cfg=cfg))
    return max(sample, scoring), (f"in two parts: the training sample's about {sample:,} (labels.max_training_customers)"
                                  f", then the scoring cutoff's {scoring:,}" + (f" ({which})" if which else ""))


def features_held_rows(cfg: Config) -> tuple[int, str]:
    """The input rows `churn features` holds in pandas and which (`resolve_engine`): every row, or the larger
    part of a two-part read (`two_part_rows`)."""
    return two_part_rows(cfg) or (input_rows(cfg), "")


def scoring_table(cfg: Config, read: dict[str, tuple[str, ...]], as_of: pd.Timestamp,
                  on_excluded: ExclusionSink) -> pd.DataFrame:
    """The scoring table at `as_of` from the rows its features read, loaded as `churn score` loads them (the
    transactions from the look-back on, the earlier ones as each customer's latest date), each table freed once
    its arrays are made: `build_scoring_table` of the whole tables, cell for cell."""
    owner = [load_tables(cfg, transactions_from=functools.partial(scoring_read_from, as_of=None, cfg=cfg),
                         columns=read)]
    if tables_as_of(owner[0]) != as_of:  # the same files: the same end (a file changed meanwhile would show here)
        raise StageError(f"the data's end moved while the stage ran ({as_of.date()}, then "
                         f"{tables_as_of(owner[0]).date()}): an input file changed; run `churn features` again")
    prepared = prepare_taking(owner, cfg.features, cfg.labels.value_column)
    release_memory()
    return scoring_table_of(prepared, as_of, cfg.features, cfg.labels, on_excluded)


SAMPLE_REASON = "not_in_training_sample"


def sample_left_out(customer_ids: pd.Series, max_customers: int | None
                    ) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The customers `labels.max_training_customers` leaves out of the training rows (excluded-table rows:
    no cutoff, as they are left out at every one) and the summary's account of the sample; None without one."""
    ids = customer_ids.astype("str").reset_index(drop=True)
    chosen = training_sample(ids, max_customers)
    if chosen is None:
        return None
    out = ids[~chosen].sort_values(kind="stable", ignore_index=True)

    def constant(text: str) -> pd.Categorical:  # a byte a row until `excluded_table` writes them (9M rows at 10M)
        return pd.Categorical.from_codes(np.zeros(len(out), dtype=np.int8), categories=[text])

    frame = pd.DataFrame({"customer_id": out, "cutoff": pd.Series(pd.NaT, index=out.index, dtype="datetime64[us]"),
                          "reason": constant(SAMPLE_REASON), "setting": constant("labels.max_training_customers"),
                          "table": constant("train")})
    return frame, {"max_customers": max_customers, "customers": int(len(ids)), "in_sample": int(chosen.sum()),
                   "left_out": int(len(out)), "controlled_by": "labels.max_training_customers",
                   "how": "the customers with the lowest hashed share of their id (features/ids.py training_sample): "
                          "a uniform sample, the same at every cutoff and in every run; no weights are needed, as "
                          "the sample does not depend on the outcome"}


def excluded_table(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One table of every rule exclusion (train cutoffs, then the scoring date), with fixed column types."""
    columns = {"customer_id": "str", "cutoff": "datetime64[us]", "reason": "str", "setting": "str", "table": "str"}
    if not parts:
        return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()})
    frame = pd.concat([p.astype({"reason": "str", "setting": "str"}) for p in parts], ignore_index=True)
    return frame[list(columns)].astype(columns)


def _check_labels(rates: list[tuple[str, int, int]], tables: Tables, cfg: Config) -> None:
    """Refuse a training table with a single class; name the dates and keys that decide the labels."""
    rows = sum(n for _, n, _ in rates)
    churners = sum(c for _, _, c in rates)
    if 0 < churners < rows:
        return
    what = "no customer churned" if churners == 0 else "every customer churned"
    labels = cfg.labels
    if labels.definition == "closure":
        closed = tables.customers["closed_date"].dropna() if "closed_date" in tables.customers else pd.Series([])
        span = (f"the customers' closed_date values run from {pd.Timestamp(closed.min()).date()} to "
                f"{pd.Timestamp(closed.max()).date()} ({len(closed):,} closures)") if len(closed) else             "the customers table has no closed_date values (no closures: use labels.definition: inactivity "             "with a transactions table)"
        rule = "churn = closed_date in [cutoff, cutoff + labels.horizon_days)"
    else:
        span = "churn = no transaction in the horizon"
        rule = f"churn = no transaction in [cutoff, cutoff + {labels.horizon_days} days) or closure in it"
    cutoffs = ", ".join(c for c, _, _ in rates)
    raise StageError(
        f"{what} at any training cutoff ({rows:,} rows; cutoffs {cutoffs}; {rule}); {span}; "
        f"data.as_of is {tables_as_of(tables).date()}. Nothing was written. Check that data.as_of is the date "
        "the data is complete up to (for a snapshot: the snapshot date), and labels.horizon_days and "
        "labels.cutoffs (labels.cutoffs.anchor: as_of puts the latest cutoff exactly one horizon before as_of)")

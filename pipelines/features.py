"""The `features` stage: training and scoring feature tables from the validated input tables.

Reads the tables named in the config (validated by `pipelines.tables.load_tables`), builds
the training table (every training cutoff, with labels) and the scoring table (at the
data's as-of date, no labels), and writes, each atomically:

- `{paths.features_dir}/train.parquet`: one row group per cutoff, written as each cutoff
  is built, so a large table is never held in memory whole;
- `{paths.features_dir}/score.parquet`;
- `{paths.features_dir}/excluded.parquet`: the customers a population rule left out (today
  the `inactivity` look-back, `labels.inactivity_lookback_days`), per cutoff, with the
  reason and the key that controls it (`table`: train or score);
- `{paths.reports_dir}/features_summary.json`: rows, cutoffs, churn rate per cutoff, how
  many customers each population rule left out, and the feature list (no customer data).

A training table with no churner at all (or only churners) is refused with the dates and
keys that decide the labels: that is a config or data problem, not a model to fit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.build import build_scoring_table, feature_columns, iter_training_tables, tables_as_of
from features.contract import Tables
from features.labels import EXCLUSION_REASONS
from pipelines.config import Config
from pipelines.io import StageError, atomic_path, write_json, write_parquet
from pipelines.tables import load_tables


def write_training_table(frames: Any, path: Path, on_cutoff: Callable[[pd.DataFrame], None],
                         check: Callable[[list[tuple[str, int, int]]], None] | None = None) -> None:
    """Write the per-cutoff frames into one Parquet file atomically, one row group per cutoff.

    `check` sees (cutoff, rows, churners) of every cutoff before the file is committed and
    may raise to refuse the table (nothing is then written).
    """
    writer: pq.ParquetWriter | None = None
    rates: list[tuple[str, int, int]] = []
    with atomic_path(path, ".parquet") as tmp:
        try:
            for frame in frames:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table.cast(writer.schema))
                on_cutoff(frame)
                rates.append((str(pd.Timestamp(frame["cutoff"].iloc[0]).date()), len(frame),
                              int(frame["churned"].sum())))
            if writer is None:
                raise StageError("no training rows: every training cutoff has an empty population "
                                 "(see the population rules in docs/data-contract.md)")
        finally:
            if writer is not None:
                writer.close()
        if check is not None:
            check(rates)


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build and write the training and scoring tables; return the summary that was written."""
    say = progress or (lambda message: None)
    tables = load_tables(cfg)
    as_of = tables_as_of(tables)
    say(f"tables loaded ({', '.join(tables.present())}); data as of {as_of.date()}")
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

    write_training_table(iter_training_tables(tables, cfg.features, cfg.labels, train_sink),
                         features_dir / "train.parquet", record, check=lambda rates: _check_labels(rates, tables, cfg))
    say("building the scoring table")
    score_excluded: dict[str, int] = {}

    def score_sink(frame: pd.DataFrame, counts: dict[str, int]) -> None:
        excluded.append(frame.assign(table="score"))
        score_excluded.update(counts)

    score = build_scoring_table(tables, cfg.features, cfg.labels, on_excluded=score_sink)
    write_parquet(score, features_dir / "score.parquet")
    left = excluded_table(excluded)
    write_parquet(left, features_dir / "excluded.parquet")
    summary: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "tables": tables.present(),
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
        "score": {"rows": int(len(score)), "cutoff": as_of.isoformat(),
                  "not_in_population": score_excluded},
        "population_rules": {name: {"meaning": meaning, "controlled_by": key}
                             for name, (meaning, key) in EXCLUSION_REASONS.items()},
        "excluded_file": str(features_dir / "excluded.parquet"),
        "feature_count": len(columns),
        "features": columns,
    }
    write_json(summary, Path(cfg.paths.reports_dir) / "features_summary.json")
    dropped = score_excluded.get("no_transaction_in_lookback", 0)
    if dropped:
        say(f"scoring date {as_of.date()}: {dropped:,} customers left out (no transaction in the "
            f"{cfg.labels.inactivity_lookback_days} days before; labels.inactivity_lookback_days); "
            f"who they are: {features_dir / 'excluded.parquet'}")
    say(f"wrote {features_dir / 'train.parquet'} ({summary['train']['rows']:,} rows, "
        f"{len(columns)} features), {features_dir / 'score.parquet'} ({len(score):,} rows) and "
        f"{features_dir / 'excluded.parquet'} ({len(left):,} rows)")
    return summary


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

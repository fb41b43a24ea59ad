"""The `features` stage: training and scoring feature tables from the validated input tables.

Reads the tables named in the config (validated by `pipelines.tables.load_tables`), builds
the training table (every training cutoff, with labels) and the scoring table (at the
data's as-of date, no labels), and writes, each atomically:

- `{paths.features_dir}/train.parquet`: one row group per cutoff, written as each cutoff
  is built, so a large table is never held in memory whole;
- `{paths.features_dir}/score.parquet`;
- `{paths.reports_dir}/features_summary.json`: rows, cutoffs, churn rate per cutoff and
  the feature list (no customer data).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.build import build_scoring_table, feature_columns, iter_training_tables, tables_as_of
from pipelines.config import Config
from pipelines.io import atomic_path, write_json, write_parquet
from pipelines.tables import load_tables


def write_training_table(frames: Any, path: Path, on_cutoff: Callable[[pd.DataFrame], None]) -> None:
    """Write the per-cutoff frames into one Parquet file atomically, one row group per cutoff."""
    writer: pq.ParquetWriter | None = None
    with atomic_path(path, ".parquet") as tmp:
        try:
            for frame in frames:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table.cast(writer.schema))
                on_cutoff(frame)
            if writer is None:
                raise ValueError("no training rows: every training cutoff has an empty population")
        finally:
            if writer is not None:
                writer.close()


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build and write the training and scoring tables; return the summary that was written."""
    say = progress or (lambda message: None)
    tables = load_tables(cfg)
    as_of = tables_as_of(tables)
    say(f"tables loaded ({', '.join(tables.present())}); data as of {as_of.date()}")
    features_dir = Path(cfg.paths.features_dir)
    per_cutoff: list[dict[str, Any]] = []
    columns: list[str] = []

    def record(frame: pd.DataFrame) -> None:
        cutoff = pd.Timestamp(frame["cutoff"].iloc[0])
        rate = float(frame["churned"].mean())
        per_cutoff.append({"cutoff": cutoff.date().isoformat(), "rows": int(len(frame)), "churn_rate": rate})
        if not columns:
            columns.extend(feature_columns(frame))
        say(f"cutoff {cutoff.date()}: {len(frame):,} customers, churn rate {rate:.1%}")

    write_training_table(iter_training_tables(tables, cfg.features, cfg.labels),
                         features_dir / "train.parquet", record)
    say("building the scoring table")
    score = build_scoring_table(tables, cfg.features, cfg.labels)
    write_parquet(score, features_dir / "score.parquet")
    summary: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "tables": tables.present(),
        "label_definition": cfg.labels.definition,
        "horizon_days": cfg.labels.horizon_days,
        "train": {
            "rows": sum(item["rows"] for item in per_cutoff),
            "cutoffs": [item["cutoff"] for item in per_cutoff],
            "rows_per_cutoff": {item["cutoff"]: item["rows"] for item in per_cutoff},
            "churn_rate_per_cutoff": {item["cutoff"]: item["churn_rate"] for item in per_cutoff},
        },
        "score": {"rows": int(len(score)), "cutoff": as_of.isoformat()},
        "feature_count": len(columns),
        "features": columns,
    }
    write_json(summary, Path(cfg.paths.reports_dir) / "features_summary.json")
    say(f"wrote {features_dir / 'train.parquet'} ({summary['train']['rows']:,} rows, "
        f"{len(columns)} features) and {features_dir / 'score.parquet'} ({len(score):,} rows)")
    return summary

"""Benchmark of the whole `churn features` stage by engine: pandas (loads every table) against DuckDB
(reads the files; `features.engine: duckdb`), on the same bank in the same run.

Each step is a `churn` command in a fresh process (wall time and the process's peak memory, its
children included: /usr/bin/time -v). First `churn validate` once (pandas: the precondition of the
relational engines, which do not validate the event files themselves), then `churn features` with
each engine into its own folder (12 training cutoffs, the scoring date and the uplift rows, as the
stage writes them), then checks that the two engines' tables agree: same rows, the feature columns
equal except sums of money (DuckDB sums decimals exactly) and what is fitted from them.

Usage:
  .venv/bin/python benchmarks/bench_features_stage.py --data /work/main/data/raw/demo --work /tmp/bench-stage-demo
  .venv/bin/python benchmarks/bench_features_stage.py --data /tmp/bench-data/1m --work /tmp/bench-stage-1m \
      --memory-limit 2GB
Writes benchmarks/results/features_stage.json (one entry per --data and --memory-limit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "features_stage.json"
CHURN = Path(sys.executable).parent / "churn"


def timed(args: list[str]) -> dict[str, float]:
    """Run a command under /usr/bin/time -v: wall seconds and peak resident memory (GB)."""
    from benchmarks.banks import timed_command

    run = timed_command(args)
    return {"seconds": run["seconds"], "peak_gb": run["peak_gb"]}  # type: ignore[dict-item]


def compare(pandas_dir: Path, duck_dir: Path) -> dict[str, object]:
    """Rows equal, and per table the columns whose cells differ and by how much (relative)."""
    import numpy as np
    import pandas as pd

    out: dict[str, object] = {}
    for name in ("train.parquet", "score.parquet", "excluded.parquet", "uplift.parquet"):
        a, b = pd.read_parquet(pandas_dir / name), pd.read_parquet(duck_dir / name)
        entry: dict[str, object] = {"rows": len(a), "same_rows": len(a) == len(b)
                                    and bool((a.get("customer_id", pd.Series()) == b.get("customer_id", pd.Series())).all()),
                                    "same_columns": list(a.columns) == list(b.columns)}
        differing = {}
        for column in a.columns:
            if column not in b.columns or a[column].equals(b[column]):
                continue
            x, y = a[column], b[column]
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
                xa, ya = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
                both = np.isfinite(xa) & np.isfinite(ya)
                rel = np.abs(xa[both] - ya[both]) / np.maximum(np.abs(xa[both]), 1e-12)
                differing[column] = {"cells": int((~((xa == ya) | (np.isnan(xa) & np.isnan(ya)))).sum()),
                                     "largest_relative": float(rel.max()) if rel.size else None}
            else:
                differing[column] = {"cells": int((x.astype(str) != y.astype(str)).sum())}
        entry["differing_columns"] = differing
        out[name] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--memory-limit", default=None, help="features.duckdb.memory_limit, e.g. 2GB")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from benchmarks.banks import write_default_config

    args.work.mkdir(parents=True, exist_ok=True)
    configs = {}
    for engine in ("pandas", "duckdb"):
        def edit(raw: dict, engine: str = engine) -> None:
            raw["features"]["engine"] = engine
            raw["features"]["duckdb"] = {"threads": args.threads, "memory_limit": args.memory_limit}
            raw["paths"]["reports_dir"] = str(args.work / "reports")  # shared: both read the one validation
        folder = args.work / engine
        folder.mkdir(exist_ok=True)
        configs[engine] = write_default_config(args.data.resolve(), folder, f"bench-{engine}", edit=edit)
    results: dict[str, object] = {"validate": timed([str(CHURN), "validate", "--config", str(configs["pandas"])])}
    for engine in ("pandas", "duckdb"):
        results[f"features_{engine}"] = timed([str(CHURN), "features", "--config", str(configs[engine])])
        summary = json.loads((args.work / "reports" / "features_summary.json").read_text())
        results[f"features_{engine}"]["train_rows"] = summary["train"]["rows"]
        results[f"features_{engine}"]["cutoffs"] = len(summary["train"]["cutoffs"])
        results[f"features_{engine}"]["uplift_rows"] = summary["outputs"]["uplift.parquet"]["rows"]
        results[f"features_{engine}"]["features_dir"] = str(args.work / engine / "features")
    duck, pandas_ = results["features_duckdb"], results["features_pandas"]
    results["agreement"] = compare(Path(pandas_["features_dir"]), Path(duck["features_dir"]))
    results["ratio_duckdb_to_pandas_seconds"] = round(duck["seconds"] / pandas_["seconds"], 2)
    results["ratio_duckdb_to_pandas_peak"] = round(duck["peak_gb"] / pandas_["peak_gb"], 2)
    results.update({"data": str(args.data), "memory_limit": args.memory_limit, "threads": args.threads,
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_average_at_end": list(os.getloadavg())},
                    "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    print(json.dumps({k: v for k, v in results.items() if k != "agreement"}, indent=1))
    print(json.dumps(results["agreement"], indent=1)[:3000])
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    stored[f"{args.data} memory_limit={args.memory_limit}"] = results
    RESULTS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

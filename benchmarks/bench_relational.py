"""The relational engine (DuckDB, from the files) against the pandas engine on a generated bank.

Builds the training features and labels of every training cutoff (`labels.cutoffs.count`, 12 by
default) for the families the relational engine has ported (BTYD and static attributes left out of
both), each measurement in a fresh subprocess so every peak RSS is its own:
  (a) pandas: load the tables (read, map, type; no validation) + `build_training_table`;
  (b) DuckDB with 1 thread and (c) with 2 threads: read the Parquet files + `feature_table` and
      `label_table`, the result handed to pandas;
  (d) with --spark, the same on Spark local[2] (session start included; memory: Python + JVM).
Then checks the three tables cell for cell: exact, except sums of money and durations, which
DuckDB sums exactly (decimal, integer microseconds) and pandas in float64 (reported: how many
cells differ and the largest relative difference). The fastest of `--repeats` runs is reported.

Usage:
  .venv/bin/python benchmarks/bench_relational.py --data /work/main/data/raw/demo --count 12
  .venv/bin/python benchmarks/bench_relational.py --data /work/main/data/raw/demo --count 1
  .venv/bin/python benchmarks/bench_relational.py --data /work/main/data/raw/demo --count 1 --repeats 1 --spark
  nice -n 10 .venv/bin/python benchmarks/bench_relational.py --data /tmp/bench-data/1m --count 1 \
      --repeats 1 --memory-limit 4GB
Writes benchmarks/results/relational.json (the demo bank under "by_cutoff_count", others under
"other_banks" by path, runs with --spark under "with_spark" by path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


COUNT = {"n": 12}
MEMORY_LIMIT: dict[str, str | None] = {"value": None}
DEMO = Path("/work/main/data/raw/demo")
"""The bank whose figures the README quotes (results under "by_cutoff_count")."""


def _settings():
    from features.settings import FeatureSettings, LabelSettings

    return FeatureSettings(btyd=False), LabelSettings(cutoffs={"count": COUNT["n"]})


def _files(data: Path) -> dict:
    from pipelines.relational import TableFile

    return {name: TableFile(data / f"{name}.parquet", "parquet", {})
            for name in ("customers", "transactions", "complaints", "surveys", "contacts")
            if (data / f"{name}.parquet").is_file()}


def _cutoffs(data: Path) -> list:
    """The training cutoffs, from the customers and transactions as the pandas engine finds them."""
    from benchmarks.bench_features import load
    from features.build import training_cutoffs

    return training_cutoffs(load(data), _settings()[1])


def run_pandas(data: Path, out: Path) -> dict:
    from benchmarks.bench_features import load
    from features.build import build_training_table

    features, labels = _settings()
    start = time.perf_counter()
    table = build_training_table(load(data), features, labels)
    seconds = time.perf_counter() - start
    table.to_parquet(out)
    return {"seconds": seconds, "peak_rss_gb": peak_rss_gb(), "rows": len(table)}


def run_duckdb(data: Path, out: Path, threads: int, cutoffs: list, memory_limit: str | None = None) -> dict:
    from pipelines.relational import connect

    start = time.perf_counter()
    return _run_relational(connect(threads=threads, memory_limit=memory_limit), data, out, cutoffs, start)


def run_spark(data: Path, out: Path, cutoffs: list) -> dict:
    """Spark local[2] (pipelines.relational.connect_spark); the time includes starting the session
    (also reported apart), the peak memory is this process's plus the Spark JVM's (sampled)."""
    import threading

    import psutil

    from features.settings import SparkSettings
    from pipelines.relational import connect_spark

    jvm_peak = {"bytes": 0}
    done = threading.Event()

    def sample() -> None:
        me = psutil.Process()
        while not done.wait(0.2):
            for child in me.children(recursive=True):
                try:
                    jvm_peak["bytes"] = max(jvm_peak["bytes"], child.memory_info().rss)
                except psutil.Error:
                    pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    con = connect_spark(SparkSettings(master="local[2]"))
    session = time.perf_counter() - start
    result = _run_relational(con, data, out, cutoffs, start)
    done.set()
    sampler.join()
    return {**result, "session_start_seconds": session, "python_peak_rss_gb": result["peak_rss_gb"],
            "jvm_peak_rss_gb": jvm_peak["bytes"] / 1024**3,
            "peak_rss_gb": result["peak_rss_gb"] + jvm_peak["bytes"] / 1024**3}


def _run_relational(con, data: Path, out: Path, cutoffs: list, start: float) -> dict:
    """Read the files, build the feature and label tables on `con`, write them to `out`."""
    import pandas as pd

    from features.relational.engine import feature_table, label_table
    from pipelines.relational import cutoffs_on, read_tables, to_feature_frame

    features, labels = _settings()
    tables = read_tables(con, _files(data))
    cuts = cutoffs_on(con, cutoffs)
    frame = to_feature_frame(con, feature_table(tables, cuts, features, labels), features)
    target = to_feature_frame(con, label_table(tables, cuts, labels), features)
    table = pd.concat([frame, target.drop(columns=["customer_id", "cutoff"])], axis=1)
    seconds = time.perf_counter() - start
    table.to_parquet(out)
    return {"seconds": seconds, "peak_rss_gb": peak_rss_gb(), "rows": len(table)}


def compare(duck_path: Path, pandas_path: Path) -> dict:
    """Cells that differ per column (exact comparison) and the largest relative difference."""
    import numpy as np
    import pandas as pd

    duck = pd.read_parquet(duck_path)
    reference = pd.read_parquet(pandas_path)[list(duck.columns)]
    if len(duck) != len(reference) or not (duck[["customer_id", "cutoff"]] == reference[["customer_id", "cutoff"]]).all(axis=None):
        return {"same_rows": False}
    differing = {}
    for column in duck.columns[2:]:
        a, b = duck[column], reference[column]
        same = (a.astype(object).where(a.notna(), None) == b.astype(object).where(b.notna(), None)) | (a.isna() & b.isna())
        if (~same).any():
            x, y = a[~same].astype(float), b[~same].astype(float)
            differing[column] = {"cells": int((~same).sum()),
                                 "max_relative": float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), 1e-300))),
                                 "max_absolute": float(np.nanmax(np.abs(x - y)))}
    return {"same_rows": True, "columns": len(duck.columns) - 2, "rows": len(duck), "cells": int(duck.shape[0] * (duck.shape[1] - 2)),
            "differing": differing}


def child(args: argparse.Namespace) -> None:
    data, out = Path(args.data), Path(args.out)
    if args.child == "pandas":
        result = run_pandas(data, out)
    else:
        import pandas as pd

        cutoffs = [pd.Timestamp(c) for c in json.loads(args.cutoffs)]
        if args.child == "spark":
            result = run_spark(data, out, cutoffs)
        else:
            result = run_duckdb(data, out, int(args.child.split("-")[1]), cutoffs, args.memory_limit)
    print(json.dumps(result))


def measure(kind: str, data: Path, out: Path, cutoffs: list, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        command = [sys.executable, __file__, "--data", str(data), "--child", kind, "--out", str(out), "--count", str(COUNT["n"]),
                   "--cutoffs", json.dumps([str(c) for c in cutoffs])]
        if MEMORY_LIMIT["value"]:
            command += ["--memory-limit", MEMORY_LIMIT["value"]]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "runs_seconds": [round(r["seconds"], 2) for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child")
    parser.add_argument("--out")
    parser.add_argument("--cutoffs")
    parser.add_argument("--count", type=int, default=12, help="training cutoffs (labels.cutoffs.count)")
    parser.add_argument("--memory-limit", help="DuckDB memory limit (features.duckdb.memory_limit), e.g. 4GB")
    parser.add_argument("--spark", action="store_true",
                        help="also Spark local[2] (the spark extra and Java 17: `make test-spark` installs them)")
    args = parser.parse_args()
    COUNT["n"] = args.count
    MEMORY_LIMIT["value"] = args.memory_limit
    if args.child:
        child(args)
        return
    data = Path(args.data)
    cutoffs = _cutoffs(data)
    with tempfile.TemporaryDirectory() as folder:
        kinds = ("pandas", "duckdb-1", "duckdb-2", *(("spark",) if args.spark else ()))
        paths = {kind: Path(folder) / f"{kind}.parquet" for kind in kinds}
        results = {kind: measure(kind, data, path, cutoffs, args.repeats) for kind, path in paths.items()}
        import pandas as pd

        one, two = (pd.read_parquet(paths[k]) for k in ("duckdb-1", "duckdb-2"))
        threads_identical = bool(one.equals(two))
        spark_identical = bool(pd.read_parquet(paths["spark"]).equals(two)) if args.spark else None
        against_pandas = compare(paths["duckdb-2"], paths["pandas"])
    for kind, result in results.items():
        print(f"{kind:9s} {result['seconds']:7.2f} s  peak {result['peak_rss_gb']:.2f} GB  ({result['rows']:,} rows; "
              f"runs {result['runs_seconds']})")
    ratio = results["duckdb-2"]["seconds"] / results["pandas"]["seconds"]
    print(f"DuckDB (2 threads, from the files) / pandas (load + build): {ratio:.2f}x time, "
          f"{results['duckdb-2']['peak_rss_gb'] / results['pandas']['peak_rss_gb']:.2f}x peak memory")
    print(f"1 and 2 threads identical: {threads_identical}")
    if args.spark:
        spark = results["spark"]
        print(f"Spark local[2] / DuckDB (2 threads): {spark['seconds'] / results['duckdb-2']['seconds']:.2f}x time "
              f"(session start {spark['session_start_seconds']:.1f} s; JVM peak {spark['jvm_peak_rss_gb']:.2f} GB); "
              f"identical to DuckDB's table: {spark_identical}")
    print(f"against pandas: {against_pandas.get('columns')} columns x {against_pandas.get('rows')} rows; differing columns:")
    for column, diff in against_pandas.get("differing", {}).items():
        print(f"  {column}: {diff['cells']} cells, max relative {diff['max_relative']:.1e}, "
              f"max absolute {diff['max_absolute']:.1e}"
              f"{'' if diff['money_or_duration_sum'] else '  <- NOT a sum of money or durations'}")
    record = {"data": str(data), "cutoffs": [str(c.date()) for c in cutoffs], "results": results,
              "duckdb_memory_limit": args.memory_limit, "load_average_at_end": list(os.getloadavg()),
              "duckdb2_over_pandas_time": ratio, "threads_identical": threads_identical,
              **({"spark_identical_to_duckdb": spark_identical,
                  "spark_over_duckdb2_time": results["spark"]["seconds"] / results["duckdb-2"]["seconds"]}
                 if args.spark else {}),
              "against_pandas": against_pandas, "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    out = ROOT / "benchmarks" / "results" / "relational.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous = previous if "by_cutoff_count" in previous else {"by_cutoff_count": {}}
    if args.spark:  # apart, so a Spark run does not replace the figures of the DuckDB-only runs
        previous.setdefault("with_spark", {}).setdefault(str(data), {})[str(len(cutoffs))] = record
    elif data.resolve() == DEMO:  # the demo bank's figures under "by_cutoff_count", other banks by path
        previous["by_cutoff_count"][str(len(cutoffs))] = record
    else:
        previous.setdefault("other_banks", {}).setdefault(str(data), {})[str(len(cutoffs))] = record
    out.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

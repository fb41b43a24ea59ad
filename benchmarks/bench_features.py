"""Speed and memory of the feature builders on a large generated dataset, against DuckDB.

Measures, each in a fresh subprocess (so every peak RSS is its own):
  (a) scoring: the full feature table at one cutoff (`build_scoring_table`);
  (b) training: the feature and label tables of 12 monthly cutoffs (`iter_training_tables`,
      each cutoff's frame built and dropped, as the features stage streams them to Parquet);
  (c) DuckDB: the RFM window features alone (count, sum, average over 30/90/180/365 days and
      days since the last transaction) as ONE SQL query on the same in-memory transactions.
Times exclude reading the Parquet files; peaks include the loaded data. Each measurement is
repeated (`--repeats`) and the fastest run is reported, as the machine may be shared.

Usage:
  .venv/bin/python benchmarks/bench_features.py --data /work/bench-data/1m
Writes benchmarks/results/features.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINDOWS = (30, 90, 180, 365)
STATIC = ("segment", "region", "age_band", "products_held", "acquisition_channel")


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def load(data: Path):
    """The tables as the pipeline loads them (read, map, coerce types), without validation."""
    from features.contract import TABLES, Tables
    from features.validation import data_as_of
    from pipelines.config import TableSource
    from pipelines.tables import coerce_types, read_table

    frames = {}
    for name in TABLES:
        path = data / f"{name}.parquet"
        if path.is_file():
            frame, problems = read_table(name, TableSource(path=path))
            if frame is None:
                raise SystemExit(f"cannot read {path}: {problems}")
            frames[name], _ = coerce_types(frame, TABLES[name])
    as_of = data_as_of(frames, None)
    return Tables(**frames, as_of=as_of)


def settings(tables, cutoffs: int):
    from features.settings import CutoffSettings, FeatureSettings, LabelSettings

    static = tuple(c for c in STATIC if c in tables.customers.columns)
    return (FeatureSettings(windows_days=WINDOWS, static_features=static),
            LabelSettings(cutoffs=CutoffSettings(count=cutoffs)))


def measure_scoring(tables, cutoffs: int) -> dict:
    from features.build import build_scoring_table

    features, labels = settings(tables, cutoffs)
    start = time.perf_counter()
    frame = build_scoring_table(tables, features, labels)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": len(frame), "columns": frame.shape[1]}


def measure_training(tables, cutoffs: int) -> dict:
    from features.build import iter_training_tables

    features, labels = settings(tables, cutoffs)
    start = time.perf_counter()
    rows = built = 0
    for frame in iter_training_tables(tables, features, labels):
        rows += len(frame)
        built += 1
        del frame
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": rows, "cutoffs": built}


def rfm_sql(cutoff: str) -> str:
    """RFM window features as one DuckDB query (same definitions as features/rfm.py)."""
    parts = [f"floor(epoch_us(TIMESTAMP '{cutoff}' - max(timestamp)) / 86400000000) AS days_since_last_transaction"]
    for w in WINDOWS:
        inside = f"timestamp >= TIMESTAMP '{cutoff}' - INTERVAL {w} DAY"
        parts += [f"count(*) FILTER (WHERE {inside}) AS transaction_count_{w}d",
                  f"coalesce(sum(amount) FILTER (WHERE {inside}), 0) AS transaction_amount_{w}d",
                  f"avg(amount) FILTER (WHERE {inside}) AS average_transaction_amount_{w}d"]
    return (f"SELECT customer_id, {', '.join(parts)} FROM transactions "
            f"WHERE timestamp < TIMESTAMP '{cutoff}' GROUP BY customer_id")


def measure_duckdb(tables, cutoffs: int) -> dict:
    import duckdb
    import numpy as np

    transactions = tables.transactions[["customer_id", "timestamp", "amount"]]
    cutoff = str(tables.as_of)
    connection = duckdb.connect()
    connection.register("transactions", transactions)
    start = time.perf_counter()
    result = connection.execute(rfm_sql(cutoff)).df()
    seconds = time.perf_counter() - start
    threads = connection.execute("SELECT current_setting('threads')").fetchone()[0]

    # cross-check our features against DuckDB's on a sample of customers (not timed)
    from features.build import build_features
    from features.contract import Tables

    sample_ids = set(tables.customers["customer_id"].iloc[:: max(1, len(tables.customers) // 2000)])
    part = Tables(tables.customers[tables.customers["customer_id"].isin(sample_ids)],
                  transactions[transactions["customer_id"].isin(sample_ids)], as_of=tables.as_of)
    features, _ = settings(part, cutoffs)
    ours = build_features(part, tables.as_of, features).set_index("customer_id")
    theirs = result.set_index("customer_id").reindex(ours.index)
    worst = 0.0
    for w in WINDOWS:
        counts = theirs[f"transaction_count_{w}d"].fillna(0).to_numpy()
        if not np.array_equal(ours[f"transaction_count_{w}d"].to_numpy(), counts):
            raise SystemExit(f"transaction_count_{w}d differs from DuckDB")
        gap = np.abs(ours[f"transaction_amount_{w}d"].to_numpy() - theirs[f"transaction_amount_{w}d"].fillna(0).to_numpy())
        worst = max(worst, float(gap.max(initial=0)))
    recency = theirs["days_since_last_transaction"].to_numpy(dtype=float)
    if not np.array_equal(np.nan_to_num(ours["days_since_last_transaction"].to_numpy(), nan=-1),
                          np.nan_to_num(recency, nan=-1)):
        raise SystemExit("days_since_last_transaction differs from DuckDB")
    return {"seconds": seconds, "rows": len(result), "threads": int(threads),
            "checked_customers": len(ours), "largest_amount_difference": worst}


MEASURES = {"scoring": measure_scoring, "training": measure_training, "duckdb": measure_duckdb}


def child(kind: str, data: Path, cutoffs: int) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    start = time.perf_counter()
    tables = load(data)
    loaded = {"load_seconds": time.perf_counter() - start, "rss_after_load_gb": peak_rss_gb()}
    result = MEASURES[kind](tables, cutoffs)
    print(json.dumps({**loaded, **result, "peak_rss_gb": peak_rss_gb()}))


def run_child(kind: str, data: Path, cutoffs: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--data", str(data), "--cutoffs", str(cutoffs)],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{kind} measurement failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/bench-data/1m"),
                        help="folder with customers/transactions/complaints/... .parquet")
    parser.add_argument("--cutoffs", type=int, default=12, help="training cutoffs for measurement (b)")
    parser.add_argument("--repeats", type=int, default=2, help="fresh-process runs per measurement; fastest kept")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "features.json")
    parser.add_argument("--child", choices=sorted(MEASURES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.cutoffs)
        return

    import pyarrow.parquet as pq

    from pipelines.io import write_json

    rows = {p.stem: pq.ParquetFile(p).metadata.num_rows for p in sorted(args.data.glob("*.parquet"))}
    print(f"data {args.data}: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()), flush=True)
    runs: dict[str, list[dict]] = {kind: [] for kind in ("duckdb", "scoring", "training")}
    for repeat in range(args.repeats):
        for kind in runs:
            result = run_child(kind, args.data, args.cutoffs)
            runs[kind].append(result)
            print(f"  run {repeat + 1} {kind:8s} {result['seconds']:7.2f} s, peak {result['peak_rss_gb']:.2f} GB "
                  f"(after load {result['rss_after_load_gb']:.2f} GB)", flush=True)
    best = {kind: min(results, key=lambda r: r["seconds"]) for kind, results in runs.items()}
    scoring, training, duck = best["scoring"], best["training"], best["duckdb"]
    summary = {
        "data": {"path": str(args.data), "rows": rows},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "repeats": args.repeats,
        "scoring_one_cutoff": scoring,
        f"training_{args.cutoffs}_cutoffs": training,
        "duckdb_rfm_query": duck,
        "all_runs_seconds": {kind: [round(r["seconds"], 3) for r in results] for kind, results in runs.items()},
        "ratio_scoring_to_duckdb": scoring["seconds"] / duck["seconds"],
        "ratio_training_to_scoring": training["seconds"] / scoring["seconds"],
        "targets": {"ratio_scoring_to_duckdb_at_most": 1.5, "scoring_peak_rss_gb_under": 4.0,
                    "ratio_training_to_scoring_well_under": args.cutoffs},
    }
    summary["targets_met"] = {
        "scoring_within_1.5x_duckdb": summary["ratio_scoring_to_duckdb"] <= 1.5,
        "scoring_peak_under_4gb": scoring["peak_rss_gb"] < 4.0,
        f"training_{args.cutoffs}_well_under_{args.cutoffs}x": summary["ratio_training_to_scoring"] <= args.cutoffs / 2,
    }
    write_json(summary, args.out)
    print(f"one cutoff (full features): {scoring['seconds']:.2f} s, peak {scoring['peak_rss_gb']:.2f} GB, "
          f"{scoring['rows']:,} rows x {scoring['columns']} columns")
    print(f"{args.cutoffs} training cutoffs: {training['seconds']:.2f} s "
          f"({summary['ratio_training_to_scoring']:.1f}x one cutoff), peak {training['peak_rss_gb']:.2f} GB")
    print(f"DuckDB RFM query ({duck['threads']} threads): {duck['seconds']:.2f} s, peak {duck['peak_rss_gb']:.2f} GB; "
          f"ours/DuckDB = {summary['ratio_scoring_to_duckdb']:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

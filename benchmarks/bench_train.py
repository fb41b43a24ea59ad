"""Speed and memory of `churn train` (tuning, horizons, baselines, refit, uplift included) on a large bank.

Measures, each in a fresh subprocess (so each peak RSS is its own):
  (a) `churn features` for the 12 training cutoffs, only when the work folder has no training
      table yet (timed, not part of the ratio);
  (b) `churn train` with the default model settings (tuning on, sampling by
      `model.sampling.max_training_rows`), timed end to end through the CLI;
  (c) reference: a plain LightGBM fit (library defaults, 100 rounds, 2 threads) on as many rows of
      the same training table as `churn train` trained on, read as float32: the cost of one
      ordinary booster on the same matrix, on the same machine in the same run.
Reports wall times, peak memory, rows trained on, the test figures of the trained model and the
ratio train / reference, against the targets of issue 14 (1M customers: <= 10 min, <= 6 GB).

Usage:
  .venv/bin/python benchmarks/bench_train.py --data /tmp/bench-data/1m --work /tmp/bench-data/1m-train
Writes benchmarks/results/train.json. --data is a folder from bench_generate.py.
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

TARGET_MINUTES = 10.0
TARGET_PEAK_GB = 6.0
REFERENCE_ROUNDS = 100


def children_peak_gb() -> float:
    """Peak resident memory of the largest finished child process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2


def children_cpu_seconds() -> float:
    """CPU time (user + system) of the finished children: steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def write_config(data: Path, work: Path) -> Path:
    """configs/default.yaml with its inputs, outputs and MLflow store moved to `data` and `work`."""
    text = (ROOT / "configs" / "default.yaml").read_text()
    for old, new in (("data/raw/demo", str(data)), ("features_dir: data/features", f"features_dir: {work}/features"),
                     ("outputs_dir: data/outputs", f"outputs_dir: {work}/outputs"),
                     ("reports_dir: reports", f"reports_dir: {work}/reports"),
                     ("sqlite:///mlflow.db", f"sqlite:///{work}/mlflow.db"),
                     ("artifact_location: mlartifacts", f"artifact_location: {work}/mlartifacts")):
        if old not in text:
            raise SystemExit(f"configs/default.yaml has no '{old}': update bench_train.write_config")
        text = text.replace(old, new)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "config.yaml"
    path.write_text(text)
    return path


def child_command(command: list[str]) -> None:
    """Run one command as this fresh process's only child; print its time and peak as one JSON line."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    env.pop("MLFLOW_TRACKING_URI")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(json.dumps({"seconds": seconds, "cpu_seconds": children_cpu_seconds(), "peak_rss_gb": children_peak_gb(),
                      "console": done.stdout[-6000:]}))


def child_reference(table: Path, rows: int) -> None:
    """Plain LightGBM on the first `rows` rows of the training table (float32 features); one JSON line."""
    from models.data import KEY_COLUMNS, LABEL_COLUMNS  # first: the OpenMP wait policy of `churn train` too

    import lightgbm as lgb
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    parquet = pq.ParquetFile(table)
    names = [n for n in parquet.schema_arrow.names if n not in KEY_COLUMNS and n not in LABEL_COLUMNS]
    batches, labels, read = [], [], 0
    for batch in parquet.iter_batches(batch_size=200_000, columns=[*names, "churned"]):
        batch = batch.slice(0, rows - read)
        read += batch.num_rows
        columns = []
        for name in names:
            column = batch.column(name)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) \
                    or pa.types.is_dictionary(column.type):
                codes = column.dictionary_encode().indices if not pa.types.is_dictionary(column.type) else column.indices
                columns.append(codes.to_numpy(zero_copy_only=False).astype(np.float32))
            else:
                columns.append(column.to_numpy(zero_copy_only=False).astype(np.float32))
        batches.append(np.column_stack(columns))
        labels.append(batch.column("churned").to_numpy(zero_copy_only=False))
        if read >= rows:
            break
    x, y = np.vstack(batches), np.concatenate(labels)
    del batches
    read_seconds = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    lgb.train({"objective": "binary", "num_threads": 2, "verbosity": -1, "seed": 1},
              lgb.Dataset(x, label=y), num_boost_round=REFERENCE_ROUNDS)
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                      "read_seconds": read_seconds,
                      "rows": int(len(y)), "columns": int(x.shape[1]), "rounds": REFERENCE_ROUNDS}))


def run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"measurement {args[:2]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/bench-data/1m"),
                        help="folder with customers/transactions/... .parquet (bench_generate.py --out)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the config, features, reports and MLflow store (default: DATA-train)")
    parser.add_argument("--config", type=Path, default=None,
                        help="use this config (its paths) instead of configs/default.yaml moved to DATA and WORK")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "train.json")
    parser.add_argument("--child-command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--child-reference", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_command:
        child_command(args.child_command)
        return
    if args.child_reference:
        child_reference(Path(args.child_reference[0]), int(args.child_reference[1]))
        return

    import pyarrow.parquet as pq

    from pipelines.config import load_config
    from pipelines.io import write_json
    from pipelines.outputs import current_paths

    work = args.work or args.data.with_name(args.data.name + "-train")
    config = args.config.resolve() if args.config else write_config(args.data.resolve(), work.resolve())
    churn = str(Path(sys.executable).with_name("churn"))
    customers = pq.ParquetFile(args.data / "customers.parquet").metadata.num_rows
    features_dir = Path(load_config(config).paths.features_dir)
    features = None
    if not features_dir.is_dir() or not any(features_dir.glob("**/train.parquet")):
        print(f"churn features on {args.data} ({customers:,} customers) ...", flush=True)
        features = run_child("--child-command", churn, "features", "--config", str(config))
        print(f"  features {features['seconds'] / 60:.1f} min, peak {features['peak_rss_gb']:.2f} GB", flush=True)
    print("churn train ...", flush=True)
    train = run_child("--child-command", churn, "train", "--config", str(config))
    print(train["console"])
    print(f"  train {train['seconds'] / 60:.1f} min ({train['cpu_seconds'] / 60:.1f} CPU min), "
          f"peak {train['peak_rss_gb']:.2f} GB", flush=True)
    cfg = load_config(config)
    metrics = json.loads((Path(cfg.paths.reports_dir) / "train_metrics.json").read_text())
    info = metrics["info"]
    trained_rows = int(info.get("sampling", {}).get("rows_kept", info["rows_fit"]))
    table = current_paths(cfg, "features")["train.parquet"]
    reference = run_child("--child-reference", str(table), str(trained_rows))
    print(f"  reference: plain LightGBM, {REFERENCE_ROUNDS} rounds on {reference['rows']:,} rows: "
          f"{reference['seconds']:.1f} s", flush=True)
    figures = metrics["metrics"]
    summary = {
        "data": {"path": str(args.data), "customers": customers,
                 "training_table_rows": pq.ParquetFile(table).metadata.num_rows},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "features": features,
        "train": {"seconds": train["seconds"], "minutes": train["seconds"] / 60, "cpu_seconds": train["cpu_seconds"],
                  "peak_rss_gb": train["peak_rss_gb"]},
        "sampling": info.get("sampling"),
        "rows_fit": info["rows_fit"], "rows_calibration": info["rows_calibration"], "rows_test": info["rows_test"],
        "logistic_rows_fit": info.get("logistic_rows_fit"),
        "tuning_stopped_by": info.get("tuning_stopped_by"),
        "churn_rounds": info.get("churn_best_iteration"),
        "test": {k: figures.get(k) for k in ("churn.roc_auc", "churn.true_hazard_roc_auc",
                                             "churn.gap_to_true_hazard_roc_auc", "churn.expected_calibration_error",
                                             "baseline_logistic.roc_auc", "value.spearman",
                                             "risk_30d.expected_calibration_error")},
        "reference_plain_lightgbm": reference,
        "ratio_train_to_reference": train["seconds"] / reference["seconds"],
        "ratio_train_to_reference_cpu": train["cpu_seconds"] / reference["cpu_seconds"],
        "targets": {"minutes_at_most": TARGET_MINUTES, "peak_rss_gb_at_most": TARGET_PEAK_GB,
                    "met": train["seconds"] / 60 <= TARGET_MINUTES and train["peak_rss_gb"] <= TARGET_PEAK_GB},
    }
    write_json(summary, args.out)
    print(f"ratio train / reference {summary['ratio_train_to_reference']:.1f}; targets met: "
          f"{summary['targets']['met']}; written {args.out}")


if __name__ == "__main__":
    main()

"""Benchmark of the score stage on one million customers: wall time, peak memory, reasons speed.

Steps (each measurement in a fresh subprocess, so its peak memory (ru_maxrss) is its own):
1. `prepare` (once per work folder, not timed against the target): a 100,000-customer
   sample of the 1M dataset (all their events), its training table (6 monthly cutoffs),
   and both models trained and registered as champions in a sqlite MLflow store.
2. `score`: `pipelines.score.run` on all 1M customers, end to end: load and validate the
   tables, features for one cutoff, schema and drift checks, both models, lifetime
   value, segments, actions, selection, reasons for every listed customer, the three
   outputs and the MLflow run. Reports the process wall time (imports included), the
   stage's own time per step, prediction speed (both models) and peak memory.
3. `reasons`: on the listed customers, exact TreeSHAP vs path attribution speed, and how
   often the two agree on a customer's reasons (top reason, top-3 sets).

Usage: .venv/bin/python benchmarks/bench_score.py [--data /work/bench-data/1m] [--work /tmp/bench-score]
Writes benchmarks/results/score.json. Targets: score stage on 1M customers < 60 s and < 4 GB.
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
RESULTS = ROOT / "benchmarks" / "results" / "score.json"
TABLES = ("customers", "transactions", "complaints", "surveys", "contacts")
TRAIN_CUSTOMERS = 100_000
TARGET_SECONDS = 60
TARGET_GB = 4


def bench_config(data: Path, work: Path, outputs: Path):  # type: ignore[no-untyped-def]
    """configs/default.yaml pointed at `data`, with every output and the MLflow store in `work`."""
    import yaml

    from pipelines.config import parse_config

    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["data"] = {"tables": {name: {"path": str(data / f"{name}.parquet")} for name in TABLES
                              if (data / f"{name}.parquet").is_file()}, "as_of": None}
    raw["paths"] = {"features_dir": str(work / "features"), "outputs_dir": str(outputs),
                    "reports_dir": str(work / "reports")}
    raw["tracking"] = {"tracking_uri": f"sqlite:///{work}/mlflow.db", "artifact_location": str(work / "artifacts"),
                       "experiment": "bench-score"}
    raw.pop("evaluation", None)
    raw.setdefault("labels", {})["cutoffs"] = {"count": 6, "spacing_months": 1}
    return parse_config(raw, "bench config")


def prepare(data: Path, work: Path, customers: int) -> dict[str, object]:
    """Sample `customers` customers with all their events; build their features; train and register models."""
    import pandas as pd

    from models.data import customer_hash_share
    from pipelines.features import run as build_features
    from pipelines.train import run as train

    sample = work / "sample"
    sample.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ids = pd.read_parquet(data / "customers.parquet", columns=["customer_id"])["customer_id"].astype("str")
    share = customers / len(ids)
    keep = set(ids[customer_hash_share(ids, 2024) < share])
    for name in TABLES:
        path = data / f"{name}.parquet"
        if path.is_file():
            frame = pd.read_parquet(path)
            frame[frame["customer_id"].astype("str").isin(keep)].to_parquet(sample / f"{name}.parquet", index=False)
    cfg = bench_config(sample, work, work / "sample-outputs")
    build_features(cfg)
    summary = train(cfg)
    return {"train_customers": len(keep), "prepare_seconds": round(time.perf_counter() - start, 1),
            "churn_roc_auc": summary["metrics"].get("churn.roc_auc"),  # type: ignore[index]
            "train_rows": summary["info"].get("rows_fit")}  # type: ignore[index]


def score(data: Path, work: Path, started: float) -> dict[str, object]:
    """The whole score stage on every customer of `data`."""
    from pipelines.score import run

    cfg = bench_config(data, work, work / "outputs")
    imported = time.perf_counter()
    result = run(cfg)
    finished = time.perf_counter()
    summary = result["summary"]
    timings = {k: round(v, 2) for k, v in result["timings"].items()}  # type: ignore[union-attr]
    return {
        "customers_scored": summary["customers_scored"],  # type: ignore[index]
        "customers_selected": summary["customers_selected"],  # type: ignore[index]
        "process_wall_seconds": round(finished - started, 1),
        "imports_seconds": round(imported - started, 1),
        "stage_seconds": round(finished - imported, 1),
        "stage_steps_seconds": timings,
        "prediction_customers_per_second": round(result["timings"]["prediction_customers_per_second"]),  # type: ignore[index]
        "peak_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2),
        "drift_max_psi": result["drift"]["max_psi"],  # type: ignore[index]
    }


def reasons(data: Path, work: Path, rows: int) -> dict[str, object]:
    """TreeSHAP vs path attribution on the listed customers: speed and agreement of the reasons."""
    import mlflow
    import numpy as np
    import pandas as pd

    from features.build import build_scoring_table
    from models.boosting import ChurnModel
    from models.explain import top_drivers
    from models.retention import path_contributions
    from pipelines.tables import load_tables
    from pipelines.tracking import configure_tracking
    from pipelines.train import load_registered_bundle

    cfg = bench_config(data, work, work / "outputs")
    configure_tracking(cfg)
    churn = ChurnModel.load(load_registered_bundle("models:/churn-risk@champion"))
    listed = pd.read_csv(work / "outputs" / "retention_list.csv", usecols=["customer_id"], dtype="str")
    frame = build_scoring_table(load_tables(cfg), cfg.features, cfg.labels)
    frame = frame[frame["customer_id"].isin(listed["customer_id"].head(rows))].reset_index(drop=True)
    matrix = churn.schema.matrix(frame)
    start = time.perf_counter()
    exact = churn.contributions(frame)
    exact_seconds = time.perf_counter() - start
    start = time.perf_counter()
    path = path_contributions(churn.booster, matrix)
    path_seconds = time.perf_counter() - start
    start = time.perf_counter()
    churn.predict(frame)
    predict_seconds = time.perf_counter() - start
    additive = float(np.abs(path.sum(axis=1) - churn.booster.predict(matrix, raw_score=True)).max())
    exact_top, exact_values = top_drivers(exact, 3)
    path_top, _ = top_drivers(path, 3)
    positive = exact_values[:, 0] > 0
    top1 = float((exact_top[positive, 0] == path_top[positive, 0]).mean())
    overlap = float(np.mean([len(set(a) & set(b)) / 3 for a, b in zip(exact_top[positive], path_top[positive])]))
    return {
        "customers": int(len(frame)), "trees": int(churn.booster.num_trees()),
        "features": len(churn.schema.features),
        "tree_shap_customers_per_second": round(len(frame) / exact_seconds),
        "path_attribution_customers_per_second": round(len(frame) / path_seconds),
        "speedup": round(exact_seconds / path_seconds, 1),
        "predict_customers_per_second_same_rows": round(len(frame) / predict_seconds),
        "path_additivity_max_error": additive,
        "top_reason_agreement": round(top1, 3),
        "top3_overlap": round(overlap, 3),
    }


def child(step: str, args: argparse.Namespace) -> dict[str, object]:
    """Run one step in a fresh interpreter; its JSON result on the last stdout line."""
    command = [sys.executable, __file__, "--step", step, "--data", str(args.data), "--work", str(args.work),
               "--train-customers", str(args.train_customers), "--reason-rows", str(args.reason_rows)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/bench-data/1m"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-score"))
    parser.add_argument("--train-customers", type=int, default=TRAIN_CUSTOMERS)
    parser.add_argument("--reason-rows", type=int, default=2000)
    parser.add_argument("--step", choices=["prepare", "score", "reasons"], default=None)
    args = parser.parse_args()
    if args.step == "prepare":
        print(json.dumps(prepare(args.data, args.work, args.train_customers)))
        return
    if args.step == "score":
        print(json.dumps(score(args.data, args.work, started)))
        return
    if args.step == "reasons":
        print(json.dumps(reasons(args.data, args.work, args.reason_rows)))
        return

    from pipelines.io import write_json

    args.work.mkdir(parents=True, exist_ok=True)
    marker = args.work / "prepared.json"
    if not marker.is_file():
        print(f"preparing: sampling {args.train_customers:,} customers, features, training (not timed)", flush=True)
        marker.write_text(json.dumps(child("prepare", args)))
    prepared = json.loads(marker.read_text())
    print(f"models trained on {prepared['train_customers']:,} customers "
          f"(test ROC-AUC {prepared['churn_roc_auc']:.3f})", flush=True)
    scored = child("score", args)
    print(f"score stage: {scored['customers_scored']:,} customers in {scored['process_wall_seconds']} s "
          f"(stage {scored['stage_seconds']} s), peak {scored['peak_memory_gb']} GB; prediction "
          f"{scored['prediction_customers_per_second']:,} customers/s; {scored['customers_selected']:,} listed", flush=True)
    print(f"  steps: {scored['stage_steps_seconds']}", flush=True)
    explained = child("reasons", args)
    print(f"reasons on {explained['customers']:,} listed customers: TreeSHAP "
          f"{explained['tree_shap_customers_per_second']:,}/s, path attribution "
          f"{explained['path_attribution_customers_per_second']:,}/s ({explained['speedup']}x); top reason "
          f"agrees {explained['top_reason_agreement']:.0%}, top-3 overlap {explained['top3_overlap']:.0%}", flush=True)
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "data": str(args.data),
        "targets": {"seconds": TARGET_SECONDS, "peak_memory_gb": TARGET_GB},
        "prepared": prepared,
        "score": scored,
        "reasons": explained,
        "meets_targets": bool(scored["process_wall_seconds"] < TARGET_SECONDS and scored["peak_memory_gb"] < TARGET_GB),
    }
    write_json(results, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

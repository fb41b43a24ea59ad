"""Benchmark of the score stage on one million customers: wall time, peak memory per step, reasons speed.

The models are the champions `churn train` registered on the whole bank (the work folder of
`benchmarks/bench_train.py`, default `<data>-train`): the size the demo's recipe trains, not a
small sample's. Their sqlite MLflow store is copied into the work folder, so the score runs
are logged there and the training folder is only read.

Steps (each in a fresh subprocess, so its peak memory (ru_maxrss) is its own):
1. `score`: `pipelines.score.run` on all 1M customers, end to end, three times: with LightGBM's own
   prediction, then with every booster compiled (`scoring.compiled_prediction`, pipelines/compiled.py)
   into an empty cache (the first run after a new champion), then again from that cache (a scheduled
   run); the last one is `score`. Each run: load and validate the
   tables (the transactions from the features' look-back on, the earlier ones as each customer's
   latest date: `load_tables(transactions_from=...)`), features for one cutoff, schema checks, every model (churn, shorter horizons,
   value, uplift) with lifetime value and the drift counts over batches of
   `scoring.batch_rows` rows, segments, actions, selection, reasons for every listed
   customer, the three outputs and the MLflow run. Reports the process wall time (imports
   included), the stage's own time per step (and per model within `predict`) and the peak
   resident memory and CPU seconds of each step (sampled every 20 ms), so the features step
   (loading every table, the pandas feature engine) and the rest can be told apart, and a
   shared machine's load shows (CPU seconds well below wall seconds x 2 cores).
2. `batches`: the memory the batching saves, against a reference in the same run: the
   first `--batch-check-rows` rows of the training folder's scoring table through
   `score_in_batches` in one batch and in batches of `scoring.batch_rows` / 10; peak of
   Python-tracked allocations (tracemalloc: numpy and pandas) beyond the table, and whether
   the scores are identical.
3. `reasons`: on the listed customers, exact TreeSHAP vs path attribution speed, and how
   often the two agree on a customer's reasons (top reason, top-3 sets).

Usage: .venv/bin/python benchmarks/bench_score.py --data /tmp/bench-data/1m [--models /tmp/bench-data/1m-train]
       [--work /tmp/bench-score]
Writes benchmarks/results/score.json. Targets (issue 15): score stage on 1M customers at most 30 s and 3 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "score.json"
TABLES = ("customers", "transactions", "complaints", "surveys", "contacts")
TARGET_SECONDS = 30
TARGET_GB = 3
STEPS = ("load_models", "features", "checks", "compile", "predict", "plan", "reasons", "write", "log")
"""The score stage's laps (`pipelines.score.run` timings), in order."""


def bench_config(data: Path, models: Path, work: Path, outputs: Path,  # type: ignore[no-untyped-def]
                 compiled_cache: Path | None = None):
    """The config the models were trained with (`models`/config.yaml, else configs/default.yaml), reading
    `data`, writing to `work` and tracking in the copy of the models' MLflow store; with `compiled_cache`,
    every booster compiled (`scoring.compiled_prediction.min_rows: 0`) and cached there, else none
    (LightGBM's own prediction, `min_rows: null`)."""
    import yaml

    from pipelines.config import parse_config

    source = models / "config.yaml" if (models / "config.yaml").is_file() else ROOT / "configs" / "default.yaml"
    raw = yaml.safe_load(source.read_text())
    raw["data"] = {"tables": {name: {"path": str(data / f"{name}.parquet")} for name in TABLES
                              if (data / f"{name}.parquet").is_file()}, "as_of": None}
    raw["paths"] = {"features_dir": str(work / "features"), "outputs_dir": str(outputs),
                    "reports_dir": str(work / "reports")}
    raw["tracking"] = {"tracking_uri": f"sqlite:///{work}/mlflow.db", "artifact_location": str(work / "artifacts"),
                       "experiment": "bench-score"}
    raw.pop("evaluation", None)
    raw.setdefault("scoring", {})["compiled_prediction"] = (
        {"min_rows": 0, "cache_dir": str(compiled_cache)} if compiled_cache is not None else {"min_rows": None})
    return parse_config(raw, "bench config")


def copy_store(models: Path, work: Path) -> None:
    """A copy of the models' MLflow store in `work` (once): the score runs are logged there, the
    registered models' artifacts are read where `churn train` wrote them."""
    if not (models / "mlflow.db").is_file():
        raise SystemExit(f"no MLflow store at {models / 'mlflow.db'}: run benchmarks/bench_train.py --data <data> "
                         f"--work {models} first, or pass --models <a churn train work folder>")
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "mlflow.db").is_file():
        shutil.copyfile(models / "mlflow.db", work / "mlflow.db")


def model_sizes(cfg) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Trees of each champion the stage runs on every customer."""
    from models.boosting import ValueModel, load_churn_model
    from models.time_to_churn import HORIZONS_FOLDER, HorizonRiskModels
    from models.uplift.learners import UpliftModel
    from pipelines.tracking import configure_tracking, load_registered_bundle

    configure_tracking(cfg)
    bundle = load_registered_bundle(cfg.scoring.churn_model_uri)
    churn = load_churn_model(bundle)
    sizes: dict[str, object] = {"churn_algorithm": getattr(churn, "algorithm", "lightgbm")}
    if hasattr(churn, "booster"):
        sizes["churn_trees"] = churn.booster.num_trees()
    horizons = HorizonRiskModels.load(bundle / HORIZONS_FOLDER)
    if horizons is not None:
        sizes["horizon_trees"] = {f"{days}d": m.booster.num_trees() for days, m in horizons.models.items()}
    sizes["value_trees"] = ValueModel.load(load_registered_bundle(cfg.scoring.value_model_uri)).booster.num_trees()
    try:
        uplift = UpliftModel.load(load_registered_bundle(cfg.scoring.uplift_model_uri))
        used = ("control", "treated") if uplift.learner == "t_learner" else ("tau_control", "tau_treated")
        sizes["uplift"] = {"learner": uplift.learner, "trees_used": {k: uplift.boosters[k].num_trees() for k in used}}
    except Exception as error:  # noqa: BLE001  (no uplift model: the stage runs without one)
        sizes["uplift"] = f"none ({str(error).splitlines()[0][:200]})"
    return sizes


def rss_gb() -> float:
    """Resident memory of this process now, GB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 ** 3


def score(data: Path, models: Path, work: Path, started: float, compiled_cache: Path | None) -> dict[str, object]:
    """The whole score stage on every customer of `data`, with the peak resident memory of each step
    (`compiled_cache`: the boosters compiled, as `bench_config`)."""
    samples: list[tuple[float, float, float]] = []  # (moment, resident GB, CPU seconds of the process so far)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), rss_gb(), time.process_time()))
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    from pipelines.score import run

    cfg = bench_config(data, models, work, work / "outputs", compiled_cache)
    imported = time.perf_counter()
    result = run(cfg)
    finished = time.perf_counter()
    done.set()
    sizes = model_sizes(cfg)  # after the timed part
    timings: dict[str, float] = result["timings"]  # type: ignore[assignment]
    edges, peaks, cpu = imported, {}, {}
    for step in STEPS:  # the laps are consecutive: each step's window is known from the cumulative times
        window = [(gb, used) for moment, gb, used in samples if edges <= moment <= edges + timings[step]]
        peaks[step] = round(max(gb for gb, _ in window), 2) if window else None
        cpu[step] = round(window[-1][1] - window[0][1], 1) if len(window) > 1 else None
        edges += timings[step]
    summary = result["summary"]
    # From `predict` on the input tables are freed: what the stage holds beyond the features step.
    from_predict = [v for k, v in peaks.items() if STEPS.index(k) >= STEPS.index("predict") and v is not None]
    return {
        "models": sizes,
        "customers_scored": summary["customers_scored"],  # type: ignore[index]
        "customers_selected": summary["customers_selected"],  # type: ignore[index]
        "process_wall_seconds": round(finished - started, 1),
        "imports_seconds": round(imported - started, 1),
        "stage_seconds": round(finished - imported, 1),
        "features_step_seconds": round(timings["features"], 1),
        "rest_of_stage_seconds": round(finished - imported - timings["features"], 1),
        "stage_steps_seconds": {k: round(v, 2) for k, v in timings.items()},
        "prediction_customers_per_second": round(timings["prediction_customers_per_second"]),
        "peak_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2),
        "step_peak_rss_gb": peaks,
        "step_cpu_seconds": cpu,  # both cores: a step's CPU time over its wall time shows how busy the machine was
        "stage_cpu_seconds": round(samples[-1][2] - next(u for m, _, u in samples if m >= imported), 1),
        "peak_rss_from_predict_on_gb": max(from_predict) if from_predict else None,
        "batching": json.loads((work / "outputs" / "manifest.json").read_text())["batching"],
        "compiled_prediction": json.loads((work / "outputs" / "manifest.json").read_text())["compiled_prediction"],
        "drift_max_psi": result["drift"]["max_psi"],  # type: ignore[index]
    }


def batches(data: Path, models: Path, work: Path, rows: int) -> dict[str, object]:
    """Peak tracked memory beyond the scoring table: one batch vs batches of a tenth of `scoring.batch_rows`."""
    import tracemalloc

    import numpy as np
    import pandas as pd

    from models.boosting import ValueModel, load_churn_model
    from models.time_to_churn import HORIZONS_FOLDER, HorizonRiskModels
    from models.uplift.learners import UpliftModel
    from pipelines.score import score_in_batches
    from pipelines.scoring_rows import InMemoryRows
    from pipelines.tracking import configure_tracking, load_registered_bundle

    table = models / "features" / "score.parquet"
    if not table.is_file():
        return {"skipped": f"no scoring table at {table} (`churn features` writes it)"}
    cfg = bench_config(data, models, work, work / "outputs")
    configure_tracking(cfg)
    bundle = load_registered_bundle(cfg.scoring.churn_model_uri)
    churn, horizons = load_churn_model(bundle), HorizonRiskModels.load(bundle / HORIZONS_FOLDER)
    value = ValueModel.load(load_registered_bundle(cfg.scoring.value_model_uri))
    try:
        uplift: UpliftModel | None = UpliftModel.load(load_registered_bundle(cfg.scoring.uplift_model_uri))
    except Exception:  # noqa: BLE001
        uplift = None
    frame = pd.read_parquet(table).head(rows)
    size = max(cfg.scoring.batch_rows // 10, 1)
    out: dict[str, object] = {"rows": len(frame), "table_gb": round(frame.memory_usage(deep=True).sum() / 1e9, 3)}
    results = {}
    for label, batch in (("one_batch", len(frame)), (f"batches_of_{size}", size)):
        tracemalloc.start()
        start = time.perf_counter()
        scored, _, used = score_in_batches(InMemoryRows(frame), churn, value, horizons, uplift, cfg, batch, {})
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        results[label] = scored
        out[label] = {"batches": used["batches"], "seconds": round(seconds, 1), "peak_tracked_gb": round(peak / 1e9, 3),
                      "result_gb": round(scored.memory_usage(deep=True).sum() / 1e9, 3)}
    first, second = results.values()
    out["identical_scores"] = bool(first.equals(second) and all(
        np.array_equal(first[c].to_numpy(), second[c].to_numpy()) for c in first.columns if first[c].dtype == float))
    return out


def reasons(data: Path, models: Path, work: Path, rows: int) -> dict[str, object]:
    """TreeSHAP vs path attribution on the listed customers: speed and agreement of the reasons.

    Their features come from the scoring table `churn features` wrote beside the models (the same
    snapshot date, the end of the data), else are built again."""
    import numpy as np
    import pandas as pd

    from features.build import build_scoring_table
    from models.boosting import ChurnModel
    from models.explain import top_drivers
    from models.retention import path_contributions
    from pipelines.tables import load_tables
    from pipelines.tracking import configure_tracking, load_registered_bundle

    cfg = bench_config(data, models, work, work / "outputs")
    configure_tracking(cfg)
    churn = ChurnModel.load(load_registered_bundle("models:/churn-risk@champion"))
    listed = pd.read_csv(work / "outputs" / "retention_list.csv", usecols=["customer_id"], dtype="str")
    table = models / "features" / "score.parquet"
    frame = pd.read_parquet(table) if table.is_file() else build_scoring_table(load_tables(cfg), cfg.features,
                                                                               cfg.labels)
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


def child(step: str, args: argparse.Namespace, compiled_cache: Path | None = None) -> dict[str, object]:
    """Run one step in a fresh interpreter; its JSON result on the last stdout line."""
    command = [sys.executable, __file__, "--step", step, "--data", str(args.data), "--models", str(args.models),
               "--work", str(args.work), "--reason-rows", str(args.reason_rows),
               "--batch-check-rows", str(args.batch_check_rows)]
    if compiled_cache is not None:
        command += ["--compiled-cache", str(compiled_cache)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/bench-data/1m"))
    parser.add_argument("--models", type=Path, default=None,
                        help="work folder of `churn train` on the data (config.yaml, mlflow.db); "
                             "default: <data>-train, where benchmarks/bench_train.py puts it")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-score"))
    parser.add_argument("--reason-rows", type=int, default=2000)
    parser.add_argument("--batch-check-rows", type=int, default=200_000)
    parser.add_argument("--step", choices=["score", "batches", "reasons"], default=None)
    parser.add_argument("--compiled-cache", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.models = (args.models or args.data.with_name(args.data.name + "-train")).resolve()
    if args.step == "score":
        print(json.dumps(score(args.data, args.models, args.work, started, args.compiled_cache)))
        return
    if args.step == "batches":
        print(json.dumps(batches(args.data, args.models, args.work, args.batch_check_rows)))
        return
    if args.step == "reasons":
        print(json.dumps(reasons(args.data, args.models, args.work, args.reason_rows)))
        return

    sys.path.insert(0, str(ROOT))
    from benchmarks.banks import measured_when
    from pipelines.io import write_json

    copy_store(args.models, args.work)
    cache = args.work / "compiled-cache"
    shutil.rmtree(cache, ignore_errors=True)  # the first compiled run compiles, the second finds the cache
    runs: dict[str, dict[str, object]] = {}
    for label, compiled_cache in (("lightgbm", None), ("compiled_first_run", cache), ("compiled_cached", cache)):
        scored = runs[label] = child("score", args, compiled_cache)
        print(f"score stage, {label}: {scored['customers_scored']:,} customers in {scored['process_wall_seconds']} s "
              f"(stage {scored['stage_seconds']} s: features step {scored['features_step_seconds']} s, the rest "
              f"{scored['rest_of_stage_seconds']} s), peak {scored['peak_memory_gb']} GB (from the predict step on "
              f"{scored['peak_rss_from_predict_on_gb']} GB); prediction {scored['prediction_customers_per_second']:,} "
              f"customers/s; {scored['customers_selected']:,} listed", flush=True)
        print(f"  steps (s): {scored['stage_steps_seconds']}", flush=True)
        print(f"  step peaks (GB): {scored['step_peak_rss_gb']}", flush=True)
        print(f"  step CPU seconds: {scored['step_cpu_seconds']} (stage {scored['stage_cpu_seconds']})", flush=True)
    scored = runs["compiled_cached"]  # a scheduled job's run: the champion compiled by an earlier one
    sizes = scored["models"]
    print(f"models of {args.models}: {sizes}", flush=True)
    steps = {label: run["stage_steps_seconds"] for label, run in runs.items()}
    compiled_speedup = round(steps["lightgbm"]["predict"] / steps["compiled_cached"]["predict"], 2)  # type: ignore[index]
    print(f"predict step: LightGBM {steps['lightgbm']['predict']:.1f} s, compiled {steps['compiled_cached']['predict']:.1f} s "
          f"({compiled_speedup}x); compiling on the first run {steps['compiled_first_run']['compile']:.1f} s", flush=True)
    batched = child("batches", args)
    print(f"batching: {batched}", flush=True)
    explained = child("reasons", args)
    print(f"reasons on {explained['customers']:,} listed customers: TreeSHAP "
          f"{explained['tree_shap_customers_per_second']:,}/s, path attribution "
          f"{explained['path_attribution_customers_per_second']:,}/s ({explained['speedup']}x); top reason "
          f"agrees {explained['top_reason_agreement']:.0%}, top-3 overlap {explained['top3_overlap']:.0%}", flush=True)
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "data": str(args.data),
        "models": str(args.models),
        "targets": {"seconds": TARGET_SECONDS, "peak_memory_gb": TARGET_GB},
        "score": scored,
        "score_runs": {label: {k: run[k] for k in ("process_wall_seconds", "stage_seconds", "features_step_seconds",
                                                    "peak_memory_gb", "stage_steps_seconds", "compiled_prediction")}
                       for label, run in runs.items()},
        "predict_step_lightgbm_over_compiled": compiled_speedup,
        "measured": measured_when(),
        "batches": batched,
        "reasons": explained,
        "meets_targets": bool(scored["process_wall_seconds"] <= TARGET_SECONDS
                              and scored["peak_memory_gb"] <= TARGET_GB),
    }
    write_json(results, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""Speed and memory of the complaints stage on a large generated bank, against reading its inputs.

Measures, each in a fresh subprocess (so every peak RSS is its own):
  (a) stage: the pure complaints analysis as `churn complaints` runs it
      (`pipelines.complaints.analyse`: weekly counts and forecast with backtest, staffing,
      satisfaction by unit, heat maps, text sentiment and suggestions), its parts timed by
      the progress messages it says;
  (b) reference: loading the tables as the stage does (`load_tables` with the stage's
      NEEDS_TABLES: customers, complaints and surveys read, typed and validated; the other
      tables' event times only, for the end of the data): the I/O floor the stage starts from,
      on the same machine in the same run;
  (c) command: the whole stage as `churn complaints` runs it (`pipelines.complaints.run`:
      loading, the analysis, every CSV, Parquet and chart, the summary and the MLflow run),
      into a temporary folder and MLflow store.
Reports wall times, peak memory, rows, and the ratio stage / reference. The times of (a)
exclude reading the inputs (the reference is that reading); (c) includes everything.

Usage:
  .venv/bin/churn generate --customers 1000000 --months 30 --seed 42 --out /tmp/bench-data/1m
  .venv/bin/python benchmarks/bench_complaints.py --data /tmp/bench-data/1m
Writes benchmarks/results/complaints.json.
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

from benchmarks.banks import bank_config  # noqa: E402
RESULTS = ROOT / "benchmarks" / "results" / "complaints.json"
TABLES_READ = ("customers", "complaints", "surveys")


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def warm_imports() -> None:
    """Import what the measured code imports lazily, so the timings are compute, not imports."""
    import statsmodels.tsa.arima.model  # noqa: F401
    import statsmodels.tsa.exponential_smoothing.ets  # noqa: F401
    import vaderSentiment.vaderSentiment  # noqa: F401

    import features.validation  # noqa: F401
    import pipelines.tables  # noqa: F401


def load(data: Path):
    """The tables as the stage loads them (`load_tables` with the stage's NEEDS_TABLES)."""
    from pipelines.complaints import NEEDS_TABLES
    from pipelines.tables import load_tables

    tables = load_tables(bank_config(data), NEEDS_TABLES)
    missing = {"branch", "business_line", "text"} - set(tables.complaints.columns)
    if missing:
        raise SystemExit(f"{data} was generated before complaints had {sorted(missing)}: generate it again")
    return tables


def measure_stage(data: Path) -> dict:
    """`pipelines.complaints.analyse` itself, its parts timed by the progress messages it says."""
    from pipelines.complaints import analyse

    warm_imports()
    tables = load(data)
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    result = analyse(tables, bank_config(data), lambda message: marks.append((message, time.perf_counter())))
    seconds = time.perf_counter() - start
    text_started = next((at for message, at in marks if message.startswith("scoring complaint text")), None)
    parts = {"forecast_staffing_satisfaction_heat_maps": round((text_started or start + seconds) - start, 2),
             "text_sentiment_and_suggestions": round(start + seconds - text_started, 2) if text_started else 0.0}
    quality = result["quality"]
    return {"seconds": round(seconds, 1), "parts_seconds": parts, "series_forecast": len(result["forecast"].accuracy),
            "mase_overall": result["forecast"].summary.get("mase_overall"),
            "mae_ratio_to_seasonal_naive": result["forecast"].summary.get("mae_ratio_to_seasonal_naive"),
            "category_macro_f1": float(quality.set_index("target").loc["category", "macro_f1"])
            if len(quality) else None,
            "rows": {name: len(getattr(tables, name)) for name in TABLES_READ}}


def measure_command(data: Path) -> dict:
    """The whole stage, as `churn complaints --config C` runs it, into a temporary folder."""
    import tempfile

    from pipelines import complaints

    warm_imports()
    with tempfile.TemporaryDirectory(prefix="bench-complaints-") as tmp:
        cfg = bank_config(data, Path(tmp), "bench-complaints")
        start = time.perf_counter()
        complaints.run(cfg)
        seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 1)}


def measure_reference(data: Path) -> dict:
    warm_imports()
    start = time.perf_counter()
    tables = load(data)
    return {"seconds": round(time.perf_counter() - start, 1),
            "rows": {name: len(getattr(tables, name)) for name in TABLES_READ}}


def child(kind: str, data: Path) -> None:
    measure = {"stage": measure_stage, "reference": measure_reference, "command": measure_command}[kind]
    result = measure(data)
    result["peak_gb"] = round(peak_rss_gb(), 2)
    usage = resource.getrusage(resource.RUSAGE_SELF)  # CPU time: steadier than wall time on a shared machine
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    print(json.dumps(result))


def run_child(kind: str, data: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the temporary store, not a server
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--data", str(data)], capture_output=True,
                          text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--child", choices=("stage", "reference", "command"))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data)
        return
    reference = run_child("reference", args.data)
    print(f"reference (load the stage's tables): {reference['seconds']} s, peak {reference['peak_gb']} GB",
          flush=True)
    stage = run_child("stage", args.data)
    print(f"complaints stage: {stage['seconds']} s ({stage['parts_seconds']}), peak {stage['peak_gb']} GB",
          flush=True)
    command = run_child("command", args.data)
    print(f"churn complaints, whole stage: {command['seconds']} s, peak {command['peak_gb']} GB", flush=True)
    from pipelines.io import write_json

    results = {"data": str(args.data), "rows": stage["rows"], "stage": stage, "reference": reference,
               "command": command,
               "ratio_stage_to_reading": round(stage["seconds"] / max(reference["seconds"], 1e-9), 2),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    write_json(results, RESULTS)
    print(f"ratio stage / reading its inputs: {results['ratio_stage_to_reading']}; wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""How `churn features` and `churn score` grow from a 1M-customer bank to a 10M one, run as a user runs them.

For each --data bank (smallest first), each command in a fresh process under /usr/bin/time -v (wall and CPU
seconds, peak memory): `churn features` with configs/default.yaml on that bank, then `churn score` with the
champions of --models (a `bench_train.py` work folder: its MLflow store copied, every booster compiled into
--compiled-cache, as `bench_score.py` does; models of the size the demo's recipe trains). `--pandas-max-rows`
sets `features.pandas_max_rows` (empty: `auto`'s own limit, half this machine's memory at 150 bytes a row);
the engine each command took, and why, is read from its console. Then the growth from the smallest bank to
the largest, per customer (1.0 = linear; below 1, better than linear).

On the 10M bank with `--pandas-max-rows 250000000` both commands take the pandas engine (`churn features` in
two parts: the training sample's events, then the scoring cutoff's rows; `churn score` the transactions of its
look-back); with the default limit `auto` takes DuckDB there.

Usage:
  .venv/bin/python benchmarks/bench_scale.py --data /tmp/bench-data/1m /tmp/bench-data/10m \
      --models /tmp/bench-data/1m-train-16 --work /tmp/bench-scale --pandas-max-rows 250000000
Writes benchmarks/results/scale.json (one entry per --pandas-max-rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
CHURN = Path(sys.executable).parent / "churn"


def timed(args: list[str]) -> dict[str, object]:
    """`banks.timed_command` (MLflow's tracking URI from the config, not the environment), with the engine
    `features.engine: auto` took and why, from the console."""
    from benchmarks.banks import timed_command

    run = timed_command(args, env={key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"})
    console = str(run.pop("console"))
    chosen = re.search(r"features\.engine auto: (\w+) \((.*?features\.pandas_max_rows(?: sets it)?)\)", console)
    return {**run, "engine": chosen.group(1) if chosen else None, "engine_why": chosen.group(2) if chosen else None}


def configs(data: Path, models: Path, work: Path, compiled_cache: Path, pandas_max_rows: int | None
            ) -> tuple[Path, Path]:
    """The features config (configs/default.yaml on `data`, outputs and store in `work`) and the score config
    (`bench_score.bench_config`: the models' own config and a copy of their store), both with the limit."""
    from benchmarks.banks import write_default_config
    from benchmarks.bench_score import bench_config, copy_store

    def limit(raw: dict) -> None:
        raw["features"]["pandas_max_rows"] = pandas_max_rows

    (work / "features-stage").mkdir(parents=True, exist_ok=True)
    features = write_default_config(data.resolve(), work / "features-stage", "bench-scale", edit=limit)
    copy_store(models, work / "score-stage")
    raw = bench_config(data.resolve(), models, work / "score-stage", work / "score-stage" / "outputs",
                       compiled_cache).model_dump(mode="json")
    limit(raw)
    score = work / "score-stage" / "config.yaml"
    score.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return features, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="banks, smallest first")
    parser.add_argument("--models", type=Path, required=True, help="a bench_train.py work folder (its champions)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-scale"))
    parser.add_argument("--compiled-cache", type=Path, default=None,
                        help="where the compiled boosters are cached (default: <work>/compiled-cache)")
    parser.add_argument("--pandas-max-rows", type=int, default=None)
    args = parser.parse_args()
    cache = args.compiled_cache or args.work / "compiled-cache"
    banks: list[dict[str, object]] = []
    for data in args.data:
        work = args.work / data.name
        features_config, score_config = configs(data, args.models, work, cache, args.pandas_max_rows)
        entry: dict[str, object] = {"data": str(data)}
        entry["features"] = timed([str(CHURN), "features", "--config", str(features_config)])
        summary = json.loads((work / "features-stage" / "reports" / "features_summary.json").read_text())
        entry["features"].update({"train_rows": summary["train"]["rows"], "score_rows": summary["score"]["rows"],  # type: ignore[union-attr]
                                  "uplift_rows": summary["outputs"]["uplift.parquet"]["rows"]})
        entry["score"] = timed([str(CHURN), "score", "--config", str(score_config)])
        manifest = json.loads((work / "score-stage" / "outputs" / "manifest.json").read_text())
        entry["score"].update({"customers_scored": manifest["rows"]["eligible_customers"],  # type: ignore[union-attr]
                               "customers_listed": manifest["rows"]["selected"]})
        entry["customers"] = summary["score"]["rows"]
        print(json.dumps(entry, indent=1), flush=True)
        banks.append(entry)
    growth: dict[str, object] = {}
    if len(banks) > 1:
        small, large = banks[0], banks[-1]
        customers = int(large["customers"]) / int(small["customers"])  # type: ignore[arg-type]
        for step in ("features", "score"):
            a, b = small[step], large[step]
            growth[step] = {"customers_ratio": round(customers, 2),
                            "time_ratio": round(b["seconds"] / a["seconds"], 2),  # type: ignore[index]
                            "time_per_customer_vs_linear": round(b["seconds"] / a["seconds"] / customers, 2),  # type: ignore[index]
                            "cpu_per_customer_vs_linear": round(b["cpu_seconds"] / a["cpu_seconds"] / customers, 2),  # type: ignore[index]
                            "memory_ratio": round(b["peak_gb"] / a["peak_gb"], 2)}  # type: ignore[index]
    from benchmarks.banks import measured_when

    results = {"banks": banks, "growth": growth, "pandas_max_rows": args.pandas_max_rows, "models": str(args.models),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "measured": measured_when()}
    print(json.dumps({"growth": growth}, indent=1))
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    stored[f"pandas_max_rows={args.pandas_max_rows}"] = results
    RESULTS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

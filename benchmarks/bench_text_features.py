"""Effect of the complaint-tone features on the churn model: test ROC-AUC and PR-AUC with and without them.

Runs `churn features` and `churn train` twice on the same data and config, once with
`features.complaint_sentiment: false` (the default) and once with `true`, each in its own
temporary folder and MLflow store, and reads `reports/train_metrics.json` of both runs
(the same out-of-time test cutoff). The difference is the effect of adding the features.

Usage: .venv/bin/python benchmarks/bench_text_features.py --data data/raw/demo [--config configs/default.yaml]
       [--cutoffs N]
(`make demo` generates data/raw/demo). Writes benchmarks/results/text_features.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.banks import write_default_config  # noqa: E402
from pipelines.io import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "text_features.json"
CHURN = Path(sys.executable).parent / "churn"
METRICS = ("roc_auc", "pr_auc")


def run_once(data: Path, config: Path, sentiment: bool, folder: Path, cutoffs: int | None) -> dict[str, object]:
    """features + train with the tone features on or off; the served model's test metrics."""
    def edit(raw: dict) -> None:
        raw["features"]["complaint_sentiment"] = sentiment
        if cutoffs is not None:
            raw["labels"]["cutoffs"]["count"] = cutoffs

    path = write_default_config(data, folder, "bench-text-features", edit=edit, source=config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    seconds = {}
    for stage in ("features", "train"):
        start = time.perf_counter()
        subprocess.run([str(CHURN), stage, "--config", str(path)], check=True, env=env, cwd=folder,
                       stdout=subprocess.DEVNULL)
        seconds[stage] = round(time.perf_counter() - start, 1)
    metrics = json.loads((folder / "reports" / "train_metrics.json").read_text(encoding="utf-8"))
    flat = metrics["metrics"]
    served = metrics.get("selected_churn_model")
    out: dict[str, object] = {"served_model": served, "seconds": seconds}
    for name in METRICS:
        out[f"served.{name}"] = flat.get(f"selected.{name}", flat.get(f"churn.{name}"))
        out[f"lightgbm.{name}"] = flat.get(f"churn.{name}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "raw" / "demo")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    parser.add_argument("--cutoffs", type=int, default=None, help="training cutoffs (default: the config's)")
    args = parser.parse_args()
    results: dict[str, object] = {"data": str(args.data), "config": str(args.config), "cutoffs": args.cutoffs,
                                  "python": platform.python_version(), "machine": platform.machine()}
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        for sentiment in (False, True):
            folder = Path(tmp) / ("with" if sentiment else "without")
            folder.mkdir()
            results["with" if sentiment else "without"] = run_once(args.data, args.config, sentiment, folder,
                                                                        args.cutoffs)
            print(f"complaint_sentiment={sentiment}: {results['with' if sentiment else 'without']}", flush=True)
    for name in METRICS:
        for model in ("served", "lightgbm"):
            a, b = results["without"][f"{model}.{name}"], results["with"][f"{model}.{name}"]  # type: ignore[index]
            if a is not None and b is not None:
                results[f"difference.{model}.{name}"] = round(float(b) - float(a), 4)
    write_json(results, RESULTS)
    print(json.dumps({k: v for k, v in results.items() if k.startswith("difference")}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

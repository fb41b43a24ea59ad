"""Benchmark of `churn validate`: this checkout (event tables read in batches) against another one
(e.g. main before the change, which loads every table whole), on the same bank in the same run.

Each run is a fresh `churn validate` process with PYTHONPATH set to the checkout (wall time and
peak resident memory, /usr/bin/time -v), alternating old and new; both reports must be identical.

Usage:
  .venv/bin/python benchmarks/bench_validate.py --data /tmp/bench-data/1m --work /tmp/bench-validate-1m \
      --old /work/main --runs 2
Writes benchmarks/results/validate.json (one entry per --data).
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
RESULTS = ROOT / "benchmarks" / "results" / "validate.json"
CHURN = Path(sys.executable).parent / "churn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--old", type=Path, default=None, help="another checkout to compare with (e.g. /work/main)")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    from benchmarks.banks import write_default_config
    from benchmarks.bench_features_stage import timed

    checkouts = {"new": ROOT, **({"old": args.old.resolve()} if args.old else {})}
    configs = {}
    for label in checkouts:
        folder = args.work / label
        folder.mkdir(parents=True, exist_ok=True)
        configs[label] = write_default_config(args.data.resolve(), folder, f"bench-validate-{label}")
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in checkouts}
    reports: dict[str, dict[str, object]] = {}
    for _ in range(args.runs):
        for label in sorted(checkouts, reverse=True):  # old first, then new
            os.environ["PYTHONPATH"] = str(checkouts[label])
            runs[label].append(timed([str(CHURN), "validate", "--config", str(configs[label])]))
            print(label, runs[label][-1], flush=True)
            reports[label] = json.loads((args.work / label / "reports" / "validation.json").read_text())
    results: dict[str, object] = {label: {"runs": values, "best_seconds": min(r["seconds"] for r in values),
                                          "best_peak_gb": min(r["peak_gb"] for r in values)}
                                  for label, values in runs.items()}
    results["valid"] = reports["new"].get("valid")
    rows = reports["new"].get("tables", {})
    results["rows"] = {name: entry["rows"] for name, entry in rows.items() if "rows" in entry}
    if "old" in reports:
        results["reports_identical"] = reports["old"] == reports["new"]
        old, new = results["old"], results["new"]
        results["ratio_new_to_old_seconds"] = round(new["best_seconds"] / old["best_seconds"], 2)
        results["ratio_new_to_old_peak"] = round(new["best_peak_gb"] / old["best_peak_gb"], 2)
    results.update({"data": str(args.data), "old_checkout": str(args.old),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_average_at_end": list(os.getloadavg())},
                    "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    print(json.dumps(results, indent=1))
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    stored[str(args.data)] = results
    RESULTS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

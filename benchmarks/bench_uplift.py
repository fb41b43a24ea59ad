"""When does the uplift list beat the value-at-risk list? `churn backtest` on two generated banks
that differ only in the size of their randomised retention campaign.

Both banks have the same customers, seed and months; one runs the default campaign (1.5% of
open customers picked a month, a fifth of them kept as control: the demo's), the other a large
randomised programme (`--contact-share 0.1 --control-share 0.5`: ten times the contacts, half of
them control). On each, `churn backtest` replays the lists at the latest `--cutoffs` month starts
with models trained only on data before each, and reads the generator's true uplift: true value
saved by the value-at-risk list, the uplift list of the same size and a random list. The figure
is the ratio uplift / value at risk, per replay and in total, in the same run.

Usage: .venv/bin/python benchmarks/bench_uplift.py [--customers 50000] [--months 30] [--seed 42]
       [--cutoffs 6]
Writes benchmarks/results/uplift.json (each bank's totals, per-replay figures, the gate's verdicts).
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

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.banks import write_default_config  # noqa: E402
from pipelines.io import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "uplift.json"
CHURN = Path(sys.executable).parent / "churn"
CAMPAIGNS = {"default_campaign": (0.015, 0.2), "large_randomised_campaign": (0.1, 0.5)}
"""Bank name -> (share of open customers picked a month, share of them kept as control)."""


def backtest_bank(folder: Path, customers: int, months: int, seed: int, cutoffs: int,
                  contact_share: float, control_share: float) -> dict[str, object]:
    """Generate one bank with the CLI, run `churn backtest` on it, return its figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    raw_dir = folder / "raw"
    start = time.perf_counter()
    subprocess.run([str(CHURN), "generate", "--customers", str(customers), "--months", str(months), "--seed", str(seed),
                    "--out", str(raw_dir), "--contact-share", str(contact_share), "--control-share", str(control_share)],
                   check=True, env=env, cwd=folder, stdout=subprocess.DEVNULL)
    generate_seconds = time.perf_counter() - start
    path = write_default_config(raw_dir, folder, "bench-uplift", raw_dir / "_truth",
                                edit=lambda config: config["backtest"].update(cutoffs=cutoffs))
    start = time.perf_counter()
    subprocess.run([str(CHURN), "backtest", "--config", str(path)], check=True, env=env, cwd=folder,
                   stdout=subprocess.DEVNULL)
    backtest_seconds = time.perf_counter() - start
    summary = json.loads((folder / "reports" / "backtest.json").read_text(encoding="utf-8"))
    contacts = pd.read_parquet(raw_dir / "contacts.parquet", columns=["treatment"])
    totals = summary["totals"]
    per_replay = []
    table = pd.read_csv(folder / "reports" / "backtest.csv")
    for cutoff, rows in table.groupby("cutoff", sort=True):
        saved = rows.set_index("list")["true_value_saved"]
        per_replay.append({"cutoff": cutoff, **{f"true_value_saved.{k}": round(float(v), 1) for k, v in saved.items()},
                           "uplift_over_value_at_risk": round(float(saved["uplift"] / saved["value_at_risk"]), 3)
                           if "uplift" in saved else None})
    ratio = totals["uplift"]["true_value_saved"] / totals["value_at_risk"]["true_value_saved"] if "uplift" in totals else None
    return {
        "contact_share": contact_share, "control_share": control_share,
        "contact_records": int(len(contacts)), "control_records": int((contacts["treatment"] == 0).sum()),
        "seconds": {"generate": round(generate_seconds, 1), "backtest": round(backtest_seconds, 1)},
        "totals": {name: {k: totals[name][k] for k in ("customers", "churners_reached", "true_churners_saved",
                                                        "true_value_saved")} for name in totals},
        "uplift_over_value_at_risk": round(ratio, 3) if ratio is not None else None,
        "replays_uplift_wins": sum(1 for r in per_replay if (r["uplift_over_value_at_risk"] or 0) > 1),
        "per_replay": per_replay,
        "gate_verdicts": [c.get("uplift_ranking_gate", c.get("uplift_note", c.get("skipped"))) for c in summary["cutoffs"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cutoffs", type=int, default=6)
    args = parser.parse_args()
    results: dict[str, object] = {"customers": args.customers, "months": args.months, "seed": args.seed,
                                  "cutoffs": args.cutoffs, "python": platform.python_version(),
                                  "cpus": os.cpu_count(), "banks": {}}
    with tempfile.TemporaryDirectory(prefix="bench-uplift-") as tmp:
        for name, (contact, control) in CAMPAIGNS.items():
            folder = Path(tmp) / name
            folder.mkdir()
            figures = backtest_bank(folder, args.customers, args.months, args.seed, args.cutoffs, contact, control)
            results["banks"][name] = figures  # type: ignore[index]
            print(f"{name}: {figures['control_records']:,} control records; true value saved: "
                  + ", ".join(f"{k} {v['true_value_saved']:,.0f}" for k, v in figures["totals"].items())
                  + f"; uplift / value at risk {figures['uplift_over_value_at_risk']} "
                  f"(uplift ahead in {figures['replays_uplift_wins']} of {len(figures['per_replay'])} replays)",
                  flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(results, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""Benchmark of the complaint-rules code on one million baskets: wall time and peak memory.

Each measurement runs in a fresh subprocess so its peak memory (ru_maxrss) is its own:
- FP-growth and Apriori (low_memory) through `models.rules.frequent_itemsets` +
  `rules_from_itemsets`, on 1M baskets of ~3 of 30 items built directly as a one-hot
  matrix (min_support 0.001 and 0.01);
- the whole pure rules stage, `models.rules.mine_complaint_rules` (basket building,
  mining, order test, chains, root causes, churn rules), on a complaints table that
  makes 1M baskets (500,000 customers x 2 complaint episodes, ~3 complaints each, a
  planted 3-step chain and churn after it);
- the same stage on pathological data (5,000 distinct categories, baskets of up to 40
  complaints) to show the caps keep it bounded.

- with `--data DIR` (a generated bank, e.g. the 1M one): the whole stage as `churn rules`
  runs it (`pipelines.rules.run`: loading what it needs, mining, files, MLflow) into a
  temporary folder, against loading and validating all five tables in the same run (what
  the stage did before it read only what it needs).

Usage: .venv/bin/python benchmarks/bench_rules.py [--baskets 1000000] [--data /tmp/bench-data/1m]
Writes benchmarks/results/rules.json. Targets: whole stage on 1M baskets < 10 s, < 1 GB.
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

import numpy as np
import pandas as pd

from pipelines.io import write_json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.banks import bank_config  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "rules.json"
BANK_CASES = ("churn_rules", "load_every_table")
N_ITEMS = 30


def item_probabilities(rng: np.random.Generator, n_items: int) -> np.ndarray:
    """Skewed item popularity, like complaint categories (a few common, a long tail)."""
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    return rng.permutation(weights / weights.sum())


def one_hot_baskets(n_baskets: int, seed: int) -> pd.DataFrame:
    """n_baskets x 30 boolean baskets of 1-5 items (mean ~3), built without a Python loop."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_baskets)
    rows = np.repeat(np.arange(n_baskets), sizes)
    columns = rng.choice(N_ITEMS, size=len(rows), p=item_probabilities(rng, N_ITEMS))
    matrix = np.zeros((n_baskets, N_ITEMS), dtype=bool)
    matrix[rows, columns] = True
    return pd.DataFrame(matrix, columns=[f"category=c{i:02d}" for i in range(N_ITEMS)], copy=False)


def complaint_tables(n_baskets: int, seed: int, n_categories: int = N_ITEMS, heavy_share: float = 0.0
                     ) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Complaints and customers making `n_baskets` 30-day baskets: 2 episodes 120 days apart per customer.

    Episodes have 1-5 complaints; a `heavy_share` of them has 30-40 (pathological customers).
    """
    rng = np.random.default_rng(seed)
    n_customers = n_baskets // 2
    episode_customer = np.repeat(np.arange(n_customers), 2)
    start = pd.Timestamp("2023-01-01").value // 1000
    day = 86_400 * 1_000_000
    episode_start = (start + rng.integers(0, 300, n_customers).repeat(2) * day
                     + np.tile([0, 120], n_customers) * day)
    sizes = rng.integers(1, 6, len(episode_customer))
    heavy = rng.random(len(sizes)) < heavy_share
    sizes[heavy] = rng.integers(30, 41, int(heavy.sum()))
    row_episode = np.repeat(np.arange(len(episode_customer)), sizes)
    opened = episode_start[row_episode] + rng.integers(0, 25 * day, len(row_episode))
    category = rng.choice(n_categories, size=len(row_episode), p=item_probabilities(rng, n_categories))
    # Planted chain c00 -> c01 -> c02 in 5% of episodes, a few days apart; churn often follows.
    planted = rng.random(len(episode_customer)) < 0.05
    first_row = np.cumsum(sizes) - sizes
    chain_rows = first_row[planted]
    chain_rows = chain_rows[sizes[planted] >= 3]
    for step, code in enumerate((0, 1, 2)):
        category[chain_rows + step] = code
        opened[chain_rows + step] = episode_start[row_episode[chain_rows]] + step * 3 * day
    customer_ids = pd.Series(np.arange(n_customers), dtype="int64").map("C{:07d}".format).astype("str")
    names = pd.Series([f"cat_{i:04d}" for i in range(n_categories)], dtype="str")
    complaints = pd.DataFrame({
        "customer_id": customer_ids.take(episode_customer[row_episode]).reset_index(drop=True),
        "opened_at": pd.Series(opened.astype("datetime64[us]")),
        "category": names.take(category).reset_index(drop=True),
    })
    churners = np.unique(episode_customer[row_episode[chain_rows]])
    churners = churners[rng.random(len(churners)) < 0.5]
    closed = np.full(n_customers, np.iinfo(np.int64).min)
    closed[churners] = episode_start[2 * churners + 1] + 60 * day
    customers = pd.DataFrame({
        "customer_id": customer_ids,
        "signup_date": pd.Timestamp("2022-01-01"),
        "closed_date": pd.to_datetime(np.where(closed == np.iinfo(np.int64).min, np.nan, closed), unit="us")
        .astype("datetime64[us]"),
    })
    return complaints, customers, pd.Timestamp("2025-01-01")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_bank(case: str, data: Path) -> dict[str, object]:
    """The `churn rules` stage on a generated bank, or loading every table (the reference)."""
    import tempfile

    from pipelines import rules
    from pipelines.tables import load_tables

    if case == "load_every_table":
        started = time.perf_counter()
        tables = load_tables(bank_config(data))
        return {"case": case, "seconds": round(time.perf_counter() - started, 2), "peak_mb": round(peak_mb(), 1),
                "rows": {name: len(getattr(tables, name)) for name in tables.present()}}
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        started = time.perf_counter()
        result = rules.run(bank_config(data, Path(tmp), "bench-rules"))
        seconds = time.perf_counter() - started
    summary = result["summary"]
    return {"case": case, "seconds": round(seconds, 2), "peak_mb": round(peak_mb(), 1),
            "counts": summary.get("counts") if isinstance(summary, dict) else None}


def measure(case: str, n_baskets: int, min_support: float) -> dict[str, object]:
    """One measurement (runs inside the child process)."""
    from features.settings import FeatureSettings, LabelSettings
    from models.rules import RuleSettings, frequent_itemsets, mine_complaint_rules, rules_from_itemsets

    if case in ("fpgrowth", "apriori"):
        onehot = one_hot_baskets(n_baskets, seed=7)
        before = peak_mb()
        started = time.perf_counter()
        itemsets = frequent_itemsets(onehot, max(1, int(np.ceil(min_support * n_baskets))), 4, case)
        rules = rules_from_itemsets(itemsets, n_baskets, "confidence", 0.1)
        seconds = time.perf_counter() - started
        return {"case": case, "baskets": n_baskets, "min_support": min_support, "seconds": round(seconds, 2),
                "peak_mb": round(peak_mb(), 1), "peak_mb_before": round(before, 1), "itemsets": len(itemsets),
                "rules": len(rules)}
    pathological = case == "stage_pathological"
    complaints, customers, as_of = complaint_tables(
        n_baskets, seed=11, n_categories=5_000 if pathological else N_ITEMS, heavy_share=0.02 if pathological else 0.0)
    settings = RuleSettings(min_support=min_support)
    before = peak_mb()
    started = time.perf_counter()
    result = mine_complaint_rules(complaints, customers, None, as_of, settings, LabelSettings(),
                                  FeatureSettings().complaint_targets)
    seconds = time.perf_counter() - started
    return {"case": case, "baskets": int(result.summary["baskets"]), "complaints": len(complaints),
            "min_support": min_support, "seconds": round(seconds, 2), "peak_mb": round(peak_mb(), 1),
            "peak_mb_before": round(before, 1), "itemsets": int(result.summary["itemsets"]),
            "rules": len(result.rules), "chains": len(result.chains), "churn_rules": len(result.churn_rules),
            "top_chain": result.chains["chain"].iloc[0] if len(result.chains) else None,
            "messages": result.messages}


def run_child(case: str, n_baskets: int, min_support: float, data: Path | None = None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the temporary store, not a server
    completed = subprocess.run(
        [sys.executable, __file__, "--child", case, "--baskets", str(n_baskets), "--min-support", str(min_support),
         *(["--data", str(data)] if data is not None else [])],
        capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    if completed.returncode != 0:
        return {"case": case, "baskets": n_baskets, "min_support": min_support,
                "error": completed.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baskets", type=int, default=1_000_000)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--min-support", type=float, default=0.001, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None,
                        help="a generated bank: also time `churn rules` on it against loading every table")
    args = parser.parse_args()
    if args.child:
        measured = (measure_bank(args.child, args.data) if args.child in BANK_CASES
                    else measure(args.child, args.baskets, args.min_support))
        print(json.dumps(measured))
        return
    plan = [("fpgrowth", 0.001), ("fpgrowth", 0.01), ("apriori", 0.001), ("apriori", 0.01),
            ("stage", 0.005), ("stage", 0.001), ("stage_pathological", 0.001)]
    results = []
    for case, min_support in plan:
        result = run_child(case, args.baskets, min_support)
        results.append(result)
        shown = {k: v for k, v in result.items() if k != "messages"}
        print(json.dumps(shown), flush=True)
    payload = {"benchmark": "complaint association rules", "machine": platform.platform(),
               "python": platform.python_version(), "targets": {"stage_seconds": 10, "stage_peak_mb": 1024},
               "results": results}
    if args.data is not None:
        bank = {case: run_child(case, args.baskets, args.min_support, args.data) for case in BANK_CASES}
        for result in bank.values():
            print(json.dumps(result), flush=True)
        stage, reference = bank["churn_rules"], bank["load_every_table"]
        if "seconds" in stage and "seconds" in reference:
            bank["ratio_stage_to_loading_every_table"] = round(stage["seconds"] / max(reference["seconds"], 1e-9), 2)
            print(f"churn rules / loading every table: {bank['ratio_stage_to_loading_every_table']}", flush=True)
        payload["bank"] = {"data": str(args.data), **bank}
    write_json(payload, RESULTS)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

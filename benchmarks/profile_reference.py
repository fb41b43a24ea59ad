"""Where the time of the hand-written reference query goes (benchmarks/reference_query.py), one cutoff.

1. Each per-table CTE alone (tx: the transactions of the longest look-back and the label window;
   tx_before: the latest older transaction; cx complaints; sv surveys; ct contacts; pop the population),
   `--repeats` times, best wall and CPU seconds of the process (DuckDB, 2 threads).
2. The whole statement once under DuckDB's profiler (PRAGMA enable_profiling='json'): the operators with
   the most time (summed over threads), each with the CTE / table it works for.
The rest of the whole statement's time (joins of the aggregates to the population, the quintile edges,
the wide projection, the sort) is the total minus the per-table CTEs.
3. With --engine: the engine's query for the same cutoff (the Ibis expression `build_frames` runs, compiled
   to DuckDB SQL) once under the same profiler, its top operators labelled the same way, for comparison.

Usage:
  .venv/bin/python benchmarks/profile_reference.py --data /tmp/bench-data/1m --cutoff 2025-07-01 --engine
Writes benchmarks/results/reference_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "reference_profile.json"
CTES = ("tx", "tx_before", "cx", "sv", "ct", "pop")
SCANS = {"transactions.parquet": "transactions", "complaints.parquet": "complaints", "surveys.parquet": "surveys",
         "contacts.parquet": "contacts", "customers.parquet": "customers"}


def _connect(memory_limit: str):
    import duckdb

    con = duckdb.connect(config={"threads": 2, "memory_limit": memory_limit, "temp_directory": "/tmp/reference-duckdb"})
    con.execute("SET enable_progress_bar = false")
    return con


def _timed(con, sql: str) -> dict[str, float]:
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    rows = con.sql(sql).to_arrow_table().num_rows
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_seconds": round(time.perf_counter() - start, 2), "rows": rows,
            "cpu_seconds": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2)}


def _operators(node: dict, path: list[str], out: list[dict]) -> str | None:
    """Flatten the profile tree; each operator labelled with the tables scanned below it."""
    below: set[str] = set()
    for child in node.get("children", []):
        label = _operators(child, path + [node["type"]], out)
        if label:
            below.update(label.split("+"))
    extra = node.get("extra_info", {})
    if node["type"] == "TABLE_SCAN":
        text = json.dumps(extra)
        below.update(t for f, t in SCANS.items() if f in text)
        if "Filters" in extra:
            below = {f"{t} ({extra['Filters'][:60]})" if t == "transactions" else t for t in below}
    label = "+".join(sorted(below)) or None
    out.append({"operator": node["type"], "seconds": round(node.get("timing", 0.0), 2),
                "rows": node.get("intermediate_rows"), "tables": label,
                **({"aggregates": len(extra["Aggregates"])} if isinstance(extra.get("Aggregates"), list) else {}),
                **({"cte": extra["CTE Name"]} if "CTE Name" in extra else {})})
    return label


def _profile(con, sql: str) -> dict[str, object]:
    """Run `sql` once under DuckDB's JSON profiler: its total, and the operators with the most time."""
    profile = Path(tempfile.mkdtemp()) / "profile.json"
    con.execute("PRAGMA enable_profiling='json'")
    con.execute(f"PRAGMA profiling_output='{profile}'")
    con.sql(sql).to_arrow_table()
    con.execute("PRAGMA disable_profiling")
    tree = json.loads(profile.read_text())
    operators: list[dict] = []
    for node in tree["operator"]:
        _operators(node, [], operators)
    return {"total_seconds": round(tree["query"]["total_time"], 2),
            "operator_seconds_summed_over_threads": round(sum(o["seconds"] for o in operators), 2),
            "row_groups_scanned": [tree["query"]["total_row_groups_scanned"], tree["query"]["total_row_groups_to_scan"]],
            "peak_buffer_memory_gb": round(tree["system"]["peak_buffer_memory"] / 1e9, 2),
            "top_operators": sorted(operators, key=lambda o: -o["seconds"])[:20]}


def engine_sql(data: str, cutoff: str, memory_limit: str):
    """The engine's connection and its query of the ported families and the labels at `cutoff` (as
    `iter_frames` builds it), compiled to DuckDB SQL."""
    import pandas as pd

    from benchmarks.reference_query import engine_config
    from features.relational.engine import KEYS, PORTED_FAMILIES, feature_table, label_table
    from pipelines.relational import label_names, open_inputs

    cfg = engine_config(data, 2, memory_limit)
    inputs = open_inputs(cfg)
    cuts = [pd.Timestamp(cutoff)]
    features = feature_table(inputs.tables, cuts, cfg.features, cfg.labels, PORTED_FAMILIES)
    labels = label_table(inputs.tables, cuts, cfg.labels)
    names = label_names(cfg)
    joined = features.join(labels.select(*KEYS, *names), KEYS)
    query = joined.select(*[joined[c] for c in features.columns], *[joined[n] for n in names]).order_by(KEYS[::-1])
    inputs.con._run_pre_execute_hooks(query)  # registers the in-memory cutoffs table
    raw = inputs.con.con
    raw.execute("SET enable_progress_bar = false")
    return raw, inputs.con.compile(query)


def main() -> None:
    from benchmarks.reference_query import bank_files, reference_sql

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--cutoff", required=True)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--money", choices=("decimal", "double"), default="decimal")
    parser.add_argument("--engine", action="store_true", help="also profile the engine's query")
    args = parser.parse_args()
    sql = reference_sql(bank_files(args.data), args.cutoff, money=args.money)
    with_clause = sql[:sql.rindex("\nSELECT customer_id, ")]
    parts: dict[str, dict[str, float]] = {}
    for name in CTES:
        runs = [_timed(_connect(args.memory_limit), f"{with_clause}\nSELECT * FROM {name}") for _ in range(args.repeats)]
        parts[name] = {"wall_seconds": min(r["wall_seconds"] for r in runs),
                       "cpu_seconds": min(r["cpu_seconds"] for r in runs), "rows": runs[0]["rows"]}
        print(name, parts[name], flush=True)
    whole = [_timed(_connect(args.memory_limit), sql) for _ in range(args.repeats)]
    total = {"wall_seconds": min(r["wall_seconds"] for r in whole), "cpu_seconds": min(r["cpu_seconds"] for r in whole)}
    print("whole statement", total, flush=True)
    profiled = _profile(_connect(args.memory_limit), sql)
    for o in profiled["top_operators"]:
        print(o)
    engine = None
    if args.engine:
        raw, compiled = engine_sql(args.data, args.cutoff, args.memory_limit)
        engine = _profile(raw, compiled)
        print("engine", {k: v for k, v in engine.items() if k != "top_operators"})
        for o in engine["top_operators"]:
            print(o)
    result = {"data": args.data, "cutoff": args.cutoff, "money": args.money, "threads": 2,
              "repeats": args.repeats, "per_cte_alone_best": parts, "whole_statement_best": total,
              "rest_wall_seconds": round(total["wall_seconds"] - sum(p["wall_seconds"] for p in parts.values()), 2),
              "rest_cpu_seconds": round(total["cpu_seconds"] - sum(p["cpu_seconds"] for p in parts.values()), 2),
              "profiler": profiled, **({"engine_profiler": engine} if engine is not None else {}),
              "load_average_1m": round(os.getloadavg()[0], 2),
              "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

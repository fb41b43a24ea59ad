"""Both feature engines against the hand-written full-set DuckDB reference query (issue 15), one cutoff.

For a generated bank's folder and one cutoff, in rotation, `--repeats` times each, every run in a fresh
process under /usr/bin/time -v (DuckDB 2 threads, `--memory-limit`, spilling under /tmp):
  (a) reference: benchmarks/reference_query.py's one statement, from the Parquet files to an Arrow table;
  (b) engine: `pipelines.relational.build_frames(cfg, [cutoff], families=PORTED_FAMILIES)` (the five
      ported families and the labels, as pandas frames);
  (c) pandas: the pandas engine from the same files, as a stage runs it (`pandas_frame`: every table read
      and validated, then all its families, 83 feature columns, and the labels);
  (d) pandas_recent: the same, reading the transactions as `churn score` reads them for one cutoff: the rows
      from the features' look-back on, the earlier ones as each customer's latest date
      (`load_tables(transactions_from=...)`; the same table, tests/pipelines/test_recent_transactions.py).
  (e) pandas_training: the training rows of the config's 12 monthly cutoffs (`labels.cutoffs`, the latest a
      horizon before the end of the data: not --cutoff) as `churn features` builds them: every transaction
      read (the columns the features use), prepared once, then `iter_training_tables` cutoff by cutoff (the
      frames consumed, not written). Its ratio to pandas_recent is issue 15's "12 training cutoffs at most 4x
      one cutoff".
Reports wall and CPU seconds and peak memory (whole process) of each run, the ratio of each engine to the
reference (best of the repeats, and median), and a cell-for-cell cross-check of the reference and the
relational engine (one more process, untimed: `reference_query.cross_check`).

Usage:
  .venv/bin/python benchmarks/bench_reference.py --data /tmp/bench-data/1m --cutoff 2025-07-01 \
      --memory-limit 4GB --repeats 2
Writes benchmarks/results/reference.json (one entry per bank folder and cutoff).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "reference.json"
KINDS = ("reference", "engine", "pandas", "pandas_recent", "pandas_training")


def child(kind: str, data: str, cutoff: str, memory_limit: str, money: str) -> None:
    """One timed run; prints one JSON line (rows, columns, seconds of the build alone)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.reference_query import bank_files, engine_config, engine_frame, run_reference

    cfg = engine_config(data, 2, memory_limit)
    start = time.perf_counter()
    if kind == "reference":
        table = run_reference(bank_files(data), cutoff, cfg.features, cfg.labels, money, 2, memory_limit)
        rows, columns = table.num_rows, table.num_columns
    elif kind == "engine":
        frame = engine_frame(cfg, cutoff)
        rows, columns = frame.shape
    elif kind == "pandas_training":
        rows, columns = training_rows(cfg)
    else:
        frame = pandas_frame(cfg, cutoff, recent=kind == "pandas_recent")
        rows, columns = frame.shape
    print(json.dumps({"rows": rows, "columns": columns, "build_seconds": round(time.perf_counter() - start, 2)}))


def on_pandas(cfg, recent: bool):
    """The config on the pandas engine, and the columns a stage reads: as `churn score` reads them for one cutoff
    (`recent`), or as `churn features` does (every row; the contacts whole, for the uplift rows' actions)."""
    from features.build import feature_inputs

    cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"engine": "pandas"})})
    return cfg, {name: c for name, c in feature_inputs(cfg.features, cfg.labels).items() if recent or name != "contacts"}


def pandas_frame(cfg, cutoff: str, recent: bool = False):
    """The pandas engine's training rows at `cutoff` as a stage gets them from the files: every table read and
    validated (`load_tables`), prepared (the tables freed as they go), then every family (83 feature columns with
    the BTYD ones: 88 with keys and labels, where the reference and the relational engine return 80) and the labels.
    `recent`: the transactions read from the cutoff's look-back on, as `churn score` reads them."""
    import pandas as pd

    from features.build import prepare_taking, training_rows_at, transactions_read_from
    from pipelines.tables import load_tables, release_memory

    cfg, columns = on_pandas(cfg, recent)
    read_from = (lambda end: transactions_read_from(pd.Timestamp(cutoff), cfg.features, cfg.labels)) if recent else None
    owner = [load_tables(cfg, transactions_from=read_from, columns=columns)]
    prepared = prepare_taking(owner, cfg.features, cfg.labels.value_column)
    release_memory()  # as `churn score` does after preparing
    return training_rows_at(prepared, pd.Timestamp(cutoff), cfg.features, cfg.labels)


def training_rows(cfg) -> tuple[int, int]:
    """Rows and columns of the pandas engine's training table as `churn features` builds it (`pandas_training`)."""
    from features.build import iter_training_tables
    from pipelines.tables import load_tables

    cfg, columns = on_pandas(cfg, recent=False)
    rows, width = 0, 0
    for frame in iter_training_tables(load_tables(cfg, columns=columns), cfg.features, cfg.labels):
        rows, width = rows + len(frame), frame.shape[1]
    return rows, width


def check(data: str, cutoff: str, memory_limit: str, money: str) -> None:
    """The cross-check; prints its JSON."""
    sys.path.insert(0, str(ROOT))
    import warnings

    from benchmarks.reference_query import cross_check

    warnings.simplefilter("ignore")
    print(json.dumps(cross_check(data, cutoff, money, 2, memory_limit)))


def measure(kind: str, data: str, cutoff: str, memory_limit: str, money: str) -> dict[str, object]:
    command = ["/usr/bin/time", "-v", sys.executable, "-W", "ignore", __file__, "--child", kind, "--data", data,
               "--cutoff", cutoff, "--memory-limit", memory_limit, "--money", money]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    err = result.stderr
    if result.returncode != 0:
        return {"failed": f"exited {result.returncode} after {wall:.0f} s: {err[-2000:]}"}
    cpu = float(re.search(r"User time \(seconds\): ([\d.]+)", err).group(1)) + float(
        re.search(r"System time \(seconds\): ([\d.]+)", err).group(1))
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) / 1024**2
    return {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_gb": round(peak, 2),
            **json.loads(result.stdout.strip().splitlines()[-1]), "load_average_1m": round(os.getloadavg()[0], 2)}


def summary(runs: dict[str, list[dict[str, object]]]) -> dict[str, object]:
    """Best and median of each measure per kind, and the engine / reference ratios."""
    out: dict[str, object] = {}
    kinds = [k for k in KINDS if k in runs]
    for key in ("wall_seconds", "cpu_seconds", "peak_gb", "build_seconds"):
        values = {k: [r[key] for r in runs[k] if "failed" not in r] for k in kinds}
        if not all(values.values()):
            continue
        best = {k: min(v) for k, v in values.items()}
        median = {k: statistics.median(v) for k, v in values.items()}
        out[key] = {"best": best, "median": median}
        for kind in kinds[1:]:
            out[key][f"ratio_{kind}_over_reference_best"] = round(best[kind] / best["reference"], 2)
            out[key][f"ratio_{kind}_over_reference_median"] = round(median[kind] / median["reference"], 2)
        if "pandas_training" in kinds and "pandas_recent" in kinds:  # 12 training cutoffs against one
            for stat, values in (("best", best), ("median", median)):
                out[key][f"ratio_pandas_training_over_pandas_recent_{stat}"] = round(
                    values["pandas_training"] / values["pandas_recent"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--cutoff", required=True)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--money", choices=("decimal", "double"), default="decimal",
                        help="how the reference sums money (the engine: decimal)")
    parser.add_argument("--no-check", action="store_true", help="skip the cell-for-cell cross-check")
    parser.add_argument("--child", choices=KINDS)
    parser.add_argument("--check-child", action="store_true")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated run kinds, the reference first (default: all; a subset is stored "
                             "under its own key)")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.cutoff, args.memory_limit, args.money)
        return
    if args.check_child:
        check(args.data, args.cutoff, args.memory_limit, args.money)
        return
    kinds = tuple(k for k in KINDS if k in args.kinds.split(","))
    if not kinds or kinds[0] != "reference":
        parser.error(f"--kinds must name the reference and any of {', '.join(KINDS[1:])}")
    runs: dict[str, list[dict[str, object]]] = {k: [] for k in kinds}
    for repeat in range(args.repeats):
        order = kinds[repeat % len(kinds):] + kinds[:repeat % len(kinds)]  # rotated, each first in turn
        for kind in order:
            run = measure(kind, args.data, args.cutoff, args.memory_limit, args.money)
            print(kind, run, flush=True)
            runs[kind].append(run)
    entry: dict[str, object] = {"data": args.data, "cutoff": args.cutoff, "memory_limit": args.memory_limit,
                                "threads": 2, "money": args.money, "repeats": args.repeats, "runs": runs,
                                "summary": summary(runs),
                                "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if not args.no_check:
        result = subprocess.run([sys.executable, "-W", "ignore", __file__, "--check-child", "--data", args.data,
                                 "--cutoff", args.cutoff, "--memory-limit", args.memory_limit, "--money", args.money],
                                capture_output=True, text=True)
        entry["cross_check"] = (json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0
                                else {"failed": result.stderr[-2000:]})
        print("cross-check", entry["cross_check"], flush=True)
    print(json.dumps(entry["summary"], indent=1))
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    subset = "" if kinds == KINDS else f" [{', '.join(kinds)}]"
    stored["runs"][f"{args.data} @ {args.cutoff} ({args.money}){subset}"] = entry
    stored["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    RESULTS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

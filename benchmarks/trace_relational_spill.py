"""Where the relational engine's memory and DuckDB's spill go: each part of `build_frames`'s work run alone.

On one bank and one cutoff, in this process, one part after the other, each on a fresh DuckDB
connection (2 threads, `--memory-limit`, spilling into a directory of its own that is polled every
half second and removed after the part): the query is streamed out as `iter_frames` streams it and
its rows dropped. Parts:
  features:<family>[,<family>...]  the feature query of those ported families (no labels, not sorted)
  features                         the five ported families
  labels                           the label query
  btyd                             the BTYD purchase history of the cutoff (its query only, no fit)
  full                             the streamed query of `iter_frames` (every ported family and the
                                   labels, sorted)
Prints one JSON line per part: seconds, CPU seconds, peak RSS of this process, peak spill.
`--profile PREFIX` also writes DuckDB's JSON profile of each part (PREFIX_<part>.json).

Usage:
  .venv/bin/python benchmarks/trace_relational_spill.py --data /tmp/bench-data/1m --cutoff 2025-07-01 \
      --memory-limit 1GB btyd features:rfm,lifecycle features:complaints labels full
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("customers", "transactions", "complaints", "surveys", "contacts")


def resident_gb() -> float:
    """This process's resident memory now (GB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def trace(data: Path, cutoff: str, memory_limit: str, part: str, profile: str | None) -> dict[str, object]:
    """Run one part on a fresh connection; its time, peak memory and peak spill."""
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from benchmarks.bench_relational_scale import directory_bytes
    from features.relational.btyd import purchase_summary
    from features.relational.engine import KEYS, PORTED_FAMILIES, feature_table, label_table
    from pipelines.config import parse_config
    from pipelines.relational import label_names, open_inputs, record_batches

    spill = Path(tempfile.mkdtemp(prefix="churn-trace-spill-"))
    cfg = parse_config({"data": {"tables": {name: {"path": str(data / f"{name}.parquet")} for name in TABLES}},
                        "features": {"engine": "duckdb", "duckdb": {"threads": 2, "memory_limit": memory_limit,
                                                                     "temp_directory": str(spill)}}})
    inputs = open_inputs(cfg)
    con, tables, cuts = inputs.con, inputs.tables, [pd.Timestamp(cutoff)]
    if part.startswith("features"):
        families = part.split(":")[1].split(",") if ":" in part else list(PORTED_FAMILIES)
        expr = feature_table(tables, cuts, cfg.features, cfg.labels, families, ordered=False)
    elif part == "labels":
        expr = label_table(tables, cuts, cfg.labels, ordered=False)
    elif part == "btyd":
        expr = purchase_summary(tables, cuts, cfg.labels.value_column, moments=cuts,
                                history_days=cfg.features.btyd_history_days)
    elif part == "full":  # as iter_frames builds it
        features = feature_table(tables, cuts, cfg.features, cfg.labels, list(PORTED_FAMILIES), ordered=False)
        names = label_names(cfg)
        labels = label_table(tables, cuts, cfg.labels, ordered=False).select(*KEYS, *names)
        joined = features.join(labels, KEYS)
        expr = joined.select(*[joined[c] for c in features.columns], *[joined[n] for n in names]).order_by(KEYS[::-1])
    else:
        raise SystemExit(f"unknown part {part!r}")
    if profile:
        con.con.execute("PRAGMA enable_profiling='json'")
        con.con.execute(f"PRAGMA profiling_output='{profile}_{part.replace(':', '_').replace(',', '_')}.json'")
    peak = {"spill": 0, "rss": 0.0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak["spill"] = max(peak["spill"], directory_bytes(spill))
            peak["rss"] = max(peak["rss"], resident_gb())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start, cpu = time.perf_counter(), time.process_time()
    rows, status = 0, "ok"
    try:
        for batch in record_batches(con, expr, 250_000):
            rows += batch.num_rows
    except Exception as error:  # noqa: BLE001 - an out-of-memory or full disk is a result too
        status = f"failed: {str(error).splitlines()[0][:200]}"
    done.set()
    watcher.join()
    con.disconnect()
    shutil.rmtree(spill, ignore_errors=True)
    return {"part": part, "status": status, "rows": rows, "seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1), "peak_rss_gb": round(peak["rss"], 2),
            "peak_spill_gb": round(peak["spill"] / 1024**3, 2), "memory_limit": memory_limit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cutoff", required=True)
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--profile", help="write DuckDB's JSON profile of each part to PROFILE_<part>.json")
    args = parser.parse_args()
    for part in args.parts:
        print(json.dumps(trace(args.data, args.cutoff, args.memory_limit, part, args.profile)), flush=True)


if __name__ == "__main__":
    main()

"""How the relational engine's scoring features grow with the bank: one cutoff, every family, from the files.

For each --data bank (e.g. the 1M and the 10M generated banks), in a fresh process under
/usr/bin/time -v: `pipelines.relational.build_frames` for one cutoff (the scoring date), every feature
family and the labels, on DuckDB with 2 threads and `--memory-limit` (DuckDB spills beyond it, into
a temporary directory of its own, removed after the run). Reports wall and CPU seconds, peak memory
(the whole process), the peak size of DuckDB's spill files (that directory, polled every second) and
rows, and the growth from the smallest bank to the largest per customer (1.0 = linear).
The pandas engine cannot take part at 10M (loading the tables alone needs more than this machine's
24 GB), nor `churn validate`, which loads them too: this measures the engine, not the stage.

`--statements`: `auto` (the engine's default: customers in buckets of at most
`features.duckdb.rows_per_statement` rows, by default ROWS_PER_GB per GB of the memory limit),
`one` (every customer in one statement, as before the buckets) or a number of rows per statement;
several are run alternated, `--repeats` times, each in a fresh process.

Usage:
  .venv/bin/python benchmarks/bench_relational_scale.py --data /tmp/bench-data/1m /tmp/bench-data/10m \
      --cutoff 2025-07-01 --memory-limit 4GB --statements auto one
Writes benchmarks/results/relational_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "relational_scale.json"
TABLES = ("customers", "transactions", "complaints", "surveys", "contacts")


ONE_STATEMENT = 10**15
"""rows_per_statement for `--statements one`: more than any bank's rows."""


def rows_per_statement(mode: str) -> int | None:
    return None if mode == "auto" else ONE_STATEMENT if mode == "one" else int(mode)


def child(data: Path, cutoff: str, memory_limit: str, temp_directory: str, statements: str = "auto") -> None:
    """Build the frames and print one JSON line (rows, columns, seconds of the build alone)."""
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from pipelines.config import parse_config
    from pipelines.relational import build_frames

    cfg = parse_config({"data": {"tables": {name: {"path": str(data / f"{name}.parquet")} for name in TABLES}},
                        "features": {"engine": "duckdb", "duckdb": {
                            "threads": 2, "memory_limit": memory_limit, "temp_directory": temp_directory,
                            "rows_per_statement": rows_per_statement(statements)}}})
    start = time.perf_counter()
    features, labels = build_frames(cfg, [pd.Timestamp(cutoff)])
    print(json.dumps({"rows": len(features), "columns": features.shape[1], "label_rows": len(labels),
                      "build_seconds": round(time.perf_counter() - start, 1),
                      "churn_rate": float(labels["churned"].mean())}))


def directory_bytes(folder: Path) -> int:
    """Bytes on disk of the files under `folder` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # DuckDB removed it meanwhile
                pass
    return total


def measure(data: Path, cutoff: str, memory_limit: str, statements: str = "auto") -> dict[str, object]:
    spill = Path(tempfile.mkdtemp(prefix="churn-bench-spill-"))
    command = ["/usr/bin/time", "-v", sys.executable, __file__, "--child", str(data), "--cutoff", cutoff,
               "--memory-limit", memory_limit, "--temp-directory", str(spill), "--statements", statements]
    start = time.perf_counter()
    peak_spill = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        outputs: list[str] = []
        reader = threading.Thread(target=lambda: outputs.extend(process.communicate()))
        reader.start()
        while reader.is_alive():
            peak_spill = max(peak_spill, directory_bytes(spill))
            reader.join(1.0)
    wall = time.perf_counter() - start
    shutil.rmtree(spill, ignore_errors=True)
    result = subprocess.CompletedProcess(command, process.returncode, *outputs)
    err = result.stderr
    if result.returncode != 0:  # recorded, not raised: a bank too big to finish is a result too
        last = [line for line in err.splitlines() if "Error" in line or "error" in line][-1:]
        return {"failed": f"exited {result.returncode} after {wall:.0f} s: {' '.join(last)}",
                "peak_spill_gb": round(peak_spill / 1024**3, 2),
                "load_average_at_end": list(os.getloadavg())}
    cpu = float(re.search(r"User time \(seconds\): ([\d.]+)", err).group(1)) + float(
        re.search(r"System time \(seconds\): ([\d.]+)", err).group(1))
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) / 1024**2
    customers = __import__("pyarrow.parquet", fromlist=["read_metadata"]).read_metadata(
        data / "customers.parquet").num_rows
    return {"customers": customers, "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "peak_gb": round(peak, 2), "peak_spill_gb": round(peak_spill / 1024**3, 2), **json.loads(result.stdout.strip().splitlines()[-1]),
            "load_average_at_end": list(os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", type=Path, required=False)
    parser.add_argument("--cutoff", required=True)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--child", type=Path)
    parser.add_argument("--temp-directory", help="(child) where DuckDB spills")
    parser.add_argument("--statements", nargs="+", default=["auto"],
                        help="auto | one | rows per statement; several are alternated")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.cutoff, args.memory_limit, args.temp_directory, args.statements[0])
        return
    stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    for data in args.data:  # each bank's result kept as soon as it is known
        for repeat in range(args.repeats):
            for statements in args.statements:
                run = measure(data, args.cutoff, args.memory_limit, statements)
                print(data, statements, run, flush=True)
                stored["runs"][f"{data} {args.memory_limit} statements={statements} #{repeat + 1}"] = {
                    **run, "cutoff": args.cutoff, "memory_limit": args.memory_limit, "statements": statements,
                    "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
                RESULTS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    latest: dict[int, dict] = {}  # per bank size, the latest run of the engine's default at this memory limit
    for run in sorted(stored["runs"].values(), key=lambda r: r.get("measured", "")):
        if "failed" not in run and run.get("statements") == "auto" and run.get("memory_limit") == args.memory_limit:
            latest[run["customers"]] = run
    done = [latest[size] for size in sorted(latest)]
    if len(done) > 1:
        small, large = done[0], done[-1]
        size = large["customers"] / small["customers"]
        stored["growth_per_customer"] = {"wall": round(large["wall_seconds"] / small["wall_seconds"] / size, 2),
                                         "cpu": round(large["cpu_seconds"] / small["cpu_seconds"] / size, 2),
                                         "peak_memory_ratio": round(large["peak_gb"] / small["peak_gb"], 2)}
        print(json.dumps(stored["growth_per_customer"]))
    stored["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    RESULTS.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

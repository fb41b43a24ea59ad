"""Speed and memory of `churn generate` on large banks, against the cost of just writing their files.

For each size N (`--customers`, one output folder each in `--out`), each in a fresh subprocess
(so each peak RSS is its own):
  (a) generate: `pipelines.generate.run` for N customers and M months (Parquet);
  (b) reference: read every table it wrote and write it again with pyarrow (zstd): the
      I/O floor of producing the same bytes, on the same machine in the same run.
Reports wall and CPU times, peak memory (ru_maxrss), rows of every table, bytes on disk, the ratio
generate / reference, and, with two or more sizes, how the cost grows from the smallest to the
largest: wall and CPU time ratios divided by the size ratio (1.0: linear) and the peak-memory ratio.

Usage:
  .venv/bin/python benchmarks/bench_generate.py --customers 1000000 --months 30 --out /tmp/bench-data/1m
  .venv/bin/python benchmarks/bench_generate.py --customers 1000000 10000000 --months 30 \
      --out /tmp/bench-data/1m /tmp/bench-data/10m
Writes benchmarks/results/generate.json. A generated folder can feed bench_features.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (less swayed than wall time by other jobs on the machine)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_generate(customers: int, months: int, out: str, seed: int) -> dict[str, object]:
    import pyarrow.parquet as pq

    from pipelines.generate import run

    start = time.perf_counter()
    run(customers, seed, out, "2023-01-01", months, "parquet")
    seconds = time.perf_counter() - start
    files = sorted(Path(out).rglob("*.parquet"))
    rows = {str(p.relative_to(out).with_suffix("")): pq.ParquetFile(p).metadata.num_rows for p in files}
    return {"seconds": seconds, "cpu_seconds": cpu_seconds(), "peak_gb": peak_rss_gb(), "rows": rows,
            "disk_gb": sum(p.stat().st_size for p in files) / 1024**3}


def child_rewrite(out: str) -> dict[str, object]:
    import pyarrow.parquet as pq

    start = time.perf_counter()
    target = Path(out).with_name(Path(out).name + "-rewrite")
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(out).rglob("*.parquet")):
        reader = pq.ParquetFile(path)
        writer = None
        for batch in reader.iter_batches(batch_size=1_000_000):
            if writer is None:
                (target / path.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(target / path.relative_to(out), batch.schema, compression="zstd")
            writer.write_batch(batch)
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start
    shutil.rmtree(target)  # the copy was only written to be timed
    return {"seconds": seconds, "cpu_seconds": cpu_seconds(), "peak_gb": peak_rss_gb()}


def in_child(function: str, *args: object) -> dict[str, object]:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.bench_generate import {function}; "
            f"print(json.dumps({function}(*{args!r})))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(customers: int, months: int, out: str, seed: int) -> dict[str, object]:
    """Generate one bank and rewrite its files, each in a fresh subprocess."""
    load_before = os.getloadavg()[0]
    generated = in_child("child_generate", customers, months, out, seed)
    reference = in_child("child_rewrite", out)
    run = {
        "customers": customers, "out": out, "rows": generated["rows"], "disk_gb": round(generated["disk_gb"], 2),
        "generate_seconds": round(generated["seconds"], 1), "generate_cpu_seconds": round(generated["cpu_seconds"], 1),
        "generate_peak_gb": round(generated["peak_gb"], 2),
        "rewrite_seconds": round(reference["seconds"], 1), "rewrite_cpu_seconds": round(reference["cpu_seconds"], 1),
        "rewrite_peak_gb": round(reference["peak_gb"], 2),
        "ratio_generate_to_rewrite": round(generated["seconds"] / reference["seconds"], 2),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(run, indent=2), flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, nargs="+", default=[1_000_000], help="one or more bank sizes")
    parser.add_argument("--months", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", nargs="+", default=["/tmp/bench-data/1m"], help="one output folder per size")
    args = parser.parse_args()
    if len(args.out) != len(args.customers):
        parser.error(f"--out needs one folder per size: {len(args.customers)} sizes, {len(args.out)} folders")
    runs = [measure(n, args.months, out, args.seed) for n, out in zip(args.customers, args.out)]
    result: dict[str, object] = {"months": args.months, "seed": args.seed, "runs": runs}
    if len(runs) > 1:
        small, large = min(runs, key=lambda r: r["customers"]), max(runs, key=lambda r: r["customers"])
        size_ratio = large["customers"] / small["customers"]
        time_ratio = large["generate_seconds"] / small["generate_seconds"]
        cpu_ratio = large["generate_cpu_seconds"] / small["generate_cpu_seconds"]
        result["growth"] = {
            "from_customers": small["customers"], "to_customers": large["customers"],
            "time_ratio": round(time_ratio, 2), "time_ratio_per_size_ratio": round(time_ratio / size_ratio, 2),
            "cpu_time_ratio": round(cpu_ratio, 2), "cpu_time_ratio_per_size_ratio": round(cpu_ratio / size_ratio, 2),
            "memory_ratio": round(large["generate_peak_gb"] / small["generate_peak_gb"], 2),
        }
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results" / "generate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

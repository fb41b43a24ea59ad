"""Speed and memory of `churn generate` on a large bank, against the cost of just writing its files.

Measures, each in a fresh subprocess (so each peak RSS is its own):
  (a) generate: `pipelines.generate.run` for N customers and M months (Parquet);
  (b) reference: read every table it wrote and write it again with pyarrow (zstd): the
      I/O floor of producing the same bytes, on the same machine in the same run.
Reports wall times, peak memory, rows, and the ratio generate / reference.

Usage:
  .venv/bin/python benchmarks/bench_generate.py --customers 1000000 --months 24 --out /tmp/bench-data/1m
Writes benchmarks/results/generate.json. The generated folder can feed bench_features.py.
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


def child_generate(customers: int, months: int, out: str, seed: int) -> dict[str, object]:
    from pipelines.generate import run

    start = time.perf_counter()
    counts = run(customers, seed, out, "2023-01-01", months, "parquet")
    return {"seconds": time.perf_counter() - start, "peak_gb": peak_rss_gb(), "rows": counts}


def child_rewrite(out: str) -> dict[str, object]:
    import pyarrow.parquet as pq

    start = time.perf_counter()
    target = Path(out).with_name(Path(out).name + "-rewrite")
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(out).glob("*.parquet")):
        reader = pq.ParquetFile(path)
        writer = None
        for batch in reader.iter_batches(batch_size=1_000_000):
            if writer is None:
                writer = pq.ParquetWriter(target / path.name, batch.schema, compression="zstd")
            writer.write_batch(batch)
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start
    shutil.rmtree(target)  # the copy was only written to be timed
    return {"seconds": seconds, "peak_gb": peak_rss_gb()}


def in_child(function: str, *args: object) -> dict[str, object]:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.bench_generate import {function}; "
            f"print(json.dumps({function}(*{args!r})))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="/tmp/bench-data/1m")
    args = parser.parse_args()
    generated = in_child("child_generate", args.customers, args.months, args.out, args.seed)
    reference = in_child("child_rewrite", args.out)
    result = {
        "customers": args.customers, "months": args.months, "rows": generated["rows"],
        "generate_seconds": round(generated["seconds"], 1), "generate_peak_gb": round(generated["peak_gb"], 2),
        "rewrite_seconds": round(reference["seconds"], 1), "rewrite_peak_gb": round(reference["peak_gb"], 2),
        "ratio_generate_to_rewrite": round(generated["seconds"] / reference["seconds"], 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results" / "generate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

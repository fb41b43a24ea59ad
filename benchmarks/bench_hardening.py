"""Hostile-user benchmark: every case of benchmarks/hardening_cases.py through the real `churn` command.

Builds two bases once: a small CSV bank (300 customers, 8 months) for the data and config cases,
and a fully run project (validate, features, train, score, rules on 1,200 customers whose ids and
complaint texts carry CSV-injection payloads) for the stage cases: stale upstream outputs,
leftovers, racing runs, kills at steps of the commits, full disks, read-only folders and MLflow
stores. Each case runs in a fresh copy of its base; the outcome is classified (clear error,
handled, traceback, silent acceptance, data lost, unclear; see hardening_cases.py).

Usage: .venv/bin/python benchmarks/bench_hardening.py [--workers 3] [--only SUBSTRING ...] [--documented]
       [--update EARLIER.json [--merge SUBSET.json]]  (rerun some cases into an earlier full run)
Prints the figures and every case that missed the goal; writes benchmarks/results/hardening.json.
Goals: tracebacks 0, silent acceptances 0, data lost 0 (and unclear 0). Exit code 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.hardening_cases import OUTCOMES, catalogue, make_bank, make_project, run_case  # noqa: E402
from pipelines.io import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "hardening.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="cases run side by side")
    parser.add_argument("--only", action="append", default=None,
                        help="run only cases whose name contains this text (repeat for more)")
    parser.add_argument("--documented", action="store_true", help="run the documented examples (docs table) too")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--update", type=Path, default=None, metavar="JSON",
                        help="an earlier results file: the cases run now replace theirs there, figures recomputed")
    parser.add_argument("--merge", type=Path, default=None, metavar="JSON",
                        help="with --update: take the cases of this earlier subset run instead of running any")
    args = parser.parse_args()
    every = args.only is None and not args.documented
    cases = [c for c in catalogue() if every or any(text in c.name for text in args.only or ())
             or (args.documented and c.doc)]
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    if args.merge is not None:  # no run: the cases of an earlier subset run, into --update's full run
        subset = json.loads(args.merge.read_text(encoding="utf-8"))
        results, build_seconds = subset["cases"], subset["seconds"]["bases"]
        started -= subset["seconds"]["total"]
        cases = [c for c in catalogue() if c.name in {r["name"] for r in results}]
    else:
        results, build_seconds = run_all(cases, args.workers)
    return summarise(results, cases, args, started, build_seconds, load_before)


def run_all(cases: list, workers: int) -> tuple[list[dict[str, object]], float]:
    """Every case in a fresh copy of its base, `workers` side by side; the results and the bases' build time."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-hardening-") as tmp:
        work = Path(tmp)
        print(f"{len(cases)} cases; building the bases in {work}")
        bases = {"bank": make_bank(work / "bank-base")}
        if any(c.base == "project" for c in cases):
            bases["project"] = make_project(work / "project-base")
        build_seconds = time.perf_counter() - started

        def one(item: tuple[int, object]) -> dict[str, object]:
            index, case = item
            result = run_case(case, work / f"case-{index:03d}", bases)  # type: ignore[arg-type]
            mark = "ok " if result["outcome"] in ("clear error", "handled") else "BAD"
            print(f"{mark} {result['outcome']:<17} exit {result['exit']:>4} {result['seconds']:6.1f}s  "
                  f"[{result['category']}] {result['name']}", flush=True)
            return result

        # the cases on the project first (slower), so the pool ends together
        order = sorted(enumerate(cases), key=lambda item: item[1].base != "project")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, order))
    return results, build_seconds


def summarise(results: list[dict[str, object]], cases: list, args: argparse.Namespace, started: float,
              build_seconds: float, load_before: float) -> int:
    """Figures, the JSON file and the printed summary; exit code 1 when a goal is missed."""
    for result in results:
        result.pop("output", None)  # the whole output stays out of the JSON; its tail is in "message"
    earlier: dict[str, object] = {}
    if args.update is not None:  # a subset rerun: the other cases keep their outcome of the earlier full run
        earlier = json.loads(args.update.read_text(encoding="utf-8"))
        rerun = {str(r["name"]) for r in results}
        results += [r for r in earlier["cases"] if r["name"] not in rerun]  # type: ignore[index,union-attr]
    results.sort(key=lambda r: str(r["name"]))
    counts = Counter(str(r["outcome"]) for r in results)
    figures = {"cases": len(results), **{outcome: counts.get(outcome, 0) for outcome in OUTCOMES},
               "categories": len({r["category"] for r in results})}
    misses = [r for r in results if r["outcome"] not in ("clear error", "handled")]
    payload = {
        "figures": figures,
        "goals": {"traceback": 0, "silent acceptance": 0, "data lost": 0, "unclear": 0},
        "per_category": {cat: dict(Counter(str(r["outcome"]) for r in results if r["category"] == cat))
                         for cat in sorted({str(r["category"]) for r in results})},
        "seconds": {"total": round(time.perf_counter() - started, 1), "bases": round(build_seconds, 1),
                    **({"earlier_full_run": earlier["seconds"]["total"]} if earlier else {})},  # type: ignore[index]
        "rerun": sorted(c.name for c in cases) if earlier else [],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_average_at_start": round(load_before, 1)},
        "cases": results,
    }
    write_json(payload, args.out)
    print()
    print(f"cases tried {figures['cases']} in {figures['categories']} categories "
          f"({payload['seconds']['total']:.0f} s): clear errors {figures['clear error']}, handled {figures['handled']}, "
          f"tracebacks {figures['traceback']}, silent acceptances {figures['silent acceptance']}, "
          f"data lost {figures['data lost']}, unclear {figures['unclear']}")
    for miss in misses:
        print(f"  MISSED [{miss['outcome']}] {miss['name']}: {miss['why']}")
    print(f"written {args.out}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())

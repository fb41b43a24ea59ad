"""The configs the benchmarks run on: a generated bank's five Parquet tables, outputs in a folder."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from pipelines.config import Config, parse_config

ROOT = Path(__file__).resolve().parent.parent

TABLE_NAMES = ("customers", "transactions", "complaints", "surveys", "contacts")


def bank_config(data: Path, folder: Path | None = None, experiment: str = "bench") -> Config:
    """The tables `churn generate` wrote to `data`; with `folder`, outputs and a sqlite MLflow store there."""
    raw: dict = {"data": {"tables": {name: {"path": str(data / f"{name}.parquet")} for name in TABLE_NAMES}}}
    if folder is not None:
        raw["paths"] = {"features_dir": str(folder / "features"), "outputs_dir": str(folder / "outputs"),
                        "reports_dir": str(folder / "reports")}
        raw["tracking"] = {"tracking_uri": f"sqlite:///{folder}/mlflow.db", "artifact_location": str(folder / "art"),
                           "experiment": experiment}
    return parse_config(raw)


def write_default_config(data: Path, folder: Path, experiment: str, truth_dir: Path | None = None,
                         edit: Callable[[dict], None] | None = None, source: Path | None = None) -> Path:
    """`source` (configs/default.yaml) with its input files in `data` (same file names), its outputs and a
    sqlite MLflow store in `folder`, the generator's truth at `truth_dir`, and `edit` applied to it;
    written to `folder`/config.yaml for the `churn` CLI."""
    raw = yaml.safe_load((source or ROOT / "configs" / "default.yaml").read_text(encoding="utf-8"))
    for table in raw["data"]["tables"].values():
        table["path"] = str((data / Path(table["path"]).name).resolve())
    raw["paths"] = {"features_dir": str(folder / "features"), "outputs_dir": str(folder / "outputs"),
                    "reports_dir": str(folder / "reports")}
    raw["tracking"] = {"tracking_uri": f"sqlite:///{folder}/mlflow.db", "artifact_location": str(folder / "art"),
                       "experiment": experiment}
    raw.setdefault("evaluation", {})["truth_dir"] = str(truth_dir) if truth_dir is not None else None
    if edit is not None:
        edit(raw)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def measured_when() -> str:
    """When, on which commit (and whether the work tree had changes) and under what load."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, main at {git('rev-parse', '--short', 'HEAD')}"
            f"{dirty}, load {os.getloadavg()[0]:.1f}")


def timed_command(args: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    """Run a command under /usr/bin/time -v: wall and CPU seconds, peak resident memory (GB = 2^30 bytes, its
    children included) and its console (stdout then stderr, whitespace folded); SystemExit when it fails."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")

    def field(name: str) -> float:
        return float(re.search(rf"{re.escape(name)}: ([\d.]+)", result.stderr).group(1))  # type: ignore[union-attr]

    return {"seconds": round(seconds, 1),
            "cpu_seconds": round(field("User time (seconds)") + field("System time (seconds)"), 1),
            "peak_gb": round(field("Maximum resident set size (kbytes)") / 1024**2, 2),
            "console": " ".join((result.stdout + result.stderr).split())}

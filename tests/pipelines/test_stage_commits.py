"""Issue 13, items 3 and 6 for every writing stage: `churn validate`, `churn train` and `churn report`
change their files together or not at all, like features, score and rules; two `churn score` runs
racing on one output folder never both write.

Real parts: the installed `churn` command in subprocesses, real signals, the small project that
`dvc repro` built for the session (tests/conftest.py), copied so each run has its own folders.

How the commits are checked. The fault hook (`CHURN_FAULT`, pipelines/io.py) stops the process
at the named steps of a commit:
- validate (seconds a run): one run is SIGKILLed at each step (a real kill each time);
- train and report (a minute a run): one run is SIGSTOPped at each step, in turn; while it is
  stopped the test reads every public file, which is exactly what a SIGKILL at that instant
  would leave (a killed process runs no more code), then lets it go on (SIGCONT). At one step
  before the switch the whole project is copied: the state a kill there leaves, on which the
  start of the next run (lock and leftovers, `StageOutputs.__enter__`) is then checked.
Every state seen must be one complete generation, the old one before the switch and the new
one from it on, whose record (generation.json: each file's size and sha256) matches the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.io import GENERATIONS_DIR, StageOutputs, file_sha256, read_generation
from tests.conftest import Project

CHURN = Path(sys.executable).parent / "churn"
EXIT_REFUSED = 4
SWITCHED = "commit.swapped"
"""The first step at which the new generation is the current one."""


# ---------------------------------------------------------------- helpers


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "CHURN_")) and k not in ("DVC_NO_ANALYTICS",)}
    base.update({"COLUMNS": "250", **extra})
    return base


def start(args: list[str], cwd: Path, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen([str(CHURN), *args], cwd=cwd, env=env(**extra), stdout=handle,
                                stderr=subprocess.STDOUT)


def state(pid: int) -> str:
    """The process state letter from /proc (T: stopped), or "" when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def copy_project(source: Path, dest: Path) -> Path:
    """The project's inputs, outputs (links and generations as they are) and MLflow store."""
    dest.mkdir(parents=True)
    for name in ("configs", "data", "reports", "mlartifacts"):
        if (source / name).exists():
            shutil.copytree(source / name, dest / name, symlinks=True)
    shutil.copy2(source / "mlflow.db", dest / "mlflow.db")
    return dest


def public_paths(root: Path, stage: str) -> dict[str, Path]:
    from pipelines.config import load_config
    from pipelines.outputs import stage_paths

    cfg = load_config(root / "configs" / "default.yaml")
    return {name: root / path for name, path in stage_paths(cfg, stage).items()}


def shown(paths: dict[str, Path]) -> dict[str, str | None]:
    """What a reader finds at each public path now: the content's sha256, or None when nothing is there."""
    found: dict[str, str | None] = {}
    for name, path in paths.items():
        try:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            found[name] = None
    return found


def all_ours(paths: dict[str, Path], stage: str) -> bool:
    outputs = StageOutputs(stage, paths)
    return all(outputs._is_ours(name) or not (path.exists() or path.is_symlink()) for name, path in paths.items())


def finish(process: subprocess.Popen[bytes], log: Path) -> tuple[int, str]:
    process.wait(timeout=900)
    return process.returncode, log.read_text(encoding="utf-8", errors="replace")


# ---------------------------------------------------------------- train and report, stopped at every step


def watch_every_step(runs: dict[str, dict], timeout: float = 900) -> None:
    """Drive runs started with CHURN_FAULT=stop@*: at each stop record what the public paths show, copy
    the project at `snapshot_at`, then SIGCONT; returns when every run has ended."""
    deadline = time.monotonic() + timeout
    while any(run["process"].poll() is None for run in runs.values()):
        assert time.monotonic() < deadline, {name: run["seen"] for name, run in runs.items()}
        for run in runs.values():
            process = run["process"]
            if process.poll() is not None or state(process.pid) != "T":
                continue
            point = run["trace"].read_text().split()[-1]
            paths = run["paths"]
            run["seen"].append((point, shown(paths), all_ours(paths, run["stage"])
                                and _generation_checks(run["stage"], paths)))
            if point == run["snapshot_at"] and run.get("snapshot") is None:  # what a kill here leaves
                run["snapshot"] = run["root"].parent / f"{run['root'].name}-killed"
                shutil.copytree(run["root"] / "reports", run["snapshot"] / "reports", symlinks=True)
            os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.05)


def _generation_checks(stage: str, paths: dict[str, Path]) -> bool:
    read_generation(stage, paths)  # raises unless every path leads to the current generation, checksums equal
    return True


@pytest.fixture(scope="module")
def stopped_runs(dvc_project: Project, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """`churn train` and `churn report` on their own copies of the project, stopped at every commit step."""
    first = dvc_project.first_repro
    assert first.returncode == 0, f"dvc repro failed\n{first.stdout[-4000:]}\n{first.stderr[-6000:]}"
    base = tmp_path_factory.mktemp("stopped")
    runs: dict[str, dict] = {}
    for stage in ("train", "report"):
        root = copy_project(dvc_project.root, base / stage)
        paths = public_paths(root, stage)
        trace = base / f"{stage}.trace"
        log = base / f"{stage}.log"
        runs[stage] = {"stage": stage, "root": root, "paths": paths, "trace": trace, "log": log, "seen": [],
                       "old": shown(paths), "snapshot_at": "commit.swap",
                       "current_before": StageOutputs(stage, paths).current(),
                       "process": start([stage, "--config", "configs/default.yaml"], root, log,
                                        CHURN_FAULT="stop@*", CHURN_FAULT_TRACE=str(trace))}
    try:
        watch_every_step(runs)
    finally:
        for run in runs.values():
            if run["process"].poll() is None:
                run["process"].kill()
    for stage, run in runs.items():
        run["code"], run["text"] = finish(run["process"], run["log"])
        run["new"] = shown(run["paths"])
        run["current_after"] = StageOutputs(stage, run["paths"]).current()
    return runs


@pytest.mark.parametrize("stage", ["train", "report"])
def test_every_step_of_the_commit_shows_one_complete_generation(stopped_runs: dict[str, dict], stage: str) -> None:
    run = stopped_runs[stage]
    assert run["code"] == 0 and "Traceback" not in run["text"], run["text"][-3000:]
    old, new = run["old"], run["new"]
    assert all(new.values()) or stage == "train", new
    assert run["current_after"] != run["current_before"], "no new generation was switched in"
    points = [point for point, _, _ in run["seen"]]
    assert points[0] == "commit.files" and SWITCHED in points and points[-1] == "commit.cleaned", points
    assert points == run["trace"].read_text().split()  # stopped at every step the commit reached
    switched = points.index(SWITCHED)
    for index, (point, seen, checked) in enumerate(run["seen"]):
        expected = new if index >= switched else old
        assert seen == expected, (point, {k for k in seen if seen[k] != expected[k]})
        if index >= switched:
            assert checked, point  # every public path leads to the new generation, sha256 as recorded
    read_generation(stage, run["paths"])
    record = json.loads((run["paths"][next(iter(run["paths"]))].resolve().parent / "generation.json").read_text())
    assert {name: entry["sha256"] for name, entry in record["files"].items()} == \
        {name: digest for name, digest in new.items() if digest}
    print(f"{stage}: stopped at {len(points)} steps: {', '.join(points)}")


@pytest.mark.parametrize("stage", ["train", "report"])
def test_a_kill_before_the_switch_keeps_the_old_files_and_the_next_run_cleans_up(stopped_runs: dict[str, dict],
                                                                                stage: str) -> None:
    """The project as a kill at `commit.swap` leaves it (every new file and its record written, not switched)."""
    run = stopped_runs[stage]
    killed = run["snapshot"]
    paths = {name: killed / path.relative_to(run["root"]) for name, path in run["paths"].items()}
    assert shown(paths) == run["old"]
    store = next(iter(paths.values())).parent
    while not (store / GENERATIONS_DIR / stage).is_dir():
        store = store.parent
    generations = sorted(p.name for p in (store / GENERATIONS_DIR / stage).iterdir())
    assert len(generations) >= 3, generations  # current, the old generation, the dead run's new one
    messages: list[str] = []
    with StageOutputs(stage, paths, messages.append):  # what the next run does first
        pass
    assert any("leftover(s) of killed runs" in m for m in messages), messages
    assert shown(paths) == run["old"]
    assert sorted(p.name for p in (store / GENERATIONS_DIR / stage).iterdir()) == \
        sorted(["current", os.readlink(store / GENERATIONS_DIR / stage / "current")])


# ---------------------------------------------------------------- validate, killed at every step


def validate_project(dvc_project: Project, root: Path) -> Path:
    """A config whose validation fails (a duplicated customer id), writing into `root`/reports."""
    raw = dvc_project.root / "data" / "raw" / "demo"
    config = yaml.safe_load((dvc_project.root / "configs" / "default.yaml").read_text())
    customers = pd.read_parquet(raw / "customers.parquet")
    bad = root / "customers_duplicated.parquet"
    root.mkdir(parents=True, exist_ok=True)
    pd.concat([customers, customers.head(1)], ignore_index=True).to_parquet(bad, index=False)
    config["data"]["tables"] = {name: {**entry, "path": str(dvc_project.root / entry["path"])}
                                for name, entry in config["data"]["tables"].items()}
    config["data"]["tables"]["customers"]["path"] = str(bad)
    config["paths"] = {key: str(root / Path(value).name) for key, value in config["paths"].items()}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_validate_killed_at_every_step_keeps_one_complete_report(dvc_project: Project, tmp_path: Path) -> None:
    """SIGKILL at each step of validate's commit: `"valid": true` (old) until the switch, `"valid": false` after."""
    first = dvc_project.first_repro
    assert first.returncode == 0, first.stderr[-3000:]
    old_reports = dvc_project.root / "reports"

    def prepare(root: Path) -> tuple[Path, dict[str, Path]]:
        config = validate_project(dvc_project, root)
        (root / "reports").mkdir(parents=True)
        shutil.copy2(old_reports / "validation.json", root / "reports" / "validation.json")  # follows a link
        return config, {"validation.json": root / "reports" / "validation.json"}

    config, paths = prepare(tmp_path / "traced")
    old = shown(paths)
    assert json.loads(paths["validation.json"].read_text())["valid"] is True
    trace = tmp_path / "trace.txt"
    code, text = finish(start(["validate", "--config", str(config)], tmp_path, tmp_path / "traced.log",
                              CHURN_FAULT_TRACE=str(trace)), tmp_path / "traced.log")
    assert code == 3 and "Traceback" not in text and "duplicate" in text.lower(), text
    new = shown(paths)
    assert json.loads(paths["validation.json"].read_text())["valid"] is False
    points = trace.read_text().split()
    assert points[0] == "commit.files" and points[-1] == "commit.cleaned", points
    runs = {}
    for index, point in enumerate(points):
        root = tmp_path / f"kill-{index}"
        config, _ = prepare(root)
        runs[point] = (root, start(["validate", "--config", str(config)], tmp_path, tmp_path / f"kill-{index}.log",
                                   CHURN_FAULT=f"kill@{point}"))
    switched = points.index(SWITCHED)
    again = {}
    for index, (point, (root, process)) in enumerate(runs.items()):
        process.wait(timeout=300)
        assert process.returncode == -signal.SIGKILL, (point, process.returncode)
        paths = {"validation.json": root / "reports" / "validation.json"}
        assert shown(paths) == (new if index >= switched else old), point
        if index >= switched:
            read_generation("validate", paths)
        if point not in ("commit.record", "commit.swap", SWITCHED):
            continue
        # the next run removes what the killed one left and commits its report
        again[point] = (root, start(["validate", "--config", str(root / "config.yaml")], tmp_path,
                                    tmp_path / f"again-{index}.log"), tmp_path / f"again-{index}.log")
    for point, (root, process, log) in again.items():
        code, text = finish(process, log)
        assert code == 3 and "Traceback" not in text, text
        paths = {"validation.json": root / "reports" / "validation.json"}
        assert shown(paths) == new
        read_generation("validate", paths)
        hidden = sorted(p.name for p in (root / "reports").iterdir() if p.name.startswith("."))
        assert hidden == [GENERATIONS_DIR], (point, hidden)
    print(f"validate: killed at {len(points)} steps: {', '.join(points)}")


# ---------------------------------------------------------------- two `churn score` runs racing


def test_two_score_runs_started_together_one_writes_the_other_exits_4(dvc_project: Project, tmp_path: Path) -> None:
    """Both start at once on the same folder; whichever takes the folder's lock first is held at the start
    of its commit (CHURN_FAULT=stop@commit.files, so the runs surely overlap); the other must refuse."""
    first = dvc_project.first_repro
    assert first.returncode == 0, first.stderr[-3000:]
    root = copy_project(dvc_project.root, tmp_path / "project")
    paths = public_paths(root, "score")
    before = shown(paths)
    raw = yaml.safe_load((root / "configs" / "default.yaml").read_text())
    raw["scoring"]["selection"]["min_expected_benefit"] = -1e9  # a different list, so the new one shows
    (root / "configs" / "race.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    runs = {name: (start(["score", "--config", "configs/race.yaml"], root, tmp_path / f"{name}.log",
                         CHURN_FAULT="stop@commit.files"), tmp_path / f"{name}.log") for name in ("a", "b")}
    try:
        deadline = time.monotonic() + 600
        stopped: list[str] = []
        while time.monotonic() < deadline:
            stopped = [name for name, (process, _) in runs.items() if state(process.pid) == "T"]
            ended = [name for name, (process, _) in runs.items() if process.poll() is not None]
            if len(stopped) == 2 or (stopped and ended) or len(ended) == 2:
                break
            time.sleep(0.1)
        assert len(stopped) == 1, f"stopped at the commit: {stopped} (two means both held the folder)"
        (winner,) = stopped
        loser = "b" if winner == "a" else "a"
        assert shown(paths) == before  # the loser wrote nothing, the winner has not switched yet
        os.kill(runs[winner][0].pid, signal.SIGCONT)
        results = {name: finish(process, log) for name, (process, log) in runs.items()}
    finally:
        for process, _ in runs.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
    assert results[winner][0] == 0, results[winner][1][-3000:]
    code, text = results[loser]
    flat = " ".join(text.split())
    assert code == EXIT_REFUSED and "Traceback" not in text, text
    assert "another `churn score` is writing" in flat and "nothing was written" in flat, flat
    after = shown(paths)
    assert after != before
    read_generation("score", paths)
    manifest = json.loads(paths["manifest.json"].read_text())
    assert manifest["outputs"] == {name: file_sha256(paths[name])
                                   for name in ("scores.parquet", "retention_list.csv", "excluded.csv")}

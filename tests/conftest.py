"""Shared fixtures: one small copy of the repository, run end to end by `dvc repro` once per session.

The DVC tests (tests/pipelines/test_dvc.py) and the notebook tests
(tests/pipelines/test_notebooks.py) both read it, so the whole pipeline (generate,
validate, features, train, score, rules, report) runs only once on small data.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the virtualenv's bin: churn and dvc
SMALL_DEMO = {"customers": 1500, "months": 14}
SMALL_CUTOFFS = 6
SMALL_ROUNDS = {"max_rounds": 40, "early_stopping_rounds": 10}
SMALL_TUNING_TRIALS = 2


@dataclass
class Project:
    """A throwaway git + DVC copy of the repository with a small-data config."""

    root: Path
    env: dict[str, str]
    first_repro: subprocess.CompletedProcess[str]
    first_repro_seconds: float
    notes: dict[str, object] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run a command in the project; on failure show its output."""
        result = subprocess.run(list(args), cwd=self.root, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n"
                                 f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-6000:]}")
        return result

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(str(BIN / "dvc"), *args, check=check)

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args)

    def edit_config(self, section: str, key: str, value: object) -> None:
        """Change one key of configs/default.yaml (the file DVC reads params from)."""
        path = self.root / "configs" / "default.yaml"
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw[section][key] = value
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


def repository_files() -> list[str]:
    """Files a fresh clone would have, plus new files not ignored by git (work in progress)."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    return [name for name in listing.split("\0") if name and (ROOT / name).is_file()]


def small_config(text: str) -> str:
    """configs/default.yaml shrunk for tests: fewer customers and months, few cutoffs, boosting rounds and tuning trials."""
    raw = yaml.safe_load(text)
    raw["demo"].update(SMALL_DEMO)
    raw["labels"]["cutoffs"]["count"] = SMALL_CUTOFFS
    for booster in ("booster", "value_booster"):
        raw["model"][booster].update(SMALL_ROUNDS)
    raw["uplift"]["booster"].update(SMALL_ROUNDS)
    raw["backtest"].update({"cutoffs": 2, "training_cutoffs": 2})
    raw["model"]["tuning"]["trials"] = SMALL_TUNING_TRIALS
    return yaml.safe_dump(raw, sort_keys=False)


def stage_environment() -> dict[str, str]:
    """The environment stages run in: the venv first on PATH, a local MLflow store, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GIT_"))}
    env.update({"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"})
    return env


@pytest.fixture(scope="session")
def dvc_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The repository copied to tmp (as a fresh clone would be), committed, and `dvc repro` run once."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = tmp_path_factory.mktemp("dvc") / "churn-care"
    for name in repository_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    config = root / "configs" / "default.yaml"
    config.write_text(small_config(config.read_text(encoding="utf-8")), encoding="utf-8")
    placeholder = Project(root, stage_environment(), subprocess.CompletedProcess([], 0, "", ""), 0.0)
    placeholder.run("git", "init", "-q")
    placeholder.git("add", "-A")
    placeholder.git("commit", "-q", "-m", "fresh clone")
    start = time.perf_counter()
    first = placeholder.dvc("repro", check=False)
    return Project(root, placeholder.env, first, time.perf_counter() - start)


GENERATED_BANK = {"customers": 20_000, "seed": 11, "start": "2023-01-01", "months": 24}
"""The generated bank the uplift, effects and backtest tests share: big enough for a control group
of about a thousand past contacts, small enough to build in seconds."""


@pytest.fixture(scope="session")
def generated_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated bank (inputs and `_truth/`), made once per session."""
    from pipelines.generate import run as generate

    out = tmp_path_factory.mktemp("bank") / "raw"
    generate(GENERATED_BANK["customers"], GENERATED_BANK["seed"], out, GENERATED_BANK["start"],
             GENERATED_BANK["months"], "parquet")
    return out


# ------------------------------------------------------------------ parallel workers (pytest-xdist)

SHARED_SESSION_FIXTURES = ("dvc_project", "generated_bank")
"""Session fixtures too costly to build once per worker: every module that uses one runs on the same
worker as the others that use it."""

SLOWEST_FIRST = (
    "dvc_project",
    "tests/pipelines/test_quality_on_generated.py",
    "tests/realdata/test_end_to_end.py",
    "tests/pipelines/test_outputs_hardening.py",
    "tests/realdata/test_campaign.py",
    "tests/pipelines/test_notebooks_shapes.py",
    "tests/pipelines/test_cli.py",
    "tests/pipelines/test_init.py",
    "tests/pipelines/test_train_stage.py",
    "tests/pipelines/test_score_stage.py",
    "generated_bank",
)
"""Groups handed to the workers first, slowest first (from `pytest --durations`), so that no long group
starts last and leaves one worker idle at the end; the others follow in collection order."""


@functools.cache
def test_group(module: str) -> str:
    """The worker group of a test module (its path from the repository root): the first costly session
    fixture its source names, else the module itself (its module fixtures are then built once)."""
    source = (ROOT / module).read_text(encoding="utf-8")
    return next((name for name in SHARED_SESSION_FIXTURES if name in source), module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker: each group's tests together, modules contiguous within it, the slowest
    groups first. The controller hands out whole groups in this order (`pytest_xdist_make_scheduler`)."""
    if getattr(config, "workerinput", None) is None:
        return
    rank = {name: position for position, name in enumerate(SLOWEST_FIRST)}
    first_seen: dict[str, int] = {}
    for position, item in enumerate(items):
        first_seen.setdefault(test_group(item.nodeid.split("::")[0]), position)

    def order(pair: tuple[int, pytest.Item]) -> tuple[int, int, str, int]:
        position, item = pair
        module = item.nodeid.split("::")[0]
        group = test_group(module)
        return (rank.get(group, len(rank)), first_seen[group], module, position)

    items[:] = [item for _, item in sorted(enumerate(items), key=order)]


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadscope` with our groups (`test_group`) as its scopes: a module and the modules that
    share a costly session fixture go to one worker as one unit. (xdist's own `--dist loadgroup` marks
    do nothing under pytest 9.2: pytest-xdist issue 1386.) `make test` adds `--no-loadscope-reorder`,
    so the units go out in the workers' collection order, slowest first."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid.split("::")[0])

    return GroupScheduling(config, log)  # type: ignore[arg-type]

"""Shared fixtures: one small copy of the repository, run end to end by `dvc repro` once per session.

The DVC tests (tests/pipelines/test_dvc.py) and the notebook tests
(tests/pipelines/test_notebooks.py) both read it, so the whole pipeline (generate,
validate, features, train, score, rules, report) runs only once on small data.
"""

from __future__ import annotations

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

"""`churn run`: every stage in order, for users who do not use DVC (same commands as dvc.yaml)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from pipelines.config import Config

# Stage name -> module whose `run(cfg, progress=...)` performs it, in pipeline order.
STAGES: tuple[tuple[str, str], ...] = (
    ("validate", "pipelines.validate"),
    ("features", "pipelines.features"),
    ("train", "pipelines.train"),
    ("score", "pipelines.score"),
    ("rules", "pipelines.rules"),
    ("complaints", "pipelines.complaints"),
    ("effects", "pipelines.effects"),
    ("backtest", "pipelines.backtest"),
    ("report", "pipelines.report"),
)
STAGE_NAMES: tuple[str, ...] = tuple(name for name, _ in STAGES)


def selected_stages(first: str | None = None, last: str | None = None) -> list[tuple[str, str]]:
    """The stages from `first` to `last` inclusive (default: all)."""
    start = STAGE_NAMES.index(first) if first else 0
    stop = STAGE_NAMES.index(last) + 1 if last else len(STAGES)
    if start >= stop:
        raise ValueError(f"--from {first} comes after --to {last}")
    return list(STAGES[start:stop])


def run(cfg: Config, first: str | None = None, last: str | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Run the selected stages in order; the first failure stops the run."""
    say = progress or (lambda message: None)
    results: dict[str, object] = {}
    for name, module_name in selected_stages(first, last):
        say(f"[bold]stage {name}[/bold]")
        module = importlib.import_module(module_name)
        results[name] = module.run(cfg, progress=progress)
    return results

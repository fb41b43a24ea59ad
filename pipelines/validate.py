"""The validate stage: load and check every input, write a validation report.

The report says `"valid": true` with the tables' summary, or `"valid": false` with every
problem; either way it replaces the previous one atomically, so a stale `"valid": true`
never outlives a failed run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from features.validation import ValidationFailed
from pipelines.config import Config
from pipelines.io import write_json
from pipelines.tables import load_tables, summarise_tables


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Validate the inputs named in `cfg` and write `reports/validation.json`.

    Raises ValidationFailed (with `report` set to the report's path) when any input is invalid.
    """
    say = progress or (lambda message: None)
    say(f"validating {len(cfg.data.tables)} table(s): {', '.join(cfg.data.tables)}")
    report = Path(cfg.paths.reports_dir) / "validation.json"
    try:
        tables = load_tables(cfg)
    except ValidationFailed as failure:
        problems = [{**dataclasses.asdict(p), "examples": list(p.examples), "text": str(p)}
                    for p in failure.problems]
        write_json({"valid": False, "as_of": cfg.data.as_of, "problems": problems}, report)
        failure.report = str(report)
        raise
    summary = summarise_tables(tables)
    payload = {"valid": True, "as_of": str(tables.as_of.date()) if tables.as_of is not None else None,
               "tables": summary}
    write_json(payload, report)
    say(f"all tables valid; report written to {report}")
    return {**payload, "report": str(report)}

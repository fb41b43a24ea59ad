"""The validate stage: load and check every input, write a validation report.

The report says `"valid": true` with the tables' summary, or `"valid": false` with every
problem; either way it replaces the previous one as a new generation of the stage's outputs
(`pipelines.io.StageOutputs`: one rename, a lock on the reports folder, leftovers of killed runs
removed), so a stale `"valid": true` never outlives a failed run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from features.validation import ValidationFailed
from pipelines.config import Config
from pipelines.io import StageOutputs, write_json
from pipelines.outputs import stage_paths
from pipelines.tables import load_tables, summarise_tables

REPORT_FILE = "validation.json"


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Validate the inputs named in `cfg` and write `reports/validation.json`.

    Raises ValidationFailed (with `report` set to the report's path) when any input is invalid,
    after the failed report is committed.
    """
    say = progress or (lambda message: None)
    say(f"validating {len(cfg.data.tables)} table(s): {', '.join(cfg.data.tables)}")
    report = stage_paths(cfg, "validate")[REPORT_FILE]
    failed: ValidationFailed | None = None
    with StageOutputs("validate", stage_paths(cfg, "validate"), say) as outputs, outputs.commit() as files:
        try:
            tables = load_tables(cfg)
        except ValidationFailed as failure:
            failed = failure
            problems = [{**dataclasses.asdict(p), "examples": list(p.examples), "text": str(p)}
                        for p in failure.problems]
            payload: dict[str, object] = {"valid": False, "as_of": cfg.data.as_of, "problems": problems}
        else:
            payload = {"valid": True, "as_of": str(tables.as_of.date()) if tables.as_of is not None else None,
                       "tables": summarise_tables(tables)}
        write_json(payload, files[REPORT_FILE])
    if failed is not None:
        failed.report = str(report)
        raise failed
    say(f"all tables valid; report written to {report}")
    return {**payload, "report": str(report)}

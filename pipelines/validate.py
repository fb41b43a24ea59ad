"""The validate stage: load and check every input, write a validation report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipelines.config import Config
from pipelines.io import write_json
from pipelines.tables import load_tables, summarise_tables


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Validate the inputs named in `cfg`; on success write `reports/validation.json`."""
    say = progress or (lambda message: None)
    say(f"validating {len(cfg.data.tables)} table(s): {', '.join(cfg.data.tables)}")
    tables = load_tables(cfg)
    summary = summarise_tables(tables)
    report = Path(cfg.paths.reports_dir) / "validation.json"
    payload = {"valid": True, "as_of": str(tables.as_of.date()) if tables.as_of is not None else None,
               "tables": summary}
    write_json(payload, report)
    say(f"all tables valid; report written to {report}")
    return {**payload, "report": str(report)}

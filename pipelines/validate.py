"""The validate stage: load and check every input, write a validation report.

The report says `"valid": true` with the tables' summary, or `"valid": false` with every
problem; either way it replaces the previous one as a new generation of the stage's outputs
(`pipelines.io.StageOutputs`: one rename, a lock on the reports folder, leftovers of killed runs
removed), so a stale `"valid": true` never outlives a failed run. The big event tables are
checked in batches (`pipelines.streamed`), so memory does not grow with their rows; the report
is the one `load_tables` and `summarise_tables` would give.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from features.validation import ValidationFailed
from pipelines.config import Config
from pipelines.fingerprint import input_fingerprint
from pipelines.io import StageError, StageOutputs, write_json
from pipelines.outputs import stage_paths
from pipelines.streamed import check_tables

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
    checked = validated_inputs(cfg)  # before reading: a file changed meanwhile shows as changed
    with StageOutputs("validate", stage_paths(cfg, "validate"), say) as outputs, outputs.commit() as files:
        try:
            summary, as_of = check_tables(cfg)
        except ValidationFailed as failure:
            failed = failure
            payload: dict[str, object] = {"valid": False, "as_of": cfg.data.as_of,
                                          "problems": [p.report() for p in failure.problems]}
        else:
            payload = {"valid": True, "as_of": str(as_of.date()) if as_of is not None else None,
                       "tables": summary, "inputs": checked}
        write_json(payload, files[REPORT_FILE])
    if failed is not None:
        failed.report = str(report)
        raise failed
    say(f"all tables valid; report written to {report}")
    return {**payload, "report": str(report)}


def validated_inputs(cfg: Config, fingerprint: dict[str, object] | None = None) -> dict[str, object]:
    """What a validation covers: each input file's path, sha256 and column mapping, and data.as_of.

    A stage that reads the files without validating them itself (`features.engine` duckdb or spark)
    accepts them only when a passing report records exactly these (`check_validated`). `fingerprint`:
    `input_fingerprint(cfg)` when the caller has it already (hashing the inputs again costs seconds)."""
    fingerprint = fingerprint or input_fingerprint(cfg)
    tables = fingerprint["tables"]
    assert isinstance(tables, dict)
    return {"data.as_of": None if cfg.data.as_of is None else str(cfg.data.as_of),
            "tables": {name: {"path": str(source.path), "sha256": tables[name].get("sha256"),
                              "columns": dict(source.columns)} for name, source in cfg.data.tables.items()}}


def check_validated(cfg: Config, current: dict[str, object] | None = None) -> None:
    """Refuse (StageError, exit 4) input files that no passing `churn validate` has checked as they are now.

    `current`: `validated_inputs(cfg)` if already computed. The message names the table, the key or
    the file that differs and says to run `churn validate`.
    """
    path = stage_paths(cfg, "validate")[REPORT_FILE]
    rerun = (f"run `churn validate --config <this config>` first (features.engine {cfg.features.engine} reads the "
             "files without loading them, so it relies on that check)")
    if not path.is_file():
        raise StageError(f"{path} does not exist: the input files were never validated; {rerun}")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise StageError(f"{path} is not valid JSON ({error}); {rerun}") from None
    if not isinstance(report, dict) or report.get("valid") is not True:
        raise StageError(f"{path} says the inputs are not valid (see its problems); fix them and {rerun}")
    then = report.get("inputs")
    if not isinstance(then, dict):
        raise StageError(f"{path} was written by an older version and does not record which files it checked; {rerun}")
    now = current or validated_inputs(cfg)
    if then.get("data.as_of") != now["data.as_of"]:
        raise StageError(f"data.as_of is {now['data.as_of']} in the config but the validation used "
                         f"{then.get('data.as_of')}; {rerun}")
    tables_then, tables_now = then.get("tables", {}), now["tables"]
    assert isinstance(tables_now, dict)
    for name in sorted(set(tables_then) | set(tables_now)):
        if name not in tables_then:
            raise StageError(f"data.tables.{name} was not part of the validation; {rerun}")
        if name not in tables_now:
            raise StageError(f"data.tables.{name} was validated but is no longer in the config; {rerun}")
        for key in ("path", "sha256", "columns"):
            if tables_then[name].get(key) != tables_now[name].get(key):
                what = {"path": "file", "sha256": "content", "columns": "column mapping"}[key]
                raise StageError(f"data.tables.{name}: its {what} changed since `churn validate` checked it "
                                 f"({tables_now[name].get('path')}); {rerun}")

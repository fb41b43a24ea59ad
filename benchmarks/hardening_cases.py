"""The hostile-user catalogue: bad data, bad config and faults, each run through the real `churn` command.

Each `Case` says what it breaks (`prepare` edits a fresh case folder: a small CSV bank, or a copy
of a fully trained project), which command it runs, the documented exit code it must end with
and words the message must contain (the table, column or key). `classify` sorts the outcome:

- `clear error`: the documented exit code, the names in the message, no traceback;
- `handled`: input that is odd but legitimate (a formula in a text cell, an unquoted YAML date),
  accepted with exit 0 and a correct, safe result (`check`);
- `traceback`: a Python traceback was printed;
- `silent acceptance`: exit 0 on bad input, or a wrong result without a word;
- `data lost`: the previous outputs of a stage were damaged (not one complete generation);
- `unclear`: another exit code, or a message that does not name what is wrong.

Cases with `doc` set are the documented examples of each exit code: docs/data-contract.md's
table of exit codes is generated from them (`exit_code_table`) and tests/test_exit_codes.py
runs each of them. benchmarks/bench_hardening.py runs them all.
"""

from __future__ import annotations

import csv
import io
import re
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

CHURN = Path(sys.executable).parent / "churn"
TABLES = ("customers", "transactions", "complaints", "surveys", "contacts")
RAW, FEATURES, OUTPUTS = "data/raw/demo", "data/features", "data/outputs"
"""A project's folders, as in configs/default.yaml (the session's `dvc repro` project has the same layout)."""
EXIT_CODES = {0: "success", 2: "config error (or a bad option)", 3: "invalid input", 4: "refused"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
FORMULA_AFTER_BREAK = tuple("=+-@\t\uff1d\uff0b\uff0d\uff20")
PAYLOADS = ("=1+1", "\r=1+1", "+44 20", "-2+3", "@SUM(A1)", "\tTAB", "=cmd|' /C calc'!A0",
            "DDE(\"cmd\";\"/C calc\";\"!A0\")", "=HYPERLINK(\"http://x\",\"y\")", "a\r\n=b", "x\n@y", "\uff1d1",
            "qu\"ote,comma", "\x00nul\x07bell")
"""OWASP CSV-injection payloads and characters that split records, used as ids and text values."""
OUTCOMES = ("clear error", "handled", "traceback", "silent acceptance", "data lost", "unclear")


@dataclass
class Result:
    code: int
    text: str
    seconds: float


@dataclass
class Case:
    name: str
    category: str
    args: tuple[str, ...]
    expect: int
    needles: tuple[str, ...] = ()
    prepare: Callable[[Path], dict[str, str] | None] | None = None
    base: str = "bank"
    doc: str | None = None
    says: str = ""
    """For a documented case: the start of the message it prints (the docs quote it, the test checks it)."""
    check: Callable[[Path, Result], str | None] | None = None
    config: bool = True
    timeout: int = 300
    umask: int = 0o022
    hold: Callable[[Path], object] | None = None
    """Something the runner holds while the command runs (a lock, a database transaction); closed after."""
    extra: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- folders


def set_dotted(raw: dict[str, object], changes: dict[str, object]) -> None:
    """Set config keys given as dotted paths (`labels.cutoffs.count`) in `raw`; None removes the key."""
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})  # type: ignore[assignment]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value


def bank_config(folder: Path, **changes: object) -> Path:
    """The config of a case folder on the CSV bank: tables in `folder/bank`, outputs in `folder`."""
    raw: dict[str, object] = {
        "data": {"tables": {name: {"path": f"bank/{name}.csv"} for name in TABLES}},
        "labels": {"cutoffs": {"count": 2}},
        "paths": {"features_dir": "features", "outputs_dir": "outputs", "reports_dir": "reports"},
        "tracking": {"tracking_uri": "sqlite:///mlflow.db", "artifact_location": "artifacts", "experiment": "case"},
        "model": {"booster": {"max_rounds": 20}, "value_booster": {"max_rounds": 20}},
    }
    set_dotted(raw, changes)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def read(folder: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(folder / "bank" / f"{table}.csv", dtype=str, keep_default_na=False)


def write(folder: Path, table: str, frame: pd.DataFrame) -> None:
    frame.to_csv(folder / "bank" / f"{table}.csv", index=False)


def edit(table: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        write(folder, table, change(read(folder, table)))
    return prepare


def set_cell(table: str, column: str, value: str, row: int = 3) -> Callable[[Path], None]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame
    return edit(table, change)


def config_text(text: str) -> Callable[[Path], None]:
    """Replace the case's config with `text` (the bank's tables section is prepended unless given)."""
    def prepare(folder: Path) -> None:
        tables = "".join(f"    {name}: {{path: bank/{name}.csv}}\n" for name in TABLES)
        body = text if text.lstrip().startswith("data:") else f"data:\n  tables:\n{tables}{text}"
        (folder / "config.yaml").write_text(body, encoding="utf-8")
    return prepare


def config_change(**changes: object) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        bank_config(folder, **changes)
    return prepare


def project_config(folder: Path, **changes: object) -> None:
    """Change keys of a project copy's config (dotted keys)."""
    path = folder / "config.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    set_dotted(raw, changes)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


def fault(spec: str) -> Callable[[Path], dict[str, str]]:
    def prepare(folder: Path) -> dict[str, str]:
        return {"CHURN_FAULT": spec}
    return prepare


def both(*steps: Callable[[Path], dict[str, str] | None]) -> Callable[[Path], dict[str, str]]:
    def prepare(folder: Path) -> dict[str, str]:
        env: dict[str, str] = {}
        for step in steps:
            env.update(step(folder) or {})
        return env
    return prepare


# ---------------------------------------------------------------- checks


def is_number(cell: str) -> bool:
    """A plain number such as -5.0: a spreadsheet reads it as a number, not a formula."""
    try:
        float(cell)
    except ValueError:
        return False
    return cell.strip() == cell and cell.lower().lstrip("+-") not in ("nan", "inf", "infinity")


def csv_problems(path: Path) -> str | None:
    """A CSV that Python's csv module cannot read back as one record per row, or with a formula cell."""
    text = path.read_bytes().decode("utf-8")
    records = list(csv.reader(io.StringIO(text, newline="")))
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if len(records) != len(frame) + 1 or any(len(r) != len(records[0]) for r in records):
        return f"{path.name}: {len(records) - 1} csv records for {len(frame)} rows"
    for record in records[1:]:
        for cell in record:
            if (cell.startswith(FORMULA_START) and not is_number(cell)) or any(line.startswith(FORMULA_AFTER_BREAK)
                                                      for line in cell.split("\n")[1:]):
                return f"{path.name}: formula cell {cell[:30]!r}"
    return None


def unguard(cell: str) -> str:
    """The documented way back from a guarded cell: drop the apostrophe at the start and after line breaks."""
    cell = cell[1:] if cell.startswith("'") and cell[1:2] and cell[1:].startswith(FORMULA_START) else cell
    return cell.replace("\n'", "\n") if "\n'" in cell else cell


def every_csv_safe(folder: Path, result: Result) -> str | None:
    found = sorted(p for p in folder.rglob("*.csv") if "bank" not in p.parts)
    if not found:
        return "no CSV written"
    for path in found:
        problem = csv_problems(path)
        if problem:
            return problem
    return None


def outputs_of(folder: Path) -> dict[str, dict[str, Path]]:
    from pipelines.config import load_config
    from pipelines.outputs import STAGES, stage_paths

    cfg = load_config(folder / "config.yaml")
    return {stage: {name: folder / path for name, path in stage_paths(cfg, stage).items()} for stage in STAGES}


def shown(paths: dict[str, Path]) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for name, path in paths.items():
        try:
            found[name] = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            found[name] = None
    return found


def damaged_stages(folder: Path, before: dict[str, dict[str, bytes | None]]) -> list[str]:
    """Stages whose public files are neither what they were before the case nor one complete new generation."""
    from pipelines.io import StageError, read_generation

    damaged = []
    for stage, paths in outputs_of(folder).items():
        if stage not in before or not any(before[stage].values()):
            continue
        now = shown(paths)
        if now == before[stage]:
            continue
        try:
            read_generation(stage, paths)
        except (StageError, OSError, ValueError, KeyError):
            damaged.append(stage)
    return damaged


# ---------------------------------------------------------------- running a case


def run_churn(args: list[str], cwd: Path, env: dict[str, str], timeout: int, umask: int) -> Result:
    start = time.perf_counter()
    try:
        done = subprocess.run([str(CHURN), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              errors="replace", timeout=timeout, umask=umask)
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout or ""
        code, text = -999, (out.decode(errors="replace") if isinstance(out, bytes) else out) + "\n(timed out)"
    return Result(code, text, time.perf_counter() - start)


def case_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "CHURN_")) and k not in ("COLUMNS",)}
    env["COLUMNS"] = "250"
    env.update(extra)
    return env


def prepare_case(case: Case, folder: Path, bases: dict[str, Path]) -> dict[str, str]:
    """A fresh case folder: a copy of its base, then the case's edits; returns extra environment."""
    base = bases[case.base]
    heavy = ("mlartifacts", ".git", ".dvc", "notebooks", "tests", ".venv")
    shutil.copytree(base, folder, symlinks=True, ignore=shutil.ignore_patterns(*heavy))
    if (base / "mlartifacts").exists():
        os.symlink(base / "mlartifacts", folder / "mlartifacts")  # the runs' artifacts: read, and added to
    env = dict(case.extra)
    if case.prepare is not None:
        changes = case.prepare(folder)
        if isinstance(changes, dict):
            env.update(changes)
    return env


def classify(case: Case, result: Result, lost: list[str], extra: str | None) -> tuple[str, str]:
    """The outcome and, for anything but a clear error or a handled case, why."""
    flat = " ".join(result.text.split())
    if "Traceback" in result.text:
        return "traceback", flat[-400:]
    if lost:
        return "data lost", f"outputs of {', '.join(lost)} are not one complete generation"
    if case.expect == 0:
        if result.code != 0:
            return "unclear", f"exit {result.code} for acceptable input: {flat[-300:]}"
        if extra:
            return "silent acceptance", extra
        missing = [n for n in case.needles if n.lower() not in flat.lower()]
        if missing:
            return "silent acceptance", f"accepted without naming {missing}"
        if case.says and case.says not in flat:
            return "unclear", f"the docs quote {case.says!r}, not printed"
        return "handled", ""
    if case.expect == -signal.SIGKILL:
        return ("handled", "") if result.code == case.expect and not extra else ("unclear", extra or flat[-300:])
    if result.code == 0:
        return "silent acceptance", f"exit 0: {flat[-300:]}"
    missing = [n for n in case.needles if n.lower() not in flat.lower()]
    if case.says and case.says not in flat:
        missing.append(case.says)  # the message the docs quote
    if result.code != case.expect or missing:
        return "unclear", f"exit {result.code} (documented {case.expect}); missing {missing}: {flat[-300:]}"
    if extra:
        return "unclear", extra
    return "clear error", ""


def run_case(case: Case, folder: Path, bases: dict[str, Path]) -> dict[str, object]:
    env = prepare_case(case, folder, bases)
    before = {stage: shown(paths) for stage, paths in outputs_of(folder).items()} if case.base == "project" else {}
    args = list(case.args) + (["--config", "config.yaml"] if case.config else [])
    held = case.hold(folder) if case.hold is not None else None
    try:
        result = run_churn(args, folder, case_env(env), case.timeout, case.umask)
    finally:
        if held is not None:
            held.close()  # type: ignore[attr-defined]
    lost = damaged_stages(folder, before) if before else []
    extra = case.check(folder, result) if case.check is not None else None
    outcome, why = classify(case, result, lost, extra)
    return {"name": case.name, "category": case.category, "command": "churn " + " ".join(args),
            "expected_exit": case.expect, "exit": result.code, "outcome": outcome, "why": why,
            "seconds": round(result.seconds, 1), "message": " ".join(result.text.split())[-600:],
            "output": result.text}


# ---------------------------------------------------------------- bases


def make_bank(folder: Path) -> Path:
    """The small CSV bank of every data and config case: 300 customers over 8 months, valid."""
    from pipelines.generate import run as generate

    generate(300, 5, folder / "bank", "2023-01-01", 8, "csv")
    shutil.rmtree(folder / "bank" / "_truth", ignore_errors=True)
    bank_config(folder)
    return folder


def hostile_ids(customers: pd.Series) -> dict[str, str]:
    """Some customers renamed to CSV-injection payloads (each made unique by a suffix)."""
    chosen = customers.iloc[np.linspace(0, len(customers) - 1, len(PAYLOADS)).astype(int)]
    return {old: f"{payload}{i}" for i, (old, payload) in enumerate(zip(chosen, PAYLOADS))}


def make_project(folder: Path, say: Callable[[str], None] = print) -> Path:
    """A fully run project (validate, features, train, score, rules) on a bank whose ids and text carry payloads."""
    from pipelines.config import load_config
    from pipelines.generate import run as generate

    raw = folder / RAW
    generate(1200, 7, raw, "2023-01-01", 12, "parquet")
    shutil.rmtree(raw / "_truth", ignore_errors=True)
    frames = {name: pd.read_parquet(raw / f"{name}.parquet") for name in TABLES}
    renamed = hostile_ids(frames["customers"]["customer_id"])
    for name, frame in frames.items():
        frame["customer_id"] = frame["customer_id"].map(lambda v: renamed.get(v, v))
    complaints = frames["complaints"]
    rows = np.arange(0, len(complaints), max(1, len(complaints) // 40))[:40]
    complaints.loc[complaints.index[rows], "channel"] = [PAYLOADS[i % len(PAYLOADS)] for i in range(len(rows))]
    complaints.loc[complaints.index[rows], "text"] = [PAYLOADS[-1 - i % len(PAYLOADS)] for i in range(len(rows))]
    for name, frame in frames.items():
        frame.to_parquet(raw / f"{name}.parquet", index=False)
    (folder / "hostile_ids.json").write_text(json.dumps(sorted(renamed.values())), encoding="utf-8")
    config = {
        "data": {"tables": {name: {"path": f"{RAW}/{name}.parquet"} for name in TABLES}},
        "labels": {"cutoffs": {"count": 3}},
        "tracking": {"tracking_uri": "sqlite:///mlflow.db", "artifact_location": str(folder / "mlartifacts"),
                     "experiment": "case"},
        "model": {"booster": {"max_rounds": 20}, "value_booster": {"max_rounds": 20}},
        "scoring": {"selection": {"min_expected_benefit": -1e9}},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    for stage in ("validate", "features", "train", "score", "rules"):
        start = time.perf_counter()
        done = run_churn([stage, "--config", "config.yaml"], folder, case_env({}), 900, 0o022)
        if done.code != 0:
            raise RuntimeError(f"the hostile project's {stage} failed ({done.code}):\n{done.text[-3000:]}")
        say(f"  project: churn {stage} {time.perf_counter() - start:.0f} s")
    return folder


# ---------------------------------------------------------------- checks of the hostile project


def hostile_ids_kept(folder: Path, result: Result) -> str | None:
    """Every payload id of a customer still open is scored; the ids in the list read back (guard undone) as input ids."""
    customers = pd.read_parquet(folder / RAW / "customers.parquet", columns=["customer_id", "closed_date"])
    as_of = pd.Timestamp(json.loads((folder / OUTPUTS / "manifest.json").read_text())["as_of"])
    still_open = set(customers.loc[~(customers["closed_date"] < as_of), "customer_id"])  # closed ones are not scored
    wanted = set(json.loads((folder / "hostile_ids.json").read_text())) & still_open
    scores = pd.read_parquet(folder / OUTPUTS / "scores.parquet", columns=["customer_id"])
    missing = wanted - set(scores["customer_id"])
    listed = pd.read_csv(folder / OUTPUTS / "retention_list.csv", dtype=str, keep_default_na=False)
    lone_cr = lambda text: re.sub(r"\r(?!\n)", "\n", text)  # noqa: E731 - the guard writes a lone CR as LF
    known = {lone_cr(c) for c in customers["customer_id"]}
    strange = [c for c in listed["customer_id"] if unguard(c) not in known and c not in known]
    if missing:
        return f"payload ids not scored: {sorted(missing)[:3]}"
    if strange:
        return f"listed ids that are no input id: {strange[:3]}"
    return None


def one_csv_safe(name: str) -> Callable[[Path, Result], str | None]:
    def check(folder: Path, result: Result) -> str | None:
        path = next((p for p in folder.rglob(name) if "bank" not in p.parts), None)
        return f"{name} was not written" if path is None else csv_problems(path)
    return check


def mode_is(relative: str, mode: int) -> Callable[[Path, Result], str | None]:
    def check(folder: Path, result: Result) -> str | None:
        found = (folder / relative).resolve().stat().st_mode & 0o777
        return None if found == mode else f"{relative} is {oct(found)}, the umask gives {oct(mode)}"
    return check


def as_of_is(day: str) -> Callable[[Path, Result], str | None]:
    def check(folder: Path, result: Result) -> str | None:
        report = json.loads((folder / "reports" / "validation.json").read_text())
        return None if str(report.get("as_of", ""))[:10] == day else f"as_of {report.get('as_of')}, not {day}"
    return check


def leftovers_removed(*names: str) -> Callable[[Path, Result], str | None]:
    def check(folder: Path, result: Result) -> str | None:
        left = [n for n in names if any(folder.rglob(n))]
        return f"leftovers still there: {left}" if left else None
    return check


def orphan_run_killed(folder: Path, result: Result) -> str | None:
    with sqlite3.connect(folder / "mlflow.db") as db:
        status = db.execute("select status from runs where run_uuid = 'orphanrun'").fetchone()
    return None if status and status[0] == "KILLED" else f"the orphaned run is {status}"


# ---------------------------------------------------------------- preparations needing more than an edit


def leftover_files(folder: Path) -> None:
    """Temporary files, a generation and a link a killed process (pid 999999) left; an orphaned MLflow run."""
    for relative in (f"{FEATURES}/.train.parquet.churn-tmp.999999.1.abcd.parquet",
                     f"{OUTPUTS}/.scores.parquet.churn-tmp.999999.1.x",
                     f"{FEATURES}/.generations/features/18ee000000000000.999999.1"):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith(".1"):
            path.mkdir()
            (path / "train.parquet").write_bytes(b"\0" * 1000)
        else:
            path.write_bytes(b"\0" * 100_000)


def orphan_run(folder: Path) -> None:
    """An MLflow run left RUNNING by a process that no longer exists (as a killed run leaves it)."""
    with sqlite3.connect(folder / "mlflow.db") as db:
        name = (yaml.safe_load((folder / "config.yaml").read_text()).get("tracking") or {}).get("experiment", "churn-care")
        experiment = db.execute("select experiment_id from experiments where name = ?", (name,)).fetchone()[0]
        db.execute("insert into runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
                   "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time) "
                   "values ('orphanrun', 'orphan', 'LOCAL', '', '', 'x', 'RUNNING', 1, null, '', 'active', 'x', ?, null)",
                   (experiment,))
        for key, value in (("stage", "score"), ("pid", "999999"), ("host", os.uname().nodename)):
            db.execute("insert into tags (key, value, run_uuid) values (?, ?, 'orphanrun')", (key, value))


class Held:
    def __init__(self, close: Callable[[], object]):
        self._close = close

    def close(self) -> None:
        self._close()


def hold_folder_lock(relative: str, stage: str) -> Callable[[Path], Held]:
    def hold(folder: Path) -> Held:
        from pipelines.io import folder_lock

        lock = folder_lock(folder / relative, stage)
        lock.__enter__()
        return Held(lambda: lock.__exit__(None, None, None))
    return hold


def hold_store_lock(folder: Path) -> Held:
    db = sqlite3.connect(folder / "mlflow.db", isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    return Held(db.close)


def read_only(relative: str) -> Callable[[Path], dict[str, str]]:
    """A folder this user cannot write: chmod for a normal user; as root (who ignores modes) the fault hook's EROFS."""
    def prepare(folder: Path) -> dict[str, str]:
        target = folder / relative
        target.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            target.chmod(0o555)
            return {}
        return {"CHURN_FAULT": "erofs@commit.files"}
    return prepare


def damaged_store(folder: Path) -> None:
    (folder / "mlflow.db").write_bytes(b"this is not a sqlite database\n" * 100)


def read_only_store(folder: Path) -> None:
    project_config(folder, **{"tracking.tracking_uri": f"sqlite:///file:{folder}/mlflow.db?mode=ro&uri=true"})


def huge_cell(folder: Path) -> None:
    frame = read(folder, "complaints")
    frame.loc[2, "text"] = "x" * 3_000_000
    write(folder, "complaints", frame)


def padded_ids(style: str) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        customers, transactions = read(folder, "customers"), read(folder, "transactions")
        numbers = {cid: str(i + 1) for i, cid in enumerate(customers["customer_id"])}
        customers["customer_id"] = customers["customer_id"].map(numbers)
        convert = {"float": lambda v: f"{v}.0", "padded": lambda v: v.zfill(7)}[style]
        transactions["customer_id"] = transactions["customer_id"].map(lambda v: convert(numbers[v]))
        for table in ("complaints", "surveys", "contacts"):
            frame = read(folder, table)
            frame["customer_id"] = frame["customer_id"].map(numbers)
            write(folder, table, frame)
        write(folder, "customers", customers)
        write(folder, "transactions", transactions)
    return prepare


def not_utf8_table(folder: Path) -> None:
    path = folder / "bank" / "complaints.csv"
    path.write_bytes(path.read_bytes().replace(b"Nobody", "Nöbody".encode("latin-1"), 1))


def bom_table(folder: Path) -> None:
    path = folder / "bank" / "surveys.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def config_bytes(data: bytes) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        (folder / "config.yaml").write_bytes(data)
    return prepare


def config_is_folder(folder: Path) -> None:
    (folder / "config.yaml").unlink()
    (folder / "config.yaml").mkdir()


def remove(relative: str) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        target = folder / relative
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    return prepare


def file_instead_of_folder(relative: str) -> Callable[[Path], None]:
    def prepare(folder: Path) -> None:
        target = folder / relative
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        target.write_text("a file where a folder should be\n")
    return prepare


def change_input(folder: Path) -> None:
    frame = pd.read_parquet(folder / RAW / "surveys.parquet")
    frame.iloc[:5].to_parquet(folder / RAW / "surveys.parquet", index=False)


def replace_train_table(folder: Path) -> None:
    table = folder / FEATURES / "train.parquet"
    frame = pd.read_parquet(table)
    table.unlink()
    frame.iloc[: len(frame) // 2].to_parquet(table, index=False)


def unreachable_server(folder: Path) -> dict[str, str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}


FLAG_AS_OF = "2023-09-01"
"""The day the flag snapshot of the bank was taken (the bank's data end)."""


def flag_snapshot(cell: tuple[str, str] | None = None, contacts: bool = False,
                  **changes: object) -> Callable[[Path], None]:
    """The bank's customers as a snapshot a team exports: `churned` yes/no (closed before the snapshot date) and
    `tenure_months`, no dates; `labels.churn_flag` in the config (`changes` on top, dotted keys, None removes a key);
    `cell` = (column, value) written into row 3 first; with `contacts`, the bank's contacts table beside it."""
    def prepare(folder: Path) -> None:
        customers = read(folder, "customers")
        signup = pd.to_datetime(customers["signup_date"])
        closed = pd.to_datetime(customers["closed_date"].replace("", None))
        as_of = pd.Timestamp(FLAG_AS_OF)
        frame = pd.DataFrame({"customer_id": customers["customer_id"], "segment": customers["segment"],
                              "tenure_months": ((as_of - signup).dt.days // 30).astype(str),
                              "churned": np.where(closed.notna(), "yes", "no")})
        if cell is not None:
            frame.loc[3, cell[0]] = cell[1]
        frame.to_csv(folder / "bank" / "flagged.csv", index=False)
        raw: dict[str, object] = {
            "data": {"as_of": FLAG_AS_OF, "tables": {"customers": {"path": "bank/flagged.csv"},
                                                       **({"contacts": {"path": "bank/contacts.csv"}} if contacts else {})}},
            "labels": {"churn_flag": {"column": "churned", "tenure_column": "tenure_months"},
                       "cutoffs": {"count": 1, "anchor": "as_of"}},
            "features": {"static_features": ["segment"]},
            "paths": {"features_dir": "features", "outputs_dir": "outputs", "reports_dir": "reports"},
            "tracking": {"tracking_uri": "sqlite:///mlflow.db", "artifact_location": "artifacts", "experiment": "case"},
        }
        set_dotted(raw, changes)
        (folder / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return prepare


# ---------------------------------------------------------------- the catalogue


def _data_cases() -> list[Case]:
    cases = [
        Case("valid bank", "baseline", ("validate",), 0, doc="`churn validate` on valid tables",
             says='all tables valid; report written to reports/validation.json',
             check=as_of_is("2023-09-01")),
        # outlier dates (issue item 2)
        Case("transaction dated 2099", "outlier dates", ("validate",), 3, ("transactions.timestamp", "data.as_of"),
             set_cell("transactions", "timestamp", "2099-01-01 10:00:00"),
             doc="one transaction dated 2099 with `data.as_of` empty",
             says='transactions.timestamp: dates after the end of the data, 2023-08-31 (inferred because data.as_of is empty'),
        Case("complaint opened 2099", "outlier dates", ("validate",), 3, ("complaints.opened_at",),
             set_cell("complaints", "opened_at", "2099-05-01 10:00:00")),
        Case("survey answered 2099", "outlier dates", ("validate",), 3, ("surveys.answered_at",),
             set_cell("surveys", "answered_at", "2099-05-01 10:00:00")),
        Case("contact dated 2099", "outlier dates", ("validate",), 3, ("contacts.contacted_at",),
             set_cell("contacts", "contacted_at", "2099-05-01 10:00:00")),
        Case("resolution dated 2099 keeps as_of", "outlier dates", ("validate",), 0, ("complaints.resolved_at",),
             set_cell("complaints", "resolved_at", "2099-05-01 10:00:00"),
             check=lambda folder, result: None if "2099" not in str(json.loads(
                 (folder / "reports" / "validation.json").read_text()).get("as_of")) else "as_of moved to 2099"),
        Case("transaction dated 1900", "outlier dates", ("validate",), 3, ("transactions",),
             set_cell("transactions", "timestamp", "1900-01-01 10:00:00")),
        Case("closed before signup", "outlier dates", ("validate",), 3, ("customers.closed_date",),
             set_cell("customers", "closed_date", "2000-01-01")),
        Case("date after data.as_of", "outlier dates", ("validate",), 3, ("data.as_of",),
             config_change(**{"data.as_of": "2023-06-01"})),
        # bad values
        Case("signup date not a date", "bad data", ("validate",), 3, ("customers.signup_date",),
             set_cell("customers", "signup_date", "31/01/2023"), doc="`customers.signup_date` holds `31/01/2023`",
             says="customers.signup_date: values that are not dates (e.g. ['31/01/2023']) (1 row); e.g. row 4 (customer C0000193)"),
        Case("amount not a number", "bad data", ("validate",), 3, ("transactions.amount",),
             set_cell("transactions", "amount", "12,50 EUR")),
        Case("amount infinite", "bad data", ("validate",), 3, ("transactions.amount",),
             set_cell("transactions", "amount", "inf")),
        Case("duplicate customer id", "bad data", ("validate",), 3, ("customers.customer_id", "duplicate"),
             edit("customers", lambda f: pd.concat([f, f.head(1)], ignore_index=True))),
        Case("empty customer id", "bad data", ("validate",), 3, ("customers.customer_id",),
             set_cell("customers", "customer_id", "")),
        Case("unknown customer in transactions", "bad data", ("validate",), 3, ("transactions.customer_id",),
             set_cell("transactions", "customer_id", "GHOST")),
        Case("priority outside the list", "bad data", ("validate",), 3, ("complaints.priority",),
             set_cell("complaints", "priority", "extreme")),
        Case("nps 11", "bad data", ("validate",), 3, ("surveys.nps",), set_cell("surveys", "nps", "11")),
        Case("satisfaction 9", "bad data", ("validate",), 3, ("complaints.satisfaction",),
             set_cell("complaints", "satisfaction", "9")),
        Case("treatment 2", "bad data", ("validate",), 3, ("contacts.treatment",),
             set_cell("contacts", "treatment", "2")),
        Case("negative contact cost", "bad data", ("validate",), 3, ("contacts.cost",),
             set_cell("contacts", "cost", "-5")),
        Case("missing required column", "bad data", ("validate",), 3, ("transactions", "amount"),
             edit("transactions", lambda f: f.drop(columns=["amount"]))),
        Case("missing input file", "bad data", ("validate",), 3, ("transactions",),
             remove("bank/transactions.csv"), doc="`data.tables.transactions.path` names a file that is not there",
             says='transactions: file bank/transactions.csv does not exist. Fix: check data.tables.transactions.path'),
        Case("empty customers table", "bad data", ("validate",), 3, ("customers",),
             edit("customers", lambda f: f.iloc[:0])),
        Case("response before opening", "bad data", ("validate",), 3, ("complaints.first_response_at",),
             set_cell("complaints", "first_response_at", "2020-01-01 00:00:00")),
        Case("complaints not UTF-8", "bad data", ("validate",), 3, ("complaints", "UTF-8"), not_utf8_table),
        Case("byte-order mark is only a warning", "bad data", ("validate",), 0, (), bom_table),
        # huge cells, ids (item 11)
        Case("3 MB text cell", "huge CSV cell", ("validate",), 3, ("complaints",), huge_cell),
        Case("unclosed quote", "huge CSV cell", ("validate",), 3, ("transactions",),
             lambda folder: (folder / "bank" / "transactions.csv").write_text(
                 (folder / "bank" / "transactions.csv").read_text() + '"C0000001,2023-01-01 00:00:00,5\n')),
        Case("ids 319.0 vs 319", "id type or padding", ("validate",), 3, ("transactions.customer_id", "type"),
             padded_ids("float"), doc="`transactions.customer_id` written `319.0` for customer `319`",
             says="name a known customer written another way ('101.0' is '101'"),
        Case("ids 0000319 vs 319", "id type or padding", ("validate",), 3, ("transactions.customer_id", "padding"),
             padded_ids("padded")),
    ]
    return cases


def _config_cases() -> list[Case]:
    return [
        Case("unknown key", "bad config", ("validate",), 2, ("labels.horizon_dayz",), config_text(
            "labels:\n  horizon_dayz: 60\n"), doc="`labels: {horizon_dayz: 60}` (a misspelt key)",
             says='labels.horizon_dayz: unknown key (check the spelling; see configs/default.yaml)'),
        Case("negative horizon", "bad config", ("validate",), 2, ("labels.horizon_days",),
             config_text("labels:\n  horizon_days: -1\n")),
        Case("horizon not a number", "bad config", ("validate",), 2, ("labels.horizon_days",),
             config_text("labels:\n  horizon_days: ninety\n")),
        Case("duplicate top-level key", "duplicate YAML keys", ("validate",), 2, ("labels", "duplicate"),
             config_text("labels:\n  horizon_days: 60\nlabels:\n  horizon_days: 90\n"),
             doc="`labels.horizon_days` written twice in the YAML file",
             says='duplicate key labels at line 10 (first at line 8); give each key once'),
        Case("duplicate nested key", "duplicate YAML keys", ("validate",), 2, ("economics.contact_cost",),
             config_text("economics:\n  contact_cost: 1\n  contact_cost: 2\n")),
        Case("contact cost .inf", "infinite values", ("validate",), 2, ("economics.contact_cost",),
             config_text("economics:\n  contact_cost: .inf\n"), doc="`economics.contact_cost: .inf`",
             says='economics.contact_cost: not a finite number (inf or nan); give a real number'),
        Case("contact cost .nan", "infinite values", ("validate",), 2, ("economics.contact_cost",),
             config_text("economics:\n  contact_cost: .nan\n")),
        Case("margin 'inf' as text", "infinite values", ("validate",), 2, ("economics.value_margin",),
             config_text("economics:\n  value_margin: 'inf'\n")),
        Case("min lift -.inf", "infinite values", ("validate",), 2, ("rules.min_lift",),
             config_text("rules:\n  min_lift: -.inf\n")),
        Case("as_of yesterday", "bad as_of", ("validate",), 2, ("data.as_of",), config_change(**{"data.as_of": "yesterday"}),
             doc="`data.as_of: yesterday`",
             says="data.as_of: Value error, 'yesterday' is not a date; write it as YYYY-MM-DD"),
        Case("as_of 2025-06-31", "bad as_of", ("validate",), 2, ("data.as_of",),
             config_change(**{"data.as_of": "2025-06-31"})),
        Case("as_of 2025-13-01", "bad as_of", ("validate",), 2, ("data.as_of",),
             config_change(**{"data.as_of": "2025-13-01"})),
        Case("as_of 31/08/2023", "bad as_of", ("validate",), 2, ("data.as_of",),
             config_change(**{"data.as_of": "31/08/2023"})),
        Case("as_of now", "bad as_of", ("validate",), 2, ("data.as_of",), config_change(**{"data.as_of": "now"})),
        Case("as_of a number", "bad as_of", ("validate",), 2, ("data.as_of",), config_change(**{"data.as_of": 20230801})),
        Case("as_of unquoted YAML date", "unquoted YAML date", ("validate",), 0, (),
             config_text("data:\n  as_of: 2023-09-15\n  tables:\n" + "".join(
                 f"    {n}: {{path: bank/{n}.csv}}\n" for n in TABLES)), check=as_of_is("2023-09-15")),
        Case("as_of ISO datetime with offset", "unquoted YAML date", ("validate",), 0, (),
             config_change(**{"data.as_of": "2023-09-15T02:00:00+02:00"}), check=as_of_is("2023-09-15")),
        Case("config not UTF-8", "non-UTF-8 config", ("validate",), 2, ("config.yaml", "UTF-8"),
             config_bytes("labels:\n  horizon_days: 60 # délai\n".encode("latin-1")),
             doc="a config file saved in Latin-1",
             says='config.yaml is not UTF-8 text (first bad byte at offset 30, line 2); re-save it as UTF-8'),
        Case("config is a folder", "config folder", ("validate",), 2, ("config.yaml", "folder"), config_is_folder,
             doc="`--config` names a folder",
             says='config config.yaml is a folder, not a file: give the YAML file itself'),
        Case("config missing", "config folder", ("validate",), 2, ("config.yaml",), remove("config.yaml")),
        Case("config empty", "bad config", ("validate",), 2, ("config.yaml",), config_bytes(b"")),
        Case("config a list", "bad config", ("validate",), 2, ("config.yaml",), config_bytes(b"- a\n- b\n")),
        Case("config YAML syntax error", "bad config", ("validate",), 2, ("config.yaml", "line"),
             config_bytes(b"labels:\n  horizon_days: [60\n")),
        Case("config python tag", "bad config", ("validate",), 2, ("config.yaml",),
             config_bytes(b"labels: !!python/object/apply:os.system ['echo hi']\n")),
        Case("table path missing", "bad config", ("validate",), 2, ("data.tables.customers",),
             config_text("data:\n  tables:\n    customers: {}\n")),
        Case("unknown table", "bad config", ("validate",), 2, ("data.tables", "accounts"),
             config_text("data:\n  tables:\n    customers: {path: bank/customers.csv}\n    accounts: {path: bank/x.csv}\n")),
        Case("unknown stage for --from", "bad config", ("run", "--from", "nowhere"), 2, ("nowhere",),
             doc="`churn run --from nowhere`",
             says="unknown stage 'nowhere'; stages: validate, features, train, score, rules, complaints, effects, backtest, report"),
        Case("bad --as-of option", "bad as_of", ("score", "--as-of", "2025-02-30"), 2, ("--as-of",)),
        Case("capacity negative", "bad config", ("validate",), 2, ("scoring.selection", "care_team"),
             config_text("scoring:\n  selection:\n    capacity:\n      care_team: -3\n")),
    ] + _flag_cases()


def _flag_cases() -> list[Case]:
    """A customers snapshot with a churn flag and a tenure, no dates (`labels.churn_flag`), and what breaks it."""
    category = "churn flag snapshot"
    return [
        Case("flag snapshot valid", category, ("validate",), 0, prepare=flag_snapshot()),
        Case("flag snapshot with contacts: features at the window start", category, ("features",), 0,
             prepare=flag_snapshot(contacts=True), timeout=600),
        Case("flag value neither churned nor stayed", category, ("validate",), 3, ("customers.churned", "Maybe"),
             flag_snapshot(("churned", "Maybe"))),
        Case("flag tenure negative", category, ("validate",), 3, ("customers.tenure_months",),
             flag_snapshot(("tenure_months", "-4"))),
        Case("flag tenure not a number", category, ("validate",), 3, ("customers.tenure_months",),
             flag_snapshot(("tenure_months", "ten"))),
        Case("flag without data.as_of", category, ("validate",), 2, ("data.as_of",),
             flag_snapshot(**{"data.as_of": None})),
        Case("flag with monthly cutoffs", category, ("validate",), 2, ("labels.cutoffs",),
             flag_snapshot(**{"labels.cutoffs": {"count": 3, "anchor": "month_start"}})),
        Case("flag on the duckdb engine", category, ("validate",), 2, ("features.engine",),
             flag_snapshot(**{"features.engine": "duckdb"})),
        Case("flag column also a feature", category, ("validate",), 2, ("features.static_features", "churned"),
             flag_snapshot(**{"features.static_features": ["segment", "churned"]})),
        Case("flag with a mapped closed_date", category, ("validate",), 2, ("closed_date",),
             flag_snapshot(**{"data.tables.customers.columns": {"closed_date": "segment"}})),
        Case("flag column missing", category, ("validate",), 3, ("customers", "exited"),
             flag_snapshot(**{"labels.churn_flag.column": "exited"})),
    ]


def _stage_cases() -> list[Case]:
    """Cases on a copy of the fully run hostile project: stale inputs, leftovers, races, kills, the machine."""
    project = "project"
    hostile_files = ("retention_list.csv", "excluded.csv", "complaint_rules.csv", "complaint_order_pairs.csv",
                     "complaint_chains.csv", "root_causes.csv", "churn_rules.csv", "example_reasons.csv",
                     "gains.csv", "roc.csv", "reliability.csv", "feature_importance.csv", "profit_curve.csv")
    cases = [Case(f"payload ids and texts: {name} parses back, no formula cell", "CSV injection", ("validate",), 0,
                  base=project, check=one_csv_safe(name)) for name in hostile_files]
    cases += [
        Case("payload ids scored and listed as written", "CSV injection", ("validate",), 0, base=project,
             check=hostile_ids_kept),
        Case("score again on payload ids: every CSV safe", "CSV injection", ("score",), 0, base=project,
             check=every_csv_safe, timeout=600),
        # stale upstream outputs (item 4)
        Case("train after labels.horizon_days changed", "stale upstream", ("train",), 4, ("labels.horizon_days",),
             lambda f: project_config(f, **{"labels.horizon_days": 60}), base=project,
             doc="`churn train` after `labels.horizon_days` changed, before `churn features`",
             says='labels.horizon_days is 60 in the config but data/features/train.parquet was built with 90: run `churn features` with this config first'),
        Case("train after a features key changed", "stale upstream", ("train",), 4, ("features.",),
             lambda f: project_config(f, **{"features.windows_days": [30, 60]}), base=project),
        Case("train after an input table changed", "stale upstream", ("train",), 4, ("surveys",), change_input,
             base=project),
        Case("train on a replaced training table", "stale upstream", ("train",), 4, ("train.parquet",),
             replace_train_table, base=project),
        Case("score with models of another horizon", "stale upstream", ("score",), 4, ("labels.horizon_days",),
             lambda f: project_config(f, **{"labels.horizon_days": 60}), base=project),
        Case("train with no features", "stale upstream", ("train",), 4, ("churn features",),
             remove(FEATURES), base=project),
        Case("score with no model", "stale upstream", ("score", "--model", "models:/churn-risk/99"), 4,
             ("churn-risk",), base=project),
        # leftovers (item 5)
        Case("leftovers of a killed features run", "leftovers", ("features",), 0, (), leftover_files, base=project,
             check=leftovers_removed(".train.parquet.churn-tmp.999999.1.abcd.parquet", "18ee000000000000.999999.1")),
        Case("MLflow run left RUNNING", "leftovers", ("score",), 0, (), orphan_run, base=project,
             check=orphan_run_killed),
        # racing runs (item 6)
        Case("score while another score holds the folder", "racing runs", ("score",), 4,
             ("another `churn score`", "outputs"), base=project, hold=hold_folder_lock(OUTPUTS, "score"),
             doc="a second `churn score` while one is writing the same folder",
             says='another `churn score` is writing data/outputs (pid'),
        Case("features while another features holds the folder", "racing runs", ("features",), 4,
             ("another `churn features`",), base=project, hold=hold_folder_lock(FEATURES, "features")),
        Case("train while another train holds the reports", "racing runs", ("train",), 4,
             ("another `churn train`",), base=project, hold=hold_folder_lock("reports", "train")),
        Case("validate while another validate holds the reports", "racing runs", ("validate",), 4,
             ("another `churn validate`",), base=project, hold=hold_folder_lock("reports", "validate")),
        # the machine (item 7)
        Case("features on a full disk", "disk full", ("features",), 4, ("No space left", "features"),
             fault("enospc@commit.files"), base=project,
             doc="`churn features` on a full disk (`CHURN_FAULT=enospc@commit.files` imitates one)",
             says='No space left on device (ENOSPC). free space on that disk'),
        Case("score on a full disk", "disk full", ("score",), 4, ("No space left",), fault("enospc@commit.files"),
             base=project),
        Case("rules on a full disk", "disk full", ("rules",), 4, ("No space left",), fault("enospc@commit.record"),
             base=project),
        Case("validate on a full disk", "disk full", ("validate",), 4, ("No space left",),
             fault("enospc@commit.swap"), base=project),
        Case("features into a read-only folder", "read-only folder", ("features",), 4, ("features",),
             read_only(FEATURES), base=project, doc="`paths.features_dir` on a read-only file system",
             says='that folder cannot be written by this user'),
        Case("score into a read-only folder", "read-only folder", ("score",), 4, ("outputs",),
             read_only(OUTPUTS), base=project),
        Case("rules, permission denied", "read-only folder", ("rules",), 4, ("Permission denied",),
             fault("eacces@commit.files"), base=project),
        Case("a file where the outputs folder should be", "read-only folder", ("score",), 4, ("outputs",),
             file_instead_of_folder(OUTPUTS), base=project),
        Case("a file where the reports folder should be", "read-only folder", ("validate",), 4, ("reports",),
             file_instead_of_folder("reports"), base=project),
        Case("damaged MLflow store", "MLflow store", ("score",), 4, ("mlflow.db", "damaged"), damaged_store,
             base=project, doc="`mlflow.db` is not a database",
             says='is damaged or not an MLflow database'),
        Case("read-only MLflow store", "MLflow store", ("score",), 4, ("mlflow.db", "cannot be written"),
             read_only_store, base=project),
        Case("locked MLflow store", "MLflow store", ("score",), 4, ("mlflow.db", "locked"), base=project,
             hold=hold_store_lock),
        Case("unreachable tracking server", "MLflow store", ("rules",), 4, ("tracking server", "retries"),
             unreachable_server, base=project, timeout=400,
             doc="`MLFLOW_TRACKING_URI=http://127.0.0.1:PORT` where nothing listens",
             says='cannot reach the MLflow tracking server http://127.0.0.1:'),
        # report with missing outputs (item 7)
        Case("report with no score outputs", "report without outputs", ("report",), 4, ("churn score",),
             remove(OUTPUTS), base=project),
        Case("report in an empty project", "report without outputs", ("report",), 4, ("churn validate",),
             doc="`churn report` before the other stages ran",
             says='the report reads the outputs of the earlier stages, and these are missing: reports/validation.json (run `churn validate`)'),
        # identifier-like static features (item 8)
        Case("full_name as a static feature", "identifier-like features", ("features",), 2,
             ("features.static_features", "full_name"),
             both(lambda f: (pd.read_parquet(f / RAW / "customers.parquet").assign(
                 full_name=lambda c: "Name " + c["customer_id"].astype(str)).to_parquet(
                 f / RAW / "customers.parquet", index=False)),
                 lambda f: project_config(f, **{"features.static_features": ["segment", "full_name"]})),
             base=project, doc="`features.static_features` lists `full_name`",
             says='look like identifiers or free text (most values unique)'),
        Case("email as a static feature", "identifier-like features", ("features",), 2,
             ("features.static_features", "email"),
             both(lambda f: (pd.read_parquet(f / RAW / "customers.parquet").assign(
                 email=lambda c: "u" + c.index.astype(str) + "@example.com").to_parquet(
                 f / RAW / "customers.parquet", index=False)),
                 lambda f: project_config(f, **{"features.static_features": ["segment", "email"]})),
             base=project),
        Case("a static feature not in customers", "identifier-like features", ("features",), 2,
             ("features.static_features", "shoe_size"),
             lambda f: project_config(f, **{"features.static_features": ["segment", "shoe_size"]}), base=project),
        # umask (item 10)
        Case("umask 022 gives 0644", "umask", ("validate",), 0, (), umask=0o022, check=mode_is(
            "reports/validation.json", 0o644)),
        Case("umask 027 gives 0640", "umask", ("validate",), 0, (), umask=0o027, check=mode_is(
            "reports/validation.json", 0o640)),
        Case("umask 077 gives 0600", "umask", ("validate",), 0, (), umask=0o077, check=mode_is(
            "reports/validation.json", 0o600)),
        Case("init over an existing config", "bad config", (
            "init", "--customers", "bank/customers.csv", "--transactions", "bank/transactions.csv",
            "--out", "config.yaml"), 4, ("--force",), config=False, doc="`churn init --out` an existing file",
             says='config.yaml already exists; nothing was written. Add --force to replace it'),
    ]
    # kills at steps of the commits (item 3): the outputs must stay one complete generation
    for stage, points in (("features", ("commit.files", "commit.record", "commit.swap", "commit.swapped",
                                        "commit.cleaned")),
                          ("score", ("commit.record", "commit.swap", "commit.swapped")),
                          ("rules", ("commit.record", "commit.swapped")),
                          ("validate", ("commit.files", "commit.swap", "commit.swapped")),
                          ("train", ("commit.swap",))):
        for point in points:
            cases.append(Case(f"{stage} killed at {point}", "kills", (stage,), -signal.SIGKILL, (),
                              fault(f"kill@{point}"), base=project, timeout=600))
    return cases


def catalogue() -> list[Case]:
    """Every case; names are unique."""
    cases = _data_cases() + _config_cases() + _stage_cases()
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def documented() -> list[Case]:
    return [case for case in catalogue() if case.doc]


def exit_code_table() -> str:
    """docs/data-contract.md's table of exit codes: one row per documented case (tests keep it in step)."""
    lines = ["| exit | meaning | what triggers it | command | the message says |", "|---|---|---|---|---|"]
    for case in sorted(documented(), key=lambda c: (c.expect, c.category, c.name)):
        command = " ".join(("churn", *case.args, *(("--config", "config.yaml") if case.config else ())))
        says = case.says.replace("|", "\\|").replace("`", "'")
        lines.append(f"| {case.expect} | {EXIT_CODES[case.expect]} | {case.doc} | `{command}` | {says} |")
    return "\n".join(lines) + "\n"

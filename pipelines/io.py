"""File I/O shared by every stage: atomic writes, spreadsheet-safe CSV and small JSON helpers.

Every output is written to a temporary file in the same folder and renamed into place,
so a killed run never leaves a half-written file and the previous output survives.
Outputs get the permissions the umask gives any new file (0644 under the usual 022),
not the private 0600 / 0700 of the temporary names.

A stage whose outputs must change together (features, score, rules) writes them through
`StageOutputs`: a lock on its output folder (a second run of the stage exits at once), the
leftovers of killed runs removed at its start, and one commit that switches every output
to a new generation with a single atomic rename (see `StageOutputs`).

Temporary names carry their writer's process id and start time (`.NAME.churn-tmp.PID.START.*`),
so a later run can tell an orphan of a killed process from the work of a live one.

Fault injection, for tests: `CHURN_FAULT=ACTION@POINT` makes the process stop at a named
point of a commit (`fault_point`): ACTION `kill` (SIGKILL itself, as a crash would),
`stop` (SIGSTOP itself: a test looks at the files exactly as a kill there would leave them,
then lets it go on with SIGCONT) or `enospc`, `eacces`, `erofs` (raise that OSError, as a
full disk or a read-only folder would); POINT is a point's name (e.g. `commit.swap`), `#N`
(the N-th point reached) or `*` (every point). `CHURN_FAULT_TRACE=FILE` appends the name of
every point reached to FILE.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import numbers
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: stages then run without the folder lock
    fcntl = None  # type: ignore[assignment]

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class StageError(Exception):
    """A stage cannot run: a missing upstream output, a refused model, and so on. Message says what to do."""


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    Linux shows it in /proc/self/status; elsewhere it is set and restored under a lock,
    to a restrictive 077 meanwhile, so a file another thread creates in that instant is
    private rather than world-writable.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


# ---------------------------------------------------------------- processes, temporary names, fault points

TEMP_TAG = "churn-tmp"
"""Marks a temporary name: `.NAME.churn-tmp.PID.START.<random>` (START: the writer's process start time)."""
_TEMP_NAME = re.compile(r"^\.(?P<name>.+?)\." + TEMP_TAG + r"\.(?P<pid>\d+)\.(?P<start>\d*)\.")
_LEGACY_TEMP_TAIL = re.compile(r"^(?:[a-z0-9_]{8}(?:\.[A-Za-z0-9]+)?|old-\d+)$")
LEGACY_TEMP_AGE_SECONDS = 3600
"""Temporary names of older versions carry no process id: those of a stage's own outputs are
removed once they are this old (no run of a stage takes that long between creating and renaming one)."""


def process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from /proc), or "" where that is unknown.

    With the pid it identifies a process even after the pid is reused.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_token() -> str:
    """This process as `PID.START`, the owner mark of its temporary names, generations and lock."""
    return f"{os.getpid()}.{process_start(os.getpid())}"


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process `pid` (started at `start`, when known) still runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    if start:
        now = process_start(pid)
        if now and now != start:
            return False  # the pid was reused by a newer process
    return True


def temp_prefix(name: str) -> str:
    """The prefix of this process's temporary names for an output called `name`."""
    return f".{name}.{TEMP_TAG}.{process_token()}."


def _name_the_target(error: OSError, target: Path, tmp: Path | None) -> None:
    """An OSError about a temporary name (or about no file at all) names the output instead."""
    if error.filename is None or (tmp is not None and str(error.filename) == str(tmp)) or \
            TEMP_TAG in Path(str(error.filename)).name:
        error.filename = str(target)


_FAULTS_SEEN = 0
_FAULT_ERRORS = {"enospc": errno.ENOSPC, "eacces": errno.EACCES, "erofs": errno.EROFS}


def fault_point(name: str, path: Path | None = None) -> None:
    """A named step of a commit where `CHURN_FAULT` (see the module docstring) can stop the process."""
    global _FAULTS_SEEN
    _FAULTS_SEEN += 1
    trace = os.environ.get("CHURN_FAULT_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as handle:
            handle.write(name + "\n")
    spec = os.environ.get("CHURN_FAULT", "")
    action, _, where = spec.partition("@")
    if not spec or where not in (name, f"#{_FAULTS_SEEN}", "*"):
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    if action in _FAULT_ERRORS:
        code = _FAULT_ERRORS[action]
        raise OSError(code, os.strerror(code), str(path) if path is not None else None)
    raise ValueError(f"CHURN_FAULT={spec!r}: the action must be kill, stop, enospc, eacces or erofs")


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=suffix or ".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it 0600; a new file is 0666 - umask
        os.replace(tmp, target)
    except OSError as error:
        _name_the_target(error, target, tmp)
        raise
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; swap it in for `path` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700; a new folder is 0777 - umask
        old = None
        if target.exists():
            old = target.with_name(f"{temp_prefix(target.name)}old")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame to Parquet atomically, without the pandas index, deterministically."""
    with atomic_path(path, ".parquet") as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
    return Path(path)


def write_frames(frames: Iterable[pd.DataFrame], path: Path,
                 on_frame: Callable[[pd.DataFrame], None] | None = None,
                 before_commit: Callable[[bool], None] | None = None) -> int:
    """Write frames into one Parquet file atomically, one row group per frame (at most ~1M rows), as they
    come: a stream of pieces is never held whole. Returns the rows written.

    `on_frame` sees each frame once written; `before_commit` gets whether any frame came and may raise
    to refuse the file (nothing is then written). One frame writes the bytes `write_parquet` writes.
    """
    writer: pq.ParquetWriter | None = None
    rows = 0
    with atomic_path(path, ".parquet") as tmp:
        try:
            for frame in frames:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
                writer.write_table(table.cast(writer.schema))
                rows += len(frame)
                if on_frame is not None:
                    on_frame(frame)
            if before_commit is not None:
                before_commit(writer is not None)
        finally:
            if writer is not None:
                writer.close()
    return rows


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame to UTF-8 CSV atomically, without the pandas index, safe to open in a spreadsheet.

    See `to_safe_csv`: text cells pass through `excel_safe`, so every record is one row
    and no cell runs as a formula.
    """
    with atomic_path(path, ".csv") as tmp:
        to_safe_csv(frame, tmp)
    return Path(path)


def to_safe_csv(frame: pd.DataFrame, path: str | Path | None = None, **options: Any) -> str | None:
    """The project's one way to write a CSV (not atomic: give it a temporary path, as `write_csv` does).

    UTF-8, "\\n" between records, no index; text cells guarded by `excel_safe`. A field
    holding a line break, a double quote or a comma is quoted (Python's csv writer quotes
    the delimiter, the quote and the line terminator; `excel_safe` has turned a lone
    carriage return into a line feed, which Python 3.11's writer would not quote).
    With no path, returns the text (e.g. for an MLflow artifact); `options` go to
    `DataFrame.to_csv` (e.g. `mode="a"`, `header=False`, `date_format`).
    """
    return excel_safe(frame).to_csv(path, index=False, encoding="utf-8", lineterminator="\n", **options)


def write_json(payload: Any, path: str | Path) -> Path:
    """Write JSON atomically with sorted keys, so identical content gives identical bytes."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n"
    return write_text(text, path)


def write_text(text: str, path: str | Path) -> Path:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_with(path: str | Path, writer: Callable[[Path], None], suffix: str | None = None) -> Path:
    """Let `writer` fill a temporary file, then rename it onto `path` (e.g. for PNG plots)."""
    with atomic_path(path, suffix or Path(path).suffix) as tmp:
        writer(tmp)
    return Path(path)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, for manifests and input fingerprints."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
"""First characters that make a spreadsheet read a cell as a formula (OWASP's list: = + - @ tab CR,
plus line feed and the full-width = + - @ that some spreadsheets accept too)."""
FORMULA_AFTER_LINE_BREAK = "=+-@\t\uff1d\uff0b\uff0d\uff20"
"""The same after a line break inside a cell, where a reader that splits rows would start a new cell."""
EXCEL_FORMULA_PREFIXES = FORMULA_PREFIXES
_LONE_CR = re.compile(r"\r(?!\n)")
_FORMULA_AFTER_BREAK = re.compile(f"(?<=\n)(?=[{re.escape(FORMULA_AFTER_LINE_BREAK)}])")
_RISKY = re.compile(r"[\r\n]")


def neutralise_formula(text: str) -> str:
    """One text cell made safe for a spreadsheet and for any CSV writer.

    - a lone carriage return (not followed by a line feed) becomes a line feed, so the
      cell is quoted by every CSV writer (Python 3.11's quotes only the line terminator);
    - an apostrophe goes before a formula character (`FORMULA_AFTER_LINE_BREAK`) that
      follows a line break;
    - an apostrophe goes in front of a cell that starts with one of `FORMULA_PREFIXES`.

    The apostrophe is the usual mark of a cell kept as text; to get the original back,
    drop the apostrophe at the start and those right after a line break, and read line
    feeds where lone carriage returns were. Cells that are already safe come back
    unchanged, so applying it twice changes nothing.
    """
    if "\r" in text:
        text = _LONE_CR.sub("\n", text)
    if "\n" in text:
        text = _FORMULA_AFTER_BREAK.sub("'", text)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _guard_object(value: object) -> object:
    """An object-column cell: text (and other non-number objects, as text) guarded; numbers, dates, missing kept."""
    if isinstance(value, str):
        return neutralise_formula(value)
    if value is None or value is pd.NA or value is pd.NaT or isinstance(
            value, (numbers.Number, np.generic, dt.date, dt.time, dt.timedelta)):
        return value
    return neutralise_formula(str(value))


def excel_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula, or that could split a CSV record, made safe.

    Every text cell goes through `neutralise_formula` (apostrophe before a leading formula
    character and before one after a line break; a lone carriage return becomes a line
    feed). Only text is touched: text columns, text categories, and the text values of
    object columns; numbers (including negative ones), dates and missing values stay as
    they are. The result can be written by `DataFrame.to_csv` with its default quoting.
    """
    columns = {}
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.CategoricalDtype):
            if not (pd.api.types.is_string_dtype(series.cat.categories) or series.cat.categories.dtype == object):
                continue
            series = series.astype(object).where(series.notna(), None)
        if series.dtype == object:
            guarded = series.map(_guard_object)
            if not guarded.equals(series) or guarded.dtype != frame[name].dtype:
                columns[name] = guarded
        elif pd.api.types.is_string_dtype(series):
            risky = (series.str.contains(_RISKY.pattern, regex=True, na=False)
                     | series.str.startswith(FORMULA_PREFIXES, na=False)).to_numpy(dtype=bool)
            if risky.any():
                guarded = series.copy()
                guarded[risky] = [neutralise_formula(value) for value in series[risky]]
                columns[name] = guarded
    return frame.assign(**columns) if columns else frame


# ---------------------------------------------------------------- stage outputs: lock, leftovers, one commit

GENERATIONS_DIR = ".generations"
"""Hidden folder, inside a stage's first output folder, that holds its generations (see `StageOutputs`)."""
CURRENT = "current"
GENERATION_RECORD = "generation.json"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _owner_alive(name: str) -> bool:
    """Whether the process named in a temporary name or generation id (`...PID.START...`) still runs."""
    found = _TEMP_NAME.match(name) or re.match(r"^[0-9a-f]+\.(?P<pid>\d+)\.(?P<start>\d*)", name)
    return found is None or process_alive(int(found["pid"]), found["start"])


def clean_leftovers(paths: Mapping[str, Path] | list[Path], stage: str | None = None) -> list[Path]:
    """Remove what killed runs left beside these outputs; returns what was removed.

    - temporary files and folders (`.NAME.churn-tmp.PID.START.*`) whose process is gone, in
      every folder that holds one of the outputs (whichever stage wrote them);
    - temporary names of older versions (no process id) of these very outputs, once they are
      `LEGACY_TEMP_AGE_SECONDS` old;
    - generations of `stage` that are not the current one and whose process is gone.
    """
    outputs = list(paths.values()) if isinstance(paths, Mapping) else list(paths)
    removed: list[Path] = []
    own = {path.name for path in outputs}
    now = time.time()
    for folder in dict.fromkeys(path.parent for path in outputs):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if not entry.name.startswith("."):
                continue
            if _TEMP_NAME.match(entry.name):
                if not _owner_alive(entry.name):
                    _remove(entry)
                    removed.append(entry)
                continue
            legacy = next((name for name in own if entry.name.startswith(f".{name}.")
                           and _LEGACY_TEMP_TAIL.match(entry.name[len(name) + 2:])), None)
            if legacy is not None:
                try:
                    old = now - entry.lstat().st_mtime > LEGACY_TEMP_AGE_SECONDS
                except FileNotFoundError:
                    continue
                if old:
                    _remove(entry)
                    removed.append(entry)
    if stage is not None and outputs:
        store = outputs[0].parent / GENERATIONS_DIR / stage
        current = _read_current(store)
        if store.is_dir():
            for entry in store.iterdir():
                if entry.name in (CURRENT, current) or _owner_alive(entry.name):
                    continue
                _remove(entry)
                removed.append(entry)
    return removed


def _read_current(store: Path) -> str | None:
    try:
        return os.readlink(store / CURRENT)
    except (FileNotFoundError, NotADirectoryError, OSError):
        return None


class OutputsLocked(StageError):
    """Another process holds the lock of a stage's output folder."""


@contextmanager
def folder_lock(folder: Path, stage: str) -> Iterator[Path]:
    """Hold `FOLDER/.churn-STAGE.lock` (fcntl.flock) for the block; refuse at once if another process holds it.

    The file names its holder (pid, host, start, command) for the message a second run
    prints. It is removed when the block ends; a killed holder's file is reused (the kernel
    released its lock), and a run that opened a file just removed notices and opens again.
    """
    path = folder / f".churn-{stage}.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        error.filename = error.filename or str(folder)
        raise
    if fcntl is None:
        yield path
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            error.filename = str(folder)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                holder = {}
            os.close(fd)
            who = (f"pid {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}: "
                   f"{holder.get('command', '?')}") if holder.get("pid") else "a process that is starting"
            raise OutputsLocked(
                f"another `churn {stage}` is writing {folder} ({who}); two runs at once would overwrite each "
                f"other's outputs. Wait for it to finish (or stop it) and run again; nothing was written") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    holder_text = json.dumps({"pid": os.getpid(), "start": process_start(os.getpid()), "host": socket.gethostname(),
                              "started": dt.datetime.now().isoformat(timespec="seconds"),
                              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500]})
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder_text.encode(), 0)
    try:
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StageOutputs:
    """The outputs of one stage, which change together or not at all.

    Used as a context manager around the whole stage: entering takes the lock of the output
    folder (`folder_lock`: a second run of the same stage on the same folder stops at once
    with exit code 4) and removes what killed runs left (`clean_leftovers`).

    `commit()` yields a fresh generation folder, `FOLDER/.generations/STAGE/ID/`, for the
    stage to write every output into; when the block ends it records their checksums
    (`generation.json`) and switches them all with one atomic rename of the symbolic link
    `FOLDER/.generations/STAGE/current`. Each public path (`data/outputs/scores.parquet`,
    `reports/features_summary.json`, ...) is a symbolic link to `.../STAGE/current/NAME`,
    so users, notebooks and DVC read the files where they always were, and a reader, or a
    run killed at any instant, sees one complete generation: the old one or the new one.
    A public path found as a plain file (the first run of this version, or DVC copying a
    cached metric back) is first adopted into a generation of its own, with the same content,
    so the switch stays one rename. Older generations are removed after the switch.
    """

    def __init__(self, stage: str, paths: Mapping[str, str | Path], progress: Callable[[str], None] | None = None,
                 optional: Iterable[str] = ()):
        self.stage = stage
        self.paths = {name: Path(path) for name, path in paths.items()}
        if not self.paths:
            raise ValueError("a stage has at least one output")
        self.optional = frozenset(optional)
        """Outputs a run may leave out (e.g. a plot drawn only when there are customer values): absent in
        a generation, their public path is removed once that generation is current."""
        self.folder = next(iter(self.paths.values())).parent
        self.store = self.folder / GENERATIONS_DIR / stage
        self._say = progress or (lambda message: None)
        self._lock: Any = None
        self._files: dict[str, Path] = {}
        self._digests: dict[str, tuple[tuple[int, int], str]] = {}

    # -- lock and leftovers
    def __enter__(self) -> StageOutputs:
        self._lock = folder_lock(self.folder, self.stage)
        self._lock.__enter__()
        try:
            removed = clean_leftovers(self.paths, self.stage)
        except BaseException:
            self._lock.__exit__(*sys.exc_info())
            raise
        if removed:
            self._say(f"removed {len(removed)} leftover(s) of killed runs: "
                      + ", ".join(str(path) for path in removed[:5]) + (" ..." if len(removed) > 5 else ""))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.__exit__(*exc)
            self._lock = None

    # -- reading
    def current(self) -> Path | None:
        """The current generation's folder, if there is one."""
        name = _read_current(self.store)
        return self.store / name if name else None

    def sha256(self, name: str) -> str:
        """SHA-256 of output `name` as written in the open commit (computed once per content)."""
        path = self._files[name]
        info = path.stat()
        key = (info.st_size, info.st_mtime_ns)
        cached = self._digests.get(name)
        if cached is None or cached[0] != key:
            cached = (key, file_sha256(path))
            self._digests[name] = cached
        return cached[1]

    # -- the commit
    @contextmanager
    def commit(self) -> Iterator[dict[str, Path]]:
        """Yield `name -> path` in a new generation; on success every public path shows it at once.

        If the block fails, the new generation is removed and the public paths keep the
        previous outputs. An OSError names the output folder when it names no file.
        """
        generation = self.store / f"{time.time_ns():x}.{process_token()}"
        try:
            generation.mkdir(parents=True)
            self._files = {name: generation / name for name in self.paths}
            yield dict(self._files)
            fault_point("commit.files", generation)
            self._publish(generation)
        except BaseException as error:
            if _read_current(self.store) != generation.name:
                shutil.rmtree(generation, ignore_errors=True)
                for empty in (self.store, self.store.parent):
                    try:
                        empty.rmdir()
                    except OSError:
                        break
            if isinstance(error, OSError):
                error.filename = self._public_name(error.filename, generation)
            raise
        finally:
            self._files = {}

    def _public_name(self, filename: object, generation: Path) -> str:
        """The path to show for an OSError: the public path of a file of the generation, else the folder."""
        if filename is None:
            return str(self.folder)
        try:
            inside = Path(str(filename)).relative_to(generation).parts
        except ValueError:
            return str(filename)
        return str(self.paths[inside[0]]) if inside and inside[0] in self.paths else str(self.folder)

    def _link_text(self, name: str) -> str:
        """What public path `name` links to: `.../STAGE/current/NAME`, relative to the link's folder."""
        target = Path(os.path.realpath(self.store)) / CURRENT / name
        return os.path.relpath(target, os.path.realpath(self.paths[name].parent))

    def _is_ours(self, name: str) -> bool:
        path = self.paths[name]
        try:
            return path.is_symlink() and os.readlink(path) == self._link_text(name)
        except OSError:
            return False

    def _link(self, name: str) -> None:
        """Make public path `name` our link, with one rename (a reader sees the old file or the link)."""
        path = self.paths[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{temp_prefix(path.name)}link")
        tmp.unlink(missing_ok=True)
        os.symlink(self._link_text(name), tmp)
        os.replace(tmp, path)

    def _record(self, generation: Path, sources: dict[str, Path | None]) -> None:
        """Write the generation's record: each file's size and sha256, and where it is published."""
        files = {}
        for name, path in sources.items():
            if path is None:
                continue
            files[name] = {"path": str(self.paths[name]), "bytes": path.stat().st_size,
                           "sha256": self.sha256(name) if name in self._files and self._files[name] == path
                           else file_sha256(path)}
        record = {"stage": self.stage, "generation": generation.name, "files": files,
                  "pid": os.getpid(), "host": socket.gethostname()}
        (generation / GENERATION_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n",
                                                   encoding="utf-8")

    def _switch(self, generation: Path) -> None:
        """Point `current` at `generation` with one rename."""
        tmp = self.store / f"{temp_prefix(CURRENT)}link"
        tmp.unlink(missing_ok=True)
        os.symlink(generation.name, tmp)
        os.replace(tmp, self.store / CURRENT)
        _fsync(self.store)

    def _adopt(self) -> None:
        """Public paths that are plain files (or other links) become ours, each showing the same content.

        Their files, and the current generation's files behind the paths already ours, are
        hard-linked (copied across file systems) into a new generation that becomes current;
        then each plain path is replaced by our link. At every step each path shows what it did.
        """
        foreign = [name for name, path in self.paths.items()
                   if (path.exists() or path.is_symlink()) and not self._is_ours(name)]
        if not foreign:
            return
        fault_point("commit.adopt")
        adopted = self.store / f"{time.time_ns():x}.{process_token()}.adopted"
        adopted.mkdir(parents=True)
        current = self.current()
        sources: dict[str, Path | None] = {}
        for name, path in self.paths.items():
            source = (Path(os.path.realpath(path)) if name in foreign else
                      (current / name if current is not None else None))
            if source is None or not source.is_file():
                sources[name] = None
                continue
            try:
                os.link(source, adopted / name)
            except OSError:
                shutil.copy2(source, adopted / name)
            sources[name] = adopted / name
        self._record(adopted, sources)
        fault_point("commit.adopt.switch")
        self._switch(adopted)
        for name in foreign:
            fault_point(f"commit.adopt.link:{name}")
            self._link(name)

    def _publish(self, generation: Path) -> None:
        written = {name: path for name, path in self._files.items() if path.is_file()}
        missing = [name for name in self._files if name not in written and name not in self.optional]
        if missing:
            raise ValueError(f"stage {self.stage} did not write {', '.join(missing)}")
        for path in written.values():
            os.chmod(path, 0o666 & ~current_umask())
            _fsync(path)
        self._record(generation, {name: written.get(name) for name in self._files})
        os.chmod(generation, 0o777 & ~current_umask())
        _fsync(generation)
        fault_point("commit.record")
        self._adopt()
        for name in written:
            if not self._is_ours(name):  # missing so far: a link to a file the current generation lacks
                fault_point(f"commit.link:{name}")
                self._link(name)
        fault_point("commit.swap")
        self._switch(generation)
        fault_point("commit.swapped")
        for name in self.paths:  # an optional output this generation lacks: no dangling public link
            if name not in written and self._is_ours(name):
                fault_point(f"commit.unlink:{name}")
                self.paths[name].unlink(missing_ok=True)
        for entry in self.store.iterdir():
            if entry.name not in (CURRENT, generation.name) and not entry.name.startswith("."):
                _remove(entry)
        fault_point("commit.cleaned")


def current_paths(stage: str, paths: Mapping[str, str | Path]) -> dict[str, Path]:
    """Where to read the outputs of `stage` so that they all come from one generation.

    The public paths lead through the `current` link, which a new commit may switch between
    two reads; this reads the link once and gives each output's path inside that generation.
    A public path that is not the stage's link (a plain file put there since, or an output of
    an older version) is returned as it is, so the reader sees what the user sees there.
    """
    outputs = StageOutputs(stage, paths)
    current = outputs.current()
    if current is None:
        return dict(outputs.paths)
    return {name: current / name if outputs._is_ours(name) else path for name, path in outputs.paths.items()}


def read_generation(stage: str, paths: Mapping[str, str | Path]) -> dict[str, Any]:
    """The generation the public paths of `stage` show now, checked; raises StageError if they are not one.

    Every path must lead to a file of the same generation whose size and sha256 match that
    generation's record. For tests and for readers that want the proof.
    """
    outputs = StageOutputs(stage, paths)
    current = outputs.current()
    if current is None:
        raise StageError(f"no generation of {stage} outputs in {outputs.store}")
    record = json.loads((current / GENERATION_RECORD).read_text(encoding="utf-8"))
    for name, path in outputs.paths.items():
        resolved = Path(os.path.realpath(path))
        entry = record["files"].get(name)
        if entry is None:
            if path.exists():
                raise StageError(f"{path} is not in generation {current.name} of {stage}")
            continue
        if resolved.parent != Path(os.path.realpath(current)):
            raise StageError(f"{path} leads to {resolved}, not to generation {current.name} of {stage}")
        if file_sha256(resolved) != entry["sha256"]:
            raise StageError(f"{path} does not match the sha256 recorded for generation {current.name}")
    return record

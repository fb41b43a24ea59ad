"""File I/O shared by every stage: atomic writes, spreadsheet-safe CSV and small JSON helpers.

Every output is written to a temporary file in the same folder and renamed into place,
so a killed run never leaves a half-written file and the previous output survives.
Outputs get the permissions the umask gives any new file (0644 under the usual 022),
not the private 0600 / 0700 of the temporary names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import numbers
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it 0600; a new file is 0666 - umask
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; swap it in for `path` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700; a new folder is 0777 - umask
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
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


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame to UTF-8 CSV atomically, without the pandas index, safe to open in a spreadsheet.

    See `to_safe_csv`: text cells pass through `excel_safe`, so every record is one row
    and no cell runs as a formula.
    """
    with atomic_path(path, ".csv") as tmp:
        to_safe_csv(frame, tmp)
    return Path(path)


def to_safe_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """The project's one way to write a CSV (not atomic: give it a temporary path, as `write_csv` does).

    UTF-8, "\\n" between records, no index; text cells guarded by `excel_safe`. A field
    holding a line break, a double quote or a comma is quoted (Python's csv writer quotes
    the delimiter, the quote and the line terminator; `excel_safe` has turned a lone
    carriage return into a line feed, which Python 3.11's writer would not quote).
    """
    excel_safe(frame).to_csv(path, index=False, encoding="utf-8", lineterminator="\n")


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

"""File I/O shared by every stage: atomic writes and small JSON helpers.

Every output is written to a temporary file in the same folder and renamed into place,
so a killed run never leaves a half-written file and the previous output survives.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


class StageError(Exception):
    """A stage cannot run: a missing upstream output, a refused model, and so on. Message says what to do."""


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
    """Write a frame to UTF-8 CSV atomically, without the pandas index."""
    with atomic_path(path, ".csv") as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
    return Path(path)


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


EXCEL_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def excel_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula get a leading apostrophe.

    Only text columns are touched: numbers (including negative ones) stay numbers.
    """
    columns = {}
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_string_dtype(series) or series.dtype == object:
            text = series.astype("str").where(series.notna())
            risky = text.str.startswith(EXCEL_FORMULA_PREFIXES, na=False)
            if risky.any():
                columns[name] = text.where(~risky, "'" + text)
    return frame.assign(**columns) if columns else frame

"""Compiled prediction: `churn score`'s LightGBM models run as machine code (lleaves), kept in a cache.

LightGBM walks every tree node by node for every row; lleaves compiles a model's trees to native code
with LLVM. On the 1M-customer bank's models (churn 879 trees, 30 and 60 days 861 and 647, value 356, the
uplift learners 1,037), predicting is several times faster (README "Compiled prediction", measured by
`benchmarks/bench_score.py`). Compiling costs about 19 s per 1,000 trees on this machine (71 s for the 1M models' 3,780), once per model and machine:
the code is cached in `scoring.compiled_prediction.cache_dir`, keyed by the model's text, the compiler's
versions and this CPU, so a scheduled job scoring with the same champion finds it there.

Compiled code sums the trees in another order than LightGBM (the scores differ by about 1e-14), so
whether it is used is decided by the number of customers alone (`min_rows`), never by what the cache
holds: the same data, config and models give the same bytes. Each compiled model is checked against
LightGBM on the first rows it predicts before it is trusted; a model lleaves cannot compile, or whose
compiled scores differ from LightGBM's by more than 1e-9, stays on LightGBM, and the stage says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

CHECK_ROWS = 1_000
"""Rows of the first batch each compiled model is checked on against LightGBM."""
TOLERANCE = 1e-9
"""Largest difference from LightGBM's prediction (relative above 1) a compiled model may show."""


def default_cache_dir() -> Path:
    """churn-care/compiled in the user's cache folder (XDG_CACHE_HOME, else ~/.cache)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "churn-care" / "compiled"


class _Rows:
    """The last model matrix converted to the float array compiled code reads, shared by every model of a
    batch (they all see the same matrix): converting a frame with categoricals costs more than a small
    model's prediction."""

    def __init__(self) -> None:
        self.matrix: pd.DataFrame | None = None
        self.categories: Any = None
        self.array: np.ndarray | None = None

    def of(self, matrix: Any, categories: Any) -> np.ndarray:
        from lleaves.data_processing import data_to_ndarray

        if matrix is not self.matrix or categories != self.categories:
            self.matrix, self.categories = matrix, categories
            self.array = np.ascontiguousarray(data_to_ndarray(matrix, categories), dtype=np.float64)
        assert self.array is not None
        return self.array


class CompiledBooster:
    """A LightGBM booster whose plain predictions (`predict(matrix, num_threads=...)`) run compiled;
    everything else (TreeSHAP contributions, leaves, raw scores, params) is the booster's own."""

    def __init__(self, booster: lgb.Booster, compiled: Any, rows: _Rows, name: str,
                 notes: dict[str, str]) -> None:
        self.booster, self.compiled, self.rows, self.name, self.notes = booster, compiled, rows, name, notes
        self.checked = False

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.booster, attribute)

    def predict(self, data: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        threads = kwargs.pop("num_threads", None)
        if args or kwargs or self.compiled is None:
            if threads is not None:
                kwargs["num_threads"] = threads
            return self.booster.predict(data, *args, **kwargs)
        array = self.rows.of(data, self.compiled._pandas_categorical)
        if not self.checked:
            self._check(data, array, threads)
            if self.compiled is None:
                return self.booster.predict(data, num_threads=threads or 1)
        return self.compiled.predict(array, n_jobs=threads or 1)

    def _check(self, data: Any, array: np.ndarray, threads: int | None) -> None:
        """Compare the first rows with LightGBM's; on a difference, predict with LightGBM from now on."""
        self.checked = True
        head = slice(0, min(CHECK_ROWS, len(array)))
        expected = self.booster.predict(data.iloc[head] if isinstance(data, pd.DataFrame) else data[head],
                                        num_threads=threads or 1)
        got = self.compiled.predict(array[head], n_jobs=1)
        gap = float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected)))) if len(got) else 0.0
        if not gap <= TOLERANCE:
            self.compiled = None
            self.notes[self.name] = (f"LightGBM: the compiled model's scores differ from LightGBM's by {gap:.3g} "
                                     f"(more than {TOLERANCE:g}) on the first {len(got)} rows")


def compile_booster(booster: lgb.Booster, cache_dir: Path) -> tuple[Any, bool]:
    """The booster compiled by lleaves, from the cache when there (else compiled and stored there
    atomically); and whether it came from the cache."""
    import llvmlite.binding as llvm
    import lleaves

    text = booster.model_to_string()
    machine = f"{llvm.get_process_triple()} {llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}"
    versions = f"lleaves {_version('lleaves')} llvmlite {_version('llvmlite')}"
    key = hashlib.sha256("\n".join((text, machine, versions)).encode()).hexdigest()[:32]
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = cache_dir / f"{key}.o"
    with tempfile.TemporaryDirectory(dir=cache_dir) as work:
        model_file = Path(work) / "model.txt"
        model_file.write_text(text)
        model = lleaves.Model(model_file=str(model_file))
        hit = cached.is_file()
        if hit:
            model.compile(cache=str(cached))
        else:  # compile to a file of our own, then move it in: another process may be compiling the same model
            fresh = Path(work) / "compiled.o"
            model.compile(cache=str(fresh))
            os.replace(fresh, cached)
    return model, hit


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def compiled_models(models: dict[str, Any], rows: int, min_rows: int | None, cache_dir: str | None,
                    say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, object]]:
    """`models` (name: a loaded model of models/, or None) with their LightGBM boosters compiled when at
    least `min_rows` customers are scored, and what was done (for the manifest). Copies; the models
    passed in are not changed."""
    info: dict[str, object] = {"min_rows": min_rows, "rows": rows}
    if min_rows is None or rows < min_rows:
        info["used"] = False
        info["why"] = ("scoring.compiled_prediction.min_rows is null" if min_rows is None
                       else f"{rows:,} customers, below scoring.compiled_prediction.min_rows ({min_rows:,})")
        return models, info
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    shared, notes, counts = _Rows(), {}, {"compiled": 0, "from_cache": 0, "trees": 0}
    start = time.perf_counter()

    def compiled(booster: lgb.Booster, name: str) -> lgb.Booster | CompiledBooster:
        try:
            model, hit = compile_booster(booster, folder)
        except Exception as error:  # noqa: BLE001 - any model lleaves cannot take stays on LightGBM
            notes[name] = f"LightGBM: lleaves could not compile it ({type(error).__name__}: {str(error)[:200]})"
            return booster
        counts["from_cache" if hit else "compiled"] += 1
        counts["trees"] += booster.num_trees()
        return CompiledBooster(booster, model, shared, name, notes)

    say(f"compiling the models' trees to machine code (scoring.compiled_prediction; {rows:,} customers), cache {folder}")
    out = {name: None if model is None else _with_compiled(model, name, compiled) for name, model in models.items()}
    # the manifest's part: the same whatever the cache held (how long it took and the cache hits are only said)
    info.update({"used": True, "cache_dir": str(folder), "boosters": counts["compiled"] + counts["from_cache"],
                 "trees": counts["trees"], "not_compiled": notes})
    say(f"{info['boosters']} boosters compiled ({counts['from_cache']} from the cache, {counts['trees']:,} trees) "
        f"in {time.perf_counter() - start:.1f} s" + (f"; not compiled: {notes}" if notes else ""))
    return out, info


def _with_compiled(model: Any, name: str, compiled: Callable[[lgb.Booster, str], Any]) -> Any:
    """A copy of `model` (a dataclass of models/) whose LightGBM boosters, wherever they sit (a `booster`
    field, a dict of boosters, or nested models), are passed through `compiled`."""
    if isinstance(model, lgb.Booster):
        return compiled(model, name)
    if isinstance(model, dict):
        return {key: _with_compiled(value, f"{name}.{key}", compiled) for key, value in model.items()}
    if not dataclasses.is_dataclass(model) or isinstance(model, type):
        return model
    changes = {}
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        if isinstance(value, (lgb.Booster, dict)) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
            changes[field.name] = _with_compiled(value, f"{name}.{field.name}", compiled)
    return dataclasses.replace(model, **changes) if changes else model

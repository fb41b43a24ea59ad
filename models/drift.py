"""Population stability index (PSI): how far today's features moved from the training data.

The training reference (decile edges and shares per feature, level shares for categoricals)
is kept with the model so the scoring job can compare without the training table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BINS = 10
FLOOR = 1e-4


def reference_profile(matrix: pd.DataFrame) -> dict[str, object]:
    """Bin edges and shares of each feature in the training matrix (missing values get their own bin)."""
    profile: dict[str, object] = {}
    for name in matrix.columns:
        column = matrix[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            shares = _levels(column).value_counts(normalize=True)
            profile[name] = {"kind": "categorical",
                             "shares": {str(k): float(v) for k, v in sorted(shares.items())}}
            continue
        values = column.to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, BINS + 1)[1:-1])) if len(finite) else np.array([])
        profile[name] = {"kind": "numeric", "edges": [float(e) for e in edges],
                         "shares": [float(s) for s in _numeric_shares(values, edges)]}
    return profile


def _levels(column: pd.Series) -> pd.Series:
    """A categorical column's values as text, missing ones as the level `<missing>`."""
    return column.astype("str").where(column.notna(), "<missing>")


def _level_counts(column: pd.Series) -> dict[str, int]:
    """Rows per level of `_levels(column)` (levels with rows only); a categorical counted by its codes."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return {str(level): int(count) for level, count in _levels(column).value_counts().items()}
    names = ["<missing>", *column.cat.categories.astype("str")]
    counts: dict[str, int] = {}
    for level, count in zip(names, np.bincount(column.cat.codes.to_numpy().astype(np.int64) + 1,
                                               minlength=len(names))):
        if count:
            counts[level] = counts.get(level, 0) + int(count)
    return counts


def _numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows per bin between `edges`, then the missing (non-finite) rows."""
    missing = ~np.isfinite(values)
    bins = np.searchsorted(edges, values[~missing], side="right")
    return np.append(np.bincount(bins, minlength=len(edges) + 1), missing.sum())


def _numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return _numeric_counts(values, edges).astype(float) / max(len(values), 1)


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.maximum(expected, FLOOR)
    actual = np.maximum(actual, FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class DriftCounts:
    """Per-feature bin counts of scoring rows against the training reference, added batch by batch.

    The counts of a table added in batches are the counts of the whole table, so its PSI is the
    same to the last bit; memory is the counts only (the scoring stage streams its matrix).
    """

    def __init__(self, reference: dict[str, object]) -> None:
        self.reference = reference
        self.rows = 0
        self.numeric: dict[str, np.ndarray] = {}
        self.categorical: dict[str, dict[str, int]] = {}

    def add(self, matrix: pd.DataFrame) -> "DriftCounts":
        """Count the rows of one batch of the model matrix (features the reference lacks are ignored)."""
        self.rows += len(matrix)
        for name, profile in self.reference.items():
            if name not in matrix.columns:
                continue
            column = matrix[name]
            if profile["kind"] == "categorical":  # type: ignore[index]
                counts = self.categorical.setdefault(name, {})
                for level, count in _level_counts(column).items():
                    counts[level] = counts.get(level, 0) + count
            else:
                edges = np.asarray(profile["edges"], dtype=float)  # type: ignore[index]
                self.numeric[name] = self.numeric.get(name, 0) + _numeric_counts(column.to_numpy(dtype=float), edges)
        return self

    def stability(self) -> pd.DataFrame:
        """PSI per feature counted so far, largest first."""
        rows = []
        for name, profile in self.reference.items():
            if profile["kind"] == "categorical":  # type: ignore[index]
                if name not in self.categorical:
                    continue
                expected_shares: dict[str, float] = profile["shares"]  # type: ignore[index]
                counts = self.categorical[name]
                total = sum(counts.values())
                levels = sorted(set(expected_shares) | set(counts))
                expected = np.array([expected_shares.get(level, 0.0) for level in levels])
                actual = np.array([counts[level] / total if level in counts else 0.0 for level in levels])
            else:
                if name not in self.numeric:
                    continue
                expected = np.asarray(profile["shares"], dtype=float)  # type: ignore[index]
                actual = self.numeric[name].astype(float) / max(self.rows, 1)
            rows.append({"feature": name, "psi": _psi(expected, actual)})
        frame = pd.DataFrame(rows, columns=["feature", "psi"])
        return frame.sort_values(["psi", "feature"], ascending=[False, True], ignore_index=True)


def population_stability(reference: dict[str, object], matrix: pd.DataFrame) -> pd.DataFrame:
    """PSI per feature of `matrix` against the training reference, largest first."""
    return DriftCounts(reference).add(matrix).stability()

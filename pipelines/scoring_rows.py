"""The scoring table's rows as the score stage reads them: all of them in batches, then a few by position.

On the pandas engine the table is already in memory (`InMemoryRows`). On DuckDB or Spark it comes from
the engine in pieces and is spooled to a Parquet file in a temporary folder as it comes
(`SpooledRows`), so that the stage holds one batch of feature rows (plus the narrow per-customer
scores), not the whole table: at 10M customers that table is about 6 GB in pandas, and held beside
the engine's own memory it was the score stage's peak. Rows are numbered 0..n-1 in the table's order
(customer id order) in both, and every batch and row keeps that number as its index.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.io import StageError, write_frames


class InMemoryRows:
    """A scoring table held in memory (the pandas engine's)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame.reset_index(drop=True)  # positions as the index (no copy of the data)
        self.head = self.frame.iloc[:0]
        """No rows, every column with its type: what the stage's checks look at."""

    def __len__(self) -> int:
        return len(self.frame)

    def batches(self, rows: int) -> Iterator[pd.DataFrame]:
        """Consecutive batches of `rows` rows (the last one shorter)."""
        for start in range(0, len(self.frame), rows):
            yield self.frame.iloc[start:start + rows]

    def take(self, positions: Sequence[int]) -> pd.DataFrame:
        """The rows at `positions`, in that order, indexed by their positions."""
        return self.frame.loc[list(positions)]

    def close(self) -> None:
        pass


class SpooledRows:
    """A scoring table written to a Parquet file as its pieces arrive, then read back batch by batch.

    Written by `pipelines.io.write_frames` (one row group per piece, later pieces cast to the first's
    types). Parquet keeps every value and type (ints, floats, text, times); a categorical column comes
    back with the categories found in the file, which the models do not depend on (they map categories
    by their text: `models.data.FeatureSchema.matrix`). The folder is removed by `close`.
    """

    def __init__(self, pieces: Iterable[pd.DataFrame], scratch: Path) -> None:
        scratch.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="churn-care-score-", dir=scratch))
        self.path = self.folder / "scoring-rows.parquet"
        self.head: pd.DataFrame | None = None

        def first(piece: pd.DataFrame) -> None:
            if self.head is None:
                self.head = piece.iloc[:0]

        try:
            self.rows = write_frames(pieces, self.path, on_frame=first)
        except BaseException:
            self.close()
            raise
        if self.head is None:
            self.close()
            raise StageError("internal check failed: the engine gave no scoring table, not even an empty one")

    def __len__(self) -> int:
        return self.rows

    def batches(self, rows: int) -> Iterator[pd.DataFrame]:
        """Consecutive batches of exactly `rows` rows (the last one shorter), whatever the file's row groups."""
        if not self.rows:
            return
        start = 0
        for table in _exact(pq.ParquetFile(self.path).iter_batches(batch_size=rows), rows):
            frame = table.to_pandas()
            frame.index = pd.RangeIndex(start, start + len(frame))
            start += len(frame)
            yield frame

    def take(self, positions: Sequence[int]) -> pd.DataFrame:
        """The rows at `positions`, in that order, indexed by their positions; reads only the row groups
        that hold them, one at a time."""
        wanted = np.asarray(positions, dtype=np.int64)
        if not len(wanted):
            return self.head.copy() if self.head is not None else pd.DataFrame()
        if wanted.min() < 0 or wanted.max() >= self.rows:
            raise IndexError(f"row positions outside 0..{self.rows - 1}")
        file = pq.ParquetFile(self.path)
        bounds = np.cumsum([0, *(file.metadata.row_group(i).num_rows for i in range(file.num_row_groups))])
        unique = np.unique(wanted)
        group_of = np.searchsorted(bounds, unique, side="right") - 1
        parts: list[pd.DataFrame] = []
        for group in np.unique(group_of):
            local = unique[group_of == group]
            part = file.read_row_group(int(group)).take(pa.array(local - bounds[group])).to_pandas()
            part.index = pd.Index(local)
            parts.append(part)
        found = pd.concat(parts) if len(parts) > 1 else parts[0]
        return found.loc[wanted]

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _exact(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """`batches` regrouped into tables of exactly `rows` rows (the last one shorter)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            part = batch.slice(0, rows - held)
            pending.append(part)
            held += part.num_rows
            batch = batch.slice(part.num_rows)
            if held == rows:
                yield pa.Table.from_batches(pending)
                pending, held = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


ScoringRows = InMemoryRows | SpooledRows
"""Either kind: the score stage reads both alike."""

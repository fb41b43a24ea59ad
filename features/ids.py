"""Membership tests on customer ids that stay fast on pandas 3's Arrow-backed strings.

`Series.isin(values)` on a `str` Series turns every one of `values` into a pyarrow scalar first
(pandas 3.1 `ArrowStringArray.isin`): about 9 us a value, 4.3 s to test 1M ids against 500k
(0.03 s with Arrow's `is_in`). The features stage tested every customer against the active ones
at each cutoff that way. `is_in` gives the same answers (a missing id matches a missing one).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def _as_text(values: pd.Series | pd.Index | np.ndarray | Collection[object]) -> pa.Array:
    if not isinstance(values, (pd.Series, pd.Index, np.ndarray)):
        values = list(values)
    array = pa.array(pd.Series(values, dtype="str") if not isinstance(values, (pd.Series, pd.Index))
                     else values.astype("str"), from_pandas=True)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def is_in(values: pd.Series | pd.Index | np.ndarray, candidates: pd.Series | pd.Index | np.ndarray | Collection[object]
          ) -> np.ndarray:
    """Whether each of `values` is one of `candidates`, compared as text (`Series.isin`, fast)."""
    found = pc.is_in(_as_text(values), value_set=_as_text(candidates))
    return found.to_numpy(zero_copy_only=False).astype(bool, copy=False)

"""`features.ids.is_in` answers exactly as `Series.isin` (it exists only to be fast on pandas 3 strings)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.ids import is_in


@pytest.mark.parametrize("candidates", [["b", "007", None], {"b"}, pd.Index(["c", "7"]), np.array([], dtype=object),
                                        pd.Series(["a", "b", "c", None], dtype="str")])
def test_is_in_answers_as_isin(candidates) -> None:
    values = pd.Series(["a", None, "b", "c", "007", "7", "b"], dtype="str")
    expected = values.isin(list(candidates) if isinstance(candidates, set) else candidates).to_numpy()
    got = is_in(values, candidates)
    assert got.dtype == bool and np.array_equal(got, expected)


def test_is_in_compares_numbers_as_text() -> None:
    assert is_in(pd.Series([7, 8]), pd.Series(["7"])).tolist() == [True, False]

"""`features.ids.is_in` answers exactly as `Series.isin` (it exists only to be fast on pandas 3 strings)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.ids import IdSet, is_in


@pytest.mark.parametrize("candidates", [["b", "007", None], {"b"}, pd.Index(["c", "7"]), np.array([], dtype=object),
                                        pd.Series(["a", "b", "c", None], dtype="str")])
def test_is_in_answers_as_isin(candidates) -> None:
    values = pd.Series(["a", None, "b", "c", "007", "7", "b"], dtype="str")
    expected = values.isin(list(candidates) if isinstance(candidates, set) else candidates).to_numpy()
    got = is_in(values, candidates)
    assert got.dtype == bool and np.array_equal(got, expected)


def test_is_in_compares_numbers_as_text() -> None:
    assert is_in(pd.Series([7, 8]), pd.Series(["7"])).tolist() == [True, False]


@pytest.mark.parametrize("make_id", [lambda i: f"C{i:07d}", lambda i: f"id-{i}"])
def test_an_id_set_answers_as_is_in_does(make_id) -> None:
    """Fixed-width ids (hashed here) and variable ones (Arrow's lookup); text, numbers and missing
    values on either side; asked batch after batch of one set."""
    rng = np.random.default_rng(3)
    ids = pd.Series([make_id(int(i)) for i in rng.choice(5_000, 1_500, replace=False)], dtype="str")
    values = pd.Series([make_id(int(i)) for i in rng.integers(0, 6_000, 4_000)] + [None], dtype="str")
    members = IdSet(ids)
    for start in range(0, len(values), 1_000):
        batch = values[start:start + 1_000]
        np.testing.assert_array_equal(members.contains(batch), is_in(batch, ids))
    np.testing.assert_array_equal(members.contains(values), values.isin(set(ids)))
    assert members.contains(values).sum() > 500
    with_missing = pd.concat([ids, pd.Series([None], dtype="str")])
    np.testing.assert_array_equal(IdSet(with_missing).contains(values), is_in(values, with_missing))
    numbers = np.array([7, 12, 7, 3])
    np.testing.assert_array_equal(IdSet(pd.Series(["7", "3"])).contains(numbers), is_in(numbers, ["7", "3"]))

"""The generator-truth reader reads only the rows asked for and gives what a whole-file merge gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.truth import HAZARD_FILE, customer_truth, hazard_at


def test_hazard_rows_are_those_of_the_whole_file_aligned_with_the_keys(generated_bank: Path) -> None:
    truth = generated_bank / "_truth"
    whole = pd.read_parquet(truth / HAZARD_FILE, columns=["customer_id", "month_start", "hazard", "decided_to_leave"])
    some = whole.sample(400, random_state=3)
    # keys in a shuffled order, on a non-default index, with a repeat and two rows the truth has not
    keys = pd.DataFrame({"customer_id": [*some["customer_id"], some["customer_id"].iloc[0], "nobody",
                                         some["customer_id"].iloc[1]],
                         "cutoff": [*some["month_start"], some["month_start"].iloc[0], some["month_start"].iloc[0],
                                    pd.Timestamp("1990-01-01")]},
                        index=np.arange(403)[::-1] * 7)
    got = hazard_at(keys, truth, ["hazard", "decided_to_leave"])
    assert got is not None and got.index.equals(keys.index)
    expected = keys.merge(whole.rename(columns={"month_start": "cutoff"}).astype({"customer_id": "str"}),
                          on=["customer_id", "cutoff"], how="left")
    np.testing.assert_array_equal(got["hazard"].to_numpy(dtype=float), expected["hazard"].to_numpy(dtype=float))
    assert got["hazard"].iloc[:401].notna().all() and got["hazard"].iloc[401:].isna().all()
    assert got["decided_to_leave"].iloc[:401].tolist() == expected["decided_to_leave"].iloc[:401].tolist()


def test_customer_truth_is_aligned_and_none_without_the_truth(generated_bank: Path, tmp_path: Path) -> None:
    truth = generated_bank / "_truth"
    whole = pd.read_parquet(truth / "customers.parquet", columns=["customer_id", "true_contact_effect"])
    ids = pd.Series([*whole["customer_id"].iloc[[5, 2, 5]], "nobody"], index=[10, 11, 12, 13])
    got = customer_truth(ids, truth, ["true_contact_effect"])
    assert got is not None and got.index.equals(ids.index)
    effect = whole.set_index("customer_id")["true_contact_effect"]
    assert got["true_contact_effect"].iloc[:3].tolist() == [effect.iloc[5], effect.iloc[2], effect.iloc[5]]
    assert np.isnan(got["true_contact_effect"].iloc[3])
    assert hazard_at(pd.DataFrame({"customer_id": ["a"], "cutoff": [pd.Timestamp("2025-01-01")]}), tmp_path,
                     ["hazard"]) is None
    assert customer_truth(ids, tmp_path, ["true_contact_effect"]) is None

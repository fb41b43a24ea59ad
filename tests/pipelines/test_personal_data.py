"""Issue 13, item 8: personal data must not reach MLflow through the model's input example or features.

`synthetic_example` builds the input example MLflow stores beside each model: it must be no real
customer (no row equal to a training row, numbers only at quartiles, no identifier column).
Identifier-like static features (`full_name`) are refused before anything is fitted: see the
`full_name as a static feature` example of tests/test_exit_codes.py (exit 2, naming the key).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.data import FeatureSchema
from pipelines.train import synthetic_example


def test_input_example_is_no_real_customer() -> None:
    rng = np.random.default_rng(3)
    table = pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(500)],
                          "balance": rng.normal(1000, 300, 500).round(2), "tenure_days": rng.integers(1, 4000, 500),
                          "segment": rng.choice(["mass", "affluent", "private"], 500)})
    schema = FeatureSchema(("balance", "tenure_days", "segment"), {"segment": ("affluent", "mass", "private")})
    example = synthetic_example(schema, table)
    assert list(example.columns) == ["balance", "tenure_days", "segment"]  # no id, no other column
    real_rows = set(map(tuple, table[["balance", "tenure_days", "segment"]].astype(str).to_numpy()))
    assert not any(tuple(row) in real_rows for row in example.astype(str).to_numpy())
    for name in ("balance", "tenure_days"):
        quartiles = np.quantile(table[name].to_numpy(dtype=float), np.linspace(0.25, 0.75, len(example))).round(2)
        assert example[name].tolist() == quartiles.tolist()
    assert set(example["segment"]) <= set(schema.categorical["segment"])

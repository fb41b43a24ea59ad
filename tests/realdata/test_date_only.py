"""Date-only exports: an event on the cutoff day is counted exactly once.

Most real exports carry dates without times. With half-open windows [start, end) an event
dated on the cutoff day belongs to what comes after the cutoff: it is in that cutoff's
label window and in the features of the next cutoff, never in both and never in neither.

The real retail purchase log, exported as a user with a date-only system would (times cut
off, the file written as CSV and read back through the project's own loader), checks the
identity exactly: with a 30-day horizon, the label window [c, c + 30 days) of cutoff c is
the 30-day feature window of cutoff c + 30 days, so each customer's `future_value` at c
equals their `transaction_amount_30d` at c + 30 days, and the purchases dated on day c
itself are in the first and not in the 30-day features of c.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, build_labels
from features.settings import FeatureSettings, LabelSettings
from pipelines.config import parse_config
from pipelines.tables import load_tables
from tests.realdata.datasets import RealDataset

HORIZON = 30
CUTOFFS = [pd.Timestamp("2017-04-01"), pd.Timestamp("2017-07-15"), pd.Timestamp("2017-10-01")]


@pytest.fixture(scope="module")
def date_only_tables(retail_data: RealDataset, tmp_path_factory: pytest.TempPathFactory):
    """The retail log with its timestamps cut to dates, written as CSV and loaded like a user's files."""
    folder = tmp_path_factory.mktemp("date_only")
    transactions = pd.read_csv(retail_data.transactions, dtype=str)
    transactions["transaction_timestamp"] = transactions["transaction_timestamp"].str.slice(0, 10)
    transactions.to_csv(folder / "transactions.csv", index=False)
    config = parse_config({"data": {"tables": {
        "customers": {"path": str(retail_data.customers),
                      "columns": {"customer_id": "household_id", "signup_date": "first_purchase_date"}},
        "transactions": {"path": str(folder / "transactions.csv"),
                         "columns": {"customer_id": "household_id", "timestamp": "transaction_timestamp",
                                     "amount": "sales_value"}},
    }}})
    tables = load_tables(config)
    stamps = tables.transactions["timestamp"]
    assert (stamps == stamps.dt.normalize()).all(), "the export must be date-only"
    return tables


@pytest.mark.parametrize("cutoff", CUTOFFS, ids=[str(c.date()) for c in CUTOFFS])
def test_an_event_on_the_cutoff_day_is_counted_exactly_once(date_only_tables, cutoff: pd.Timestamp) -> None:
    tables = date_only_tables
    settings = FeatureSettings(windows_days=(HORIZON, 90))
    labels = build_labels(tables, cutoff, LabelSettings(horizon_days=HORIZON)).set_index("customer_id")
    at_cutoff = build_features(tables, cutoff, settings).set_index("customer_id")
    after = build_features(tables, cutoff + pd.Timedelta(days=HORIZON), settings).set_index("customer_id")

    tx = tables.transactions
    on_the_day = tx[tx["timestamp"] == cutoff]
    assert len(on_the_day) > 50, "the real data must have purchases on the cutoff day for this test to bite"
    buyers = sorted(set(on_the_day["customer_id"]) & set(labels.index))
    assert len(buyers) > 20

    # each buyer's purchases dated on the cutoff day are in the label window of this cutoff ...
    day_amount = on_the_day.groupby("customer_id")["amount"].sum()
    window = tx[(tx["timestamp"] >= cutoff) & (tx["timestamp"] < cutoff + pd.Timedelta(days=HORIZON))]
    expected_value = window.groupby("customer_id")["amount"].sum()
    got = labels.loc[buyers, "future_value"]
    np.testing.assert_allclose(got.to_numpy(), expected_value.reindex(buyers).to_numpy(), rtol=1e-9)
    assert (got.to_numpy() >= day_amount.reindex(buyers).to_numpy() - 1e-9).all()
    # ... and not in its features: the last purchase before the cutoff is at least a day earlier
    assert (at_cutoff.loc[buyers, "days_since_last_transaction"].dropna() >= 1).all()
    before = tx[(tx["timestamp"] < cutoff) & (tx["timestamp"] >= cutoff - pd.Timedelta(days=HORIZON))]
    expected_features = before.groupby("customer_id")["amount"].sum().reindex(buyers).fillna(0.0)
    np.testing.assert_allclose(at_cutoff.loc[buyers, f"transaction_amount_{HORIZON}d"].to_numpy(),
                               expected_features.to_numpy(), rtol=1e-9, atol=1e-9)

    # the label window of cutoff c is the 30-day feature window of cutoff c + 30 days, for everyone
    both = labels.index.intersection(after.index)
    assert len(both) > 1000
    np.testing.assert_allclose(labels.loc[both, "future_value"].to_numpy(),
                               after.loc[both, f"transaction_amount_{HORIZON}d"].to_numpy(), rtol=1e-9, atol=1e-9)
    # and no buyer of the cutoff day is labelled churned under inactivity
    inactive = build_labels(tables, cutoff, LabelSettings(definition="inactivity", horizon_days=HORIZON,
                                                          inactivity_lookback_days=365)).set_index("customer_id")
    assert (inactive.loc[inactive.index.intersection(buyers), "churned"] == 0).all()

"""`churn validate` on real public data of the shapes the data contract promises.

Each test writes the config a user of that data would write (the source's column names
mapped, not renamed) and runs the real CLI on it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.realdata.datasets import RealDataset

CHURN = Path(sys.executable).parent / "churn"


def _validate(config: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = {**config, "paths": {"features_dir": str(tmp_path / "features"),
                                  "outputs_dir": str(tmp_path / "outputs"),
                                  "reports_dir": str(tmp_path / "reports")}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return subprocess.run([str(CHURN), "validate", "--config", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def _assert_valid(result: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-6000:]
    assert result.returncode == 0, f"churn validate exited {result.returncode}\n{output[-6000:]}"
    assert (tmp_path / "reports" / "validation.json").is_file(), output[-3000:]


def test_retail_purchase_log_validates(retail_data: RealDataset, tmp_path: Path) -> None:
    facts = retail_data.facts
    assert facts["customer_rows"] == 2469 and facts["transaction_rows"] == 155848
    assert facts["source_rows_dropped_without_customer_id"] == 0
    config = {
        "data": {"tables": {
            "customers": {"path": str(retail_data.customers),
                          "columns": {"customer_id": "household_id", "signup_date": "first_purchase_date"}},
            "transactions": {"path": str(retail_data.transactions),
                             "columns": {"customer_id": "household_id", "timestamp": "transaction_timestamp",
                                         "amount": "sales_value"}},
        }},
        "labels": {"definition": "inactivity"},
    }
    _assert_valid(_validate(config, tmp_path), tmp_path)


def test_tv_subscription_snapshot_validates(snapshot_data: RealDataset, tmp_path: Path) -> None:
    facts = snapshot_data.facts
    assert facts["customer_rows"] == 9379 and facts["closures"] == 449
    assert facts["last_closure"] < snapshot_data.as_of
    config = {
        "data": {"as_of": snapshot_data.as_of, "tables": {
            "customers": {"path": str(snapshot_data.customers),
                          "columns": {"customer_id": "id", "signup_date": "subscription_start",
                                      "closed_date": "cancellation_date"}},
        }},
        "labels": {"definition": "closure", "horizon_days": 181,
                   "cutoffs": {"count": 1, "anchor": "as_of"}},
    }
    _assert_valid(_validate(config, tmp_path), tmp_path)

"""A config for the session's generated bank (tests/conftest.py::generated_bank), writing to a work folder;
a small snapshot-shaped bank."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from pipelines.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def bank_config(raw: Path, work: Path, contacts: Path | None = None, light: bool = False) -> Config:
    """The default config on the generated bank; `light`: few boosting rounds and training cutoffs (fast replays)."""
    config = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    for name, table in config["data"]["tables"].items():
        table["path"] = str(raw / f"{name}.parquet")
    if contacts is not None:
        config["data"]["tables"]["contacts"]["path"] = str(contacts)
    config["paths"] = {"features_dir": str(work / "features"), "outputs_dir": str(work / "outputs"),
                       "reports_dir": str(work / "reports")}
    config["tracking"] = {"tracking_uri": f"sqlite:///{work / 'mlflow.db'}", "artifact_location": str(work / "art"),
                          "experiment": "bank"}
    config["evaluation"]["truth_dir"] = str(raw / "_truth")
    if light:
        for booster in ("booster", "value_booster"):
            config["model"][booster].update({"max_rounds": 80, "early_stopping_rounds": 15})
        config["uplift"]["booster"].update({"max_rounds": 80})
        config["backtest"]["training_cutoffs"] = 3
    return parse_config(config)


def snapshot_bank(root: Path, charge_from: float, charge_step: int) -> Path:
    """Snapshot-shaped data in `root`/raw: customers (closures included) with a `monthly_charge` (the value:
    `charge_from` plus up to 100 steps of `charge_step`) and contacts with a control group; no transactions, so
    a customer's value is `labels.customer_value_column`."""
    from pipelines.generate import run as generate

    generate(2_000, 5, root / "full", "2023-01-01", 20, "parquet")
    raw = root / "raw"
    raw.mkdir()
    customers = pd.read_parquet(root / "full" / "customers.parquet")
    customers["monthly_charge"] = [charge_from + charge_step * ((i * 37) % 100) for i in range(len(customers))]
    customers.to_parquet(raw / "customers.parquet", index=False)
    (raw / "contacts.parquet").write_bytes((root / "full" / "contacts.parquet").read_bytes())
    return raw

"""The prose docs and the config file stay in step with the code."""

from __future__ import annotations

from pathlib import Path

from features.contract import TABLES
from pipelines.config import load_config

ROOT = Path(__file__).resolve().parent.parent


def test_data_contract_doc_lists_every_contract_column() -> None:
    text = (ROOT / "docs" / "data-contract.md").read_text()
    for name, spec in TABLES.items():
        assert f"### `{name}`" in text
        for column in spec.columns:
            assert f"`{column.name}`" in text, f"{name}.{column.name} missing from docs/data-contract.md"


def test_every_committed_config_validates() -> None:
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)

"""The prose docs and the config file stay in step with the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml

from features.contract import TABLES
from pipelines.cli import app
from pipelines.config import Config, load_config

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


def dotted(value: object, prefix: str = "") -> dict[str, object]:
    """Nested mappings as `a.b.c` -> leaf value (lists and scalars are leaves)."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    flat: dict[str, object] = {}
    for key, inner in value.items():
        flat.update(dotted(inner, f"{prefix}.{key}" if prefix else str(key)))
    return flat


@pytest.mark.parametrize("section", ["scoring", "rules", "complaints"])
def test_default_config_spells_out_every_key_of_scoring_and_rules_with_the_defaults(section: str) -> None:
    """configs/default.yaml documents these sections in full, and its values are the code's defaults."""
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    written = dotted(raw[section], section)
    defaults = dotted(Config.model_fields[section].default.model_dump(mode="json"), section)
    assert sorted(set(defaults) - set(written)) == [], "keys missing from configs/default.yaml"
    assert sorted(set(written) - set(defaults)) == [], "keys in configs/default.yaml the code does not know"
    differ = {key: (written[key], defaults[key]) for key in defaults if written[key] != defaults[key]}
    assert differ == {}, "configs/default.yaml (left) differs from the code's default (right)"


def test_readme_cli_table_has_a_row_for_every_command() -> None:
    text = (ROOT / "README.md").read_text()
    cli_section = text.split("## The CLI", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in cli_section.splitlines() if line.startswith("| `churn ")]
    for command in typer.main.get_command(app).commands:
        assert any(line.startswith(f"| `churn {command}") for line in rows), f"churn {command} missing from README"
    assert len(rows) == len(typer.main.get_command(app).commands)

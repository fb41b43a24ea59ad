"""The catalogue describes exactly the columns the builders produce, and the docs page matches it."""

from __future__ import annotations

import string
from pathlib import Path

import pandas as pd

from features.build import build_features
from features.catalogue import catalogue, features_markdown, reason_templates
from features.settings import FeatureSettings
from tests.features.factories import random_tables

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = ('.venv/bin/python -c "import pathlib, features.catalogue as c; '
              "pathlib.Path('docs/features.md').write_text(c.features_markdown())\"")


def test_catalogue_lists_every_built_column_in_order() -> None:
    settings = FeatureSettings(windows_days=(14, 60, 400), complaint_categories=("fees", "system_lag", "card_problem"),
                               top_complaint_categories=2, complaint_channels=("phone",))
    features = build_features(random_tables(1), pd.Timestamp("2024-04-01"), settings)
    names = [info.name for info in catalogue(settings)]
    assert list(features.columns[2:]) == names
    assert len(set(names)) == len(names)
    assert "complaints_about_card_problem_400d" not in names and "complaints_about_other_400d" in names


def test_every_reason_template_renders_and_names_real_columns() -> None:
    settings = FeatureSettings(static_features=("segment",))
    infos = catalogue(settings)
    known = {info.name for info in infos} | {"segment", "value"}
    row = {info.name: ("x" if info.kind == "categorical" else 3.0) for info in infos} | {"segment": "mass"}
    for name, template in reason_templates(settings).items():
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        assert fields <= known, (name, fields - known)
        text = template.format_map({**row, "value": row[name]})
        assert text and "{" not in text
    for info in infos:
        assert info.description.endswith(".") and info.unit and info.family


def test_docs_page_is_generated_from_the_catalogue() -> None:
    path = ROOT / "docs" / "features.md"
    assert path.read_text(encoding="utf-8") == features_markdown(), f"docs/features.md is stale: run {REGENERATE}"

"""The `features` stage end to end: files in, parquet tables and a summary out, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features.build import build_scoring_table, build_training_table
from features.validation import ValidationFailed
from pipelines.config import Config, parse_config
from pipelines.features import run
from tests.features.factories import random_tables


def make_config(tmp_path: Path, seed: int = 9) -> tuple[Config, object]:
    tables = random_tables(seed, n_customers=60, transactions=2_000)
    raw = tmp_path / "raw"
    raw.mkdir()
    sources = {}
    for name in tables.present():
        path = raw / f"{name}.parquet"
        getattr(tables, name).to_parquet(path, index=False)
        sources[name] = {"path": str(path)}
    cfg = parse_config({
        "data": {"tables": sources, "as_of": str(tables.as_of.date())},
        "features": {"static_features": ["segment", "products_held"]},
        "labels": {"horizon_days": 60, "cutoffs": {"count": 4, "spacing_months": 2}},
        "paths": {"features_dir": str(tmp_path / "features"), "reports_dir": str(tmp_path / "reports"),
                  "outputs_dir": str(tmp_path / "outputs")},
    })
    return cfg, tables


def test_stage_writes_training_and_scoring_tables_and_a_summary(tmp_path: Path) -> None:
    cfg, tables = make_config(tmp_path)
    messages: list[str] = []
    summary = run(cfg, messages.append)
    train = pd.read_parquet(tmp_path / "features" / "train.parquet")
    score = pd.read_parquet(tmp_path / "features" / "score.parquet")
    expected_train = build_training_table(tables, cfg.features, cfg.labels)
    pd.testing.assert_frame_equal(train, expected_train, check_exact=True)
    pd.testing.assert_frame_equal(score, build_scoring_table(tables, cfg.features, cfg.labels), check_exact=True)
    written = json.loads((tmp_path / "reports" / "features_summary.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert written["train"]["rows"] == len(train) and written["score"]["rows"] == len(score)
    assert written["train"]["cutoffs"] == [str(c.date()) for c in sorted(train["cutoff"].unique())]
    rates = train.groupby("cutoff")["churned"].mean()
    assert written["train"]["churn_rate_per_cutoff"] == {str(c.date()): pytest.approx(r) for c, r in rates.items()}
    assert written["feature_count"] == len(written["features"]) == train.shape[1] - 2 - sum(c in train for c in ("churned", "future_value", "days_to_churn"))
    assert any("cutoff" in m for m in messages)
    # no temp files left: the only hidden entry is the generations store, holding current and one generation
    assert [p.name for p in (tmp_path / "features").iterdir() if p.name.startswith(".")] == [".generations"]
    assert len(list((tmp_path / "features" / ".generations" / "features").iterdir())) == 2


def test_stage_keeps_previous_outputs_when_it_fails(tmp_path: Path) -> None:
    cfg, _ = make_config(tmp_path)
    run(cfg)
    before = (tmp_path / "features" / "train.parquet").read_bytes()
    # fails while the training table is being written: the old file stays, no temp file is left
    too_long = cfg.model_copy(update={"labels": cfg.labels.model_copy(update={"horizon_days": 720})})
    with pytest.raises(ValueError, match="no training cutoff"):
        run(too_long)
    assert (tmp_path / "features" / "train.parquet").read_bytes() == before
    assert [p.name for p in (tmp_path / "features").iterdir() if p.name.startswith(".")] == [".generations"]
    assert len(list((tmp_path / "features" / ".generations" / "features").iterdir())) == 2
    # invalid inputs stop the stage before anything is written
    bad = pd.read_parquet(cfg.data.tables["transactions"].path).assign(customer_id="nobody")
    bad.to_parquet(cfg.data.tables["transactions"].path, index=False)
    with pytest.raises(ValidationFailed):
        run(cfg)
    assert (tmp_path / "features" / "train.parquet").read_bytes() == before

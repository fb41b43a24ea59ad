"""Every file each stage writes, in one place: where it is published and how to read it consistently.

Each stage writes its files through `pipelines.io.StageOutputs` (one generation, switched in
with one rename); the names here are the names inside a generation, the paths the public
paths users, DVC and notebooks know. `stage_paths` gives the public paths; `current_paths`
the same files inside the current generation, read once, so a reader of several files of a
stage never mixes two runs. Optional files are written only by some runs (e.g. the profit
curve needs customer values). Light: imports nothing heavy, so notebooks can use it.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.config import Config
from pipelines.io import current_paths as _current_paths

TRAIN_PLOTS = ("roc.png", "precision_recall.png", "reliability.png", "cumulative_gains.png", "feature_importance.png",
               "shap_summary.png", "profit_curve.png", "value_by_decile.png", "qini.png")
TRAIN_CURVES = ("profit_curve.csv", "gains.csv", "roc.csv", "reliability.csv", "feature_importance.csv", "qini.csv")
CHURN_MODEL_NAME = "churn-risk"
VALUE_MODEL_NAME = "customer-value"
"""The MLflow registry names `churn train` publishes the churn and value models under."""
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = tuple(sorted(path.stem for path in NOTEBOOK_DIR.glob("[0-9]*.py")))
"""The analyst notebooks (jupytext scripts) `churn report` renders, in their numbered order."""

_LAYOUT: dict[str, dict[str, tuple[str, str]]] = {
    "validate": {"validation.json": ("reports_dir", "validation.json")},
    "features": {"train.parquet": ("features_dir", "train.parquet"), "score.parquet": ("features_dir", "score.parquet"),
                 "excluded.parquet": ("features_dir", "excluded.parquet"),
                 "uplift.parquet": ("features_dir", "uplift.parquet"),
                 "features_summary.json": ("reports_dir", "features_summary.json")},
    "train": {"train_metrics.json": ("reports_dir", "train_metrics.json"),
              "test_predictions.parquet": ("reports_dir", "test_predictions.parquet"),
              "example_reasons.csv": ("reports_dir", "example_reasons.csv"),
              "uplift_metrics.json": ("reports_dir", "uplift_metrics.json"),
              **{name: ("reports_dir", f"plots/{name}") for name in TRAIN_PLOTS},
              **{name: ("reports_dir", f"curves/{name}") for name in TRAIN_CURVES}},
    "score": {name: ("outputs_dir", name) for name in
              ("scores.parquet", "retention_list.csv", "excluded.csv", "manifest.json")},
    "rules": {**{name: ("outputs_dir", name) for name in
                 ("complaint_rules.csv", "complaint_order_pairs.csv", "complaint_chains.csv", "root_causes.csv",
                  "churn_rules.csv", "complaint_chains.png")},
              "rules_summary.json": ("reports_dir", "rules_summary.json")},
    "complaints": {**{name: ("outputs_dir", name) for name in
                      ("complaint_weekly_counts.csv", "complaint_forecast.csv", "complaint_forecast_backtest.csv",
                       "complaint_forecast_accuracy.csv", "complaint_forecast.png", "staffing_plan.csv",
                       "staffing_plan.png", "satisfaction_by_unit.csv", "satisfaction_funnel.png",
                       "complaint_heatmap_line_by_channel.csv", "complaint_heatmap_weekday_by_hour.csv",
                       "complaint_heatmaps.png", "complaint_text_quality.csv", "complaint_suggestions.csv",
                       "complaint_sentiment.parquet", "complaint_sentiment.png")},
                   "complaints_summary.json": ("reports_dir", "complaints_summary.json")},
    "effects": {name: ("reports_dir", name) for name in ("effects.json", "effects.csv", "effects.png")},
    "backtest": {name: ("reports_dir", name) for name in ("backtest.json", "backtest.csv", "backtest.png")},
    "report": {**{f"{name}.html": ("reports_dir", f"html/{name}.html") for name in NOTEBOOKS},
               "index.html": ("reports_dir", "html/index.html")},
}
"""stage -> output name -> (the `paths` key of the config, path under it). The first output's folder
holds the stage's lock and its generations (`FOLDER/.generations/STAGE/`)."""

OPTIONAL: dict[str, frozenset[str]] = {
    "train": frozenset({"profit_curve.png", "value_by_decile.png", "profit_curve.csv", "qini.png", "qini.csv"}),
}
"""Outputs a run of the stage may leave out (no profit curve without customer values)."""

STAGES = tuple(_LAYOUT)


def stage_paths(cfg: Config, stage: str) -> dict[str, Path]:
    """The public path of every output of `stage` under the config's `paths`."""
    return {name: Path(getattr(cfg.paths, key)) / relative for name, (key, relative) in _LAYOUT[stage].items()}


def current_paths(cfg: Config, stage: str) -> dict[str, Path]:
    """The outputs of `stage` inside its current generation, read once (see `pipelines.io.current_paths`)."""
    return _current_paths(stage, stage_paths(cfg, stage))

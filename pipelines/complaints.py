"""`churn complaints`: complaint operations for care managers and analysts.

Loads the tables, runs the pure estimators of `models.complaint_ops` and writes to
`paths.outputs_dir`:

- weekly volume per category and channel (`complaint_weekly_counts.csv`), its 13-week
  forecast with prediction intervals (`complaint_forecast.csv`, chart
  `complaint_forecast.png`), the backtest per fold (`complaint_forecast_backtest.csv`)
  and the accuracy per series (`complaint_forecast_accuracy.csv`: chosen model, MASE);
- agents needed per week and tier (`staffing_plan.csv`, chart `staffing_plan.png`);
- satisfaction by branch and business line with tests (`satisfaction_by_unit.csv`,
  funnel plot `satisfaction_funnel.png`);
- heat maps of complaints and breach rates (`complaint_heatmap_line_by_channel.csv`,
  `complaint_heatmap_weekday_by_hour.csv`, `complaint_heatmaps.png`);
- complaint text: held-out quality of the category/priority suggestions
  (`complaint_text_quality.csv`), the suggestions for the held-out complaints
  (`complaint_suggestions.csv`: ids and labels) and the sentiment per complaint
  (`complaint_sentiment.parquet`: ids, date, category, score; chart `complaint_sentiment.png`);

and `paths.reports_dir/complaints_summary.json`. Every file is logged to MLflow; they are
switched in together (`StageOutputs`) and hold no timestamps or run ids, so the same data
and config give byte-identical outputs. Complaint text is read here and never written,
logged or sent to MLflow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from features.contract import Tables  # noqa: E402
from models.complaint_ops.forecast import TOTAL, ForecastResult, empty_result, forecast_complaints  # noqa: E402
from models.complaint_ops.heatmaps import GRIDS, WEEKDAYS, heat_grids  # noqa: E402
from models.complaint_ops.satisfaction import satisfaction_by_unit, score_values  # noqa: E402
from models.complaint_ops.staffing import PLAN_COLUMNS, staffing_plan  # noqa: E402
from models.complaint_ops.text import QUALITY_COLUMNS, sentiment_scores, suggest_labels  # noqa: E402
from pipelines.config import Config  # noqa: E402
from pipelines.outputs import stage_paths  # noqa: E402
from pipelines.io import StageOutputs, write_csv, write_json, write_parquet, write_with  # noqa: E402
from pipelines.tables import load_tables  # noqa: E402
from pipelines.fingerprint import flatten_params  # noqa: E402
from pipelines.tracking import tracked_run  # noqa: E402

log = logging.getLogger("pipelines.complaints")

WEEKLY_FILE = "complaint_weekly_counts.csv"
FORECAST_FILE = "complaint_forecast.csv"
BACKTEST_FILE = "complaint_forecast_backtest.csv"
ACCURACY_FILE = "complaint_forecast_accuracy.csv"
FORECAST_PLOT = "complaint_forecast.png"
STAFFING_FILE = "staffing_plan.csv"
STAFFING_PLOT = "staffing_plan.png"
SATISFACTION_FILE = "satisfaction_by_unit.csv"
FUNNEL_PLOT = "satisfaction_funnel.png"
HEAT_FILES = {"line_by_channel": "complaint_heatmap_line_by_channel.csv",
              "weekday_by_hour": "complaint_heatmap_weekday_by_hour.csv"}
HEAT_PLOT = "complaint_heatmaps.png"
TEXT_QUALITY_FILE = "complaint_text_quality.csv"
SUGGESTIONS_FILE = "complaint_suggestions.csv"
SENTIMENT_FILE = "complaint_sentiment.parquet"
SENTIMENT_PLOT = "complaint_sentiment.png"
SUMMARY_FILE = "complaints_summary.json"
OUTPUT_FILES = (WEEKLY_FILE, FORECAST_FILE, BACKTEST_FILE, ACCURACY_FILE, FORECAST_PLOT, STAFFING_FILE,
                STAFFING_PLOT, SATISFACTION_FILE, FUNNEL_PLOT, *HEAT_FILES.values(), HEAT_PLOT,
                TEXT_QUALITY_FILE, SUGGESTIONS_FILE, SENTIMENT_FILE, SENTIMENT_PLOT)
DECIMALS = 6
FORECAST_PANELS = 6

NEEDS_TABLES = frozenset({"customers", "complaints", "surveys"})
"""The tables complaint operations read (the rest are not loaded: `load_tables`)."""


def output_paths(cfg: Config) -> dict[str, Path]:
    """Where each output is read from: tables and charts in outputs_dir, then the summary in reports_dir."""
    return stage_paths(cfg, "complaints")


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    floats = [c for c in frame.select_dtypes("float").columns if not c.startswith(("p_value", "q_value"))]
    return frame.assign(**{c: frame[c].round(DECIMALS) for c in floats}) if floats else frame


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _empty(ax: plt.Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=10)
    ax.set_axis_off()


# ---------------------------------------------------------------- charts


def forecast_figure(result: ForecastResult, levels: tuple[int, ...]) -> Figure:
    """History and forecast with intervals: the total and the busiest categories and channels."""
    series = list(result.accuracy.sort_values(["complaints", "series"], ascending=[False, True])["series"])
    series = ([TOTAL] if TOTAL in series else []) + [s for s in series if s != TOTAL][:FORECAST_PANELS - 1]
    rows = max(1, math.ceil(len(series) / 2))
    fig, axes = plt.subplots(rows, 2, figsize=(13, 3.2 * rows), dpi=100, squeeze=False)
    for ax in axes.flat[len(series):]:
        ax.set_axis_off()
    if not series:
        _empty(axes.flat[0], "No series with enough history to forecast")
        return fig
    wide, narrow = max(levels), min(levels)
    for ax, name in zip(axes.flat, series):
        history = result.weekly[result.weekly["series"] == name]
        ahead = result.forecast[result.forecast["series"] == name]
        accuracy = result.accuracy.set_index("series").loc[name]
        ax.plot(history["week_start"], history["complaints"], color="#333333", lw=1, label="weekly complaints")
        ax.fill_between(ahead["week_start"], ahead[f"lower_{wide}"], ahead[f"upper_{wide}"], color="#9ecae1",
                        alpha=0.5, label=f"{wide}% interval")
        if narrow != wide:
            ax.fill_between(ahead["week_start"], ahead[f"lower_{narrow}"], ahead[f"upper_{narrow}"],
                            color="#4292c6", alpha=0.5, label=f"{narrow}% interval")
        ax.plot(ahead["week_start"], ahead["forecast"], color="#08519c", lw=1.5, label="forecast")
        ax.set_title(f"{name.replace('_', ' ')}: {accuracy['model']}, MASE {accuracy['mase']:.2f} "
                     f"(seasonal naive {accuracy['mase_seasonal_naive']:.2f})", fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Weekly complaints and the forecast (backtested MASE in each title)", fontsize=11)
    fig.tight_layout()
    return fig


def staffing_figure(plan: pd.DataFrame) -> Figure:
    """Agents to schedule per forecast week, stacked by tier."""
    fig, ax = plt.subplots(figsize=(11, 4), dpi=100)
    if plan.empty:
        _empty(ax, "No staffing plan: no total forecast or no priority column")
        return fig
    table = plan.pivot_table(index="week_start", columns="tier", values="agents_to_schedule", aggfunc="sum",
                             fill_value=0, sort=True)
    bottom = np.zeros(len(table))
    colours = {"urgent": "#cb181d", "high": "#fb6a4a", "normal": "#6baed6", "suggestion": "#bdd7e7"}
    labels = [pd.Timestamp(w).strftime("%d %b") for w in table.index]
    for tier in [t for t in colours if t in table.columns]:
        ax.bar(labels, table[tier], bottom=bottom, color=colours[tier], label=tier)
        bottom += table[tier].to_numpy()
    ax.set_ylabel("agents to schedule")
    ax.set_title("Care agents to schedule per week (Erlang C per tier, after shrinkage)")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=7, rotation=45)
    fig.tight_layout()
    return fig


def funnel_figure(table: pd.DataFrame, alpha: float, score_sd: dict[str, float]) -> Figure:
    """Funnel plots: unit mean against answers, with 95% and 99.8% limits around the overall mean."""
    panels = [(s, u) for s in ("csat", "nps", "complaint_satisfaction") for u in ("branch", "business_line")
              if ((table["score"] == s) & (table["unit_type"] == u)).any()]
    rows = max(1, math.ceil(len(panels) / 2))
    fig, axes = plt.subplots(rows, 2, figsize=(12, 3.6 * rows), dpi=100, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    if not panels:
        _empty(axes.flat[0], "No scores with a branch or business line")
        return fig
    for ax, (score, unit_type) in zip(axes.flat, panels):
        part = table[(table["score"] == score) & (table["unit_type"] == unit_type)]
        total = part["answers"].sum()
        overall = float((part["mean"] * part["answers"]).sum() / total)
        sd = score_sd.get(score, 0.0)  # the answer-level standard deviation of the score
        n = np.linspace(max(2, part["answers"].min() * 0.8), part["answers"].max() * 1.1, 100)
        for z, style in ((1.96, "--"), (3.09, ":")):
            ax.plot(n, overall - z * sd / np.sqrt(n), color="#888888", ls=style, lw=1)
            ax.plot(n, overall + z * sd / np.sqrt(n), color="#888888", ls=style, lw=1)
        ax.axhline(overall, color="#444444", lw=1)
        flagged = part["significantly_below"].astype(bool)
        ax.scatter(part.loc[~flagged, "answers"], part.loc[~flagged, "mean"], color="#4292c6", s=22)
        ax.scatter(part.loc[flagged, "answers"], part.loc[flagged, "mean"], color="#cb181d", s=30,
                   label=f"significantly below (FDR {alpha:.0%})")
        for _, row in part[flagged].iterrows():
            ax.annotate(str(row["unit"]), (row["answers"], row["mean"]), fontsize=7, xytext=(3, -8),
                        textcoords="offset points")
        label = "NPS (share promoters - detractors)" if score == "nps" else score.replace("_", " ")
        ax.set_title(f"{label} by {unit_type.replace('_', ' ')}", fontsize=9)
        ax.set_xlabel("answers", fontsize=8)
        ax.tick_params(labelsize=7)
        if flagged.any():
            ax.legend(fontsize=7, loc="best")
    fig.suptitle("Funnel plots: lines are 95% (dashed) and 99.8% (dotted) limits around the overall mean",
                 fontsize=10)
    fig.tight_layout()
    return fig


def heatmap_figure(grids: dict[str, pd.DataFrame]) -> Figure:
    """Complaint counts and breach rates on both grids."""
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), dpi=100)
    specs = (("line_by_channel", "business_line", "channel"), ("weekday_by_hour", "weekday", "hour"))
    for row, (name, rows, cols) in enumerate(specs):
        for col, (value, title, cmap) in enumerate((("complaints", "complaints", "Blues"),
                                                     ("breach_rate", "share past a service target", "Reds"))):
            ax = axes[row, col]
            grid = grids.get(name)
            if grid is None or grid.empty or grid[value].isna().all():
                _empty(ax, f"No {title} by {rows} x {cols}")
                continue
            table = grid.pivot(index=rows, columns=cols, values=value).astype(float)
            image = ax.imshow(table.to_numpy(), aspect="auto", cmap=cmap)
            fig.colorbar(image, ax=ax, fraction=0.04)
            ax.set_yticks(range(len(table.index)),
                          [WEEKDAYS[i] for i in table.index] if rows == "weekday" else list(table.index), fontsize=7)
            ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns], fontsize=7,
                          rotation=0 if cols == "hour" else 30)
            ax.set_title(f"{title} by {rows.replace('_', ' ')} x {cols.replace('_', ' ')}", fontsize=9)
            ax.grid(False)
    fig.tight_layout()
    return fig


def sentiment_figure(sentiment: pd.DataFrame, negative_below: float) -> Figure:
    """Share of negative complaint texts per category."""
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    scored = sentiment.dropna(subset=["sentiment"])
    if scored.empty:
        _empty(ax, "No complaint text to score")
        return fig
    share = scored.groupby("category")["negative"].mean().sort_values()
    ax.barh([c.replace("_", " ") for c in share.index], share.to_numpy(), color="#cb181d")
    ax.set_xlabel(f"share of complaints reading negative (VADER compound < {negative_below})")
    ax.set_title("Negative tone of complaint text by category")
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def _save(fig: Figure, path: Path) -> Path:
    written = write_with(path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(fig)
    return written


# ---------------------------------------------------------------- the stage


def analyse(tables: Tables, cfg: Config, say: Callable[[str], None]) -> dict[str, object]:
    """Every analysis of the stage, as frames and a summary (no I/O)."""
    settings = cfg.complaints
    complaints = tables.complaints
    if complaints is None or complaints.empty or tables.as_of is None:
        return _nothing_to_analyse(tables, cfg)
    as_of = tables.as_of
    targets = cfg.features.complaint_targets
    say(f"forecasting weekly complaints {settings.forecast.horizon_weeks} weeks ahead "
        f"({', '.join(settings.forecast.models)}; {settings.forecast.backtest_folds}-fold rolling-origin backtest)")
    forecast = forecast_complaints(complaints, as_of, settings.forecast)
    plan = staffing_plan(forecast.forecast, complaints, targets, settings.staffing, settings.forecast.interval_levels)
    satisfaction = satisfaction_by_unit(complaints, tables.surveys, settings.satisfaction)
    grids = heat_grids(complaints, as_of, targets)
    messages: list[str] = []
    if not len(forecast.accuracy):
        messages.append("no complaint series has enough history to forecast (see skipped series)")
    if plan.empty:
        messages.append("no staffing plan: it needs the total forecast and the complaints' priority column")
    if satisfaction.empty:
        messages.append("no satisfaction by unit: complaints and surveys have no branch or business_line column, "
                        "or no scores")
    text_on = settings.text.enabled and "text" in complaints.columns
    sentiment = complaints[["complaint_id", "customer_id", "opened_at", "category"]].iloc[0:0].assign(
        sentiment=pd.Series(dtype=float), negative=pd.Series(dtype=bool))
    quality = pd.DataFrame(columns=QUALITY_COLUMNS)
    suggestions = pd.DataFrame(columns=["complaint_id"])
    if text_on:
        say("scoring complaint text (VADER) and training the category/priority suggestions (TF-IDF)")
        scores = sentiment_scores(complaints["text"])
        sentiment = complaints[["complaint_id", "customer_id", "opened_at", "category"]].assign(
            sentiment=scores, negative=scores < settings.text.negative_below).sort_values(
            ["opened_at", "complaint_id"], kind="stable").reset_index(drop=True)
        text = suggest_labels(complaints, settings.text.test_share, settings.text.min_texts, cfg.seed,
                              settings.text.max_train_complaints)
        quality, suggestions = text.quality, text.suggestions
        messages += text.messages
    else:
        messages.append("complaint text not analysed: " + ("complaints.text.enabled is false"
                                                           if not settings.text.enabled else
                                                           "the complaints table has no text column"))
    return {"forecast": forecast, "plan": plan, "satisfaction": satisfaction, "grids": grids,
            "score_sd": _score_sd(complaints, tables.surveys), "sentiment": sentiment, "quality": quality,
            "suggestions": suggestions, "messages": messages}


def _score_sd(complaints: pd.DataFrame | None, surveys: pd.DataFrame | None) -> dict[str, float]:
    """Each score's answer-level standard deviation: the funnel plot's limits."""
    return {score: float(values["value"].std()) for score, values in score_values(complaints, surveys).items()
            if len(values) > 1}


def _nothing_to_analyse(tables: Tables, cfg: Config) -> dict[str, object]:
    """Empty results and the reason, when there is no complaint to analyse (the report says so)."""
    why = ("this config has no complaints table (data.tables.complaints)" if tables.complaints is None
           else "the complaints table has no rows")
    empty = empty_result(cfg.complaints.forecast.interval_levels)
    surveys_only = satisfaction_by_unit(None, tables.surveys, cfg.complaints.satisfaction)
    return {"forecast": empty, "plan": pd.DataFrame(columns=PLAN_COLUMNS), "satisfaction": surveys_only,
            "grids": {name: pd.DataFrame(columns=[*axes, "complaints", "breached", "breach_rate"])
                      for name, axes in GRIDS.items()},
            "score_sd": _score_sd(None, tables.surveys),
            "sentiment": pd.DataFrame({"complaint_id": pd.Series(dtype="str"), "customer_id": pd.Series(dtype="str"),
                                       "opened_at": pd.Series(dtype="datetime64[us]"),
                                       "category": pd.Series(dtype="str"), "sentiment": pd.Series(dtype=float),
                                       "negative": pd.Series(dtype=bool)}),
            "quality": pd.DataFrame(columns=QUALITY_COLUMNS), "suggestions": pd.DataFrame(columns=["complaint_id"]),
            "messages": [f"no complaints to analyse: {why}; forecast, staffing, heat maps and text are empty"]}


def summary_payload(result: dict[str, object], cfg: Config, as_of: pd.Timestamp | None,
                    files: dict[str, Path]) -> dict[str, object]:
    """Counts, accuracy, flagged units and text quality (no customer data, no text)."""
    forecast: ForecastResult = result["forecast"]  # type: ignore[assignment]
    satisfaction: pd.DataFrame = result["satisfaction"]  # type: ignore[assignment]
    plan: pd.DataFrame = result["plan"]  # type: ignore[assignment]
    quality: pd.DataFrame = result["quality"]  # type: ignore[assignment]
    sentiment: pd.DataFrame = result["sentiment"]  # type: ignore[assignment]
    flagged = satisfaction[satisfaction["significantly_below"].astype(bool)] if len(satisfaction) else satisfaction
    weekly_agents = (plan.groupby("week_start")["agents_to_schedule"].sum() if len(plan) else pd.Series(dtype=float))
    return {
        "as_of": str(as_of) if as_of is not None else None,
        "forecast": _finite(forecast.summary),
        "skipped_series": forecast.skipped.to_dict("records"),
        "staffing": {"weeks": int(plan["week_start"].nunique()) if len(plan) else 0,
                     "peak_agents_to_schedule": int(weekly_agents.max()) if len(weekly_agents) else None,
                     "mean_agents_to_schedule": float(weekly_agents.mean()) if len(weekly_agents) else None},
        "satisfaction": {"units_tested": int(satisfaction["tested"].sum()) if len(satisfaction) else 0,
                         "units_significantly_below": int(len(flagged)),
                         "below": [{"score": r["score"], "unit_type": r["unit_type"], "unit": r["unit"],
                                    "difference": round(float(r["difference"]), DECIMALS)}
                                   for _, r in flagged.iterrows()]},
        "text": {"quality": [{k: _finite(v) for k, v in row.items()} for row in quality.to_dict("records")],
                 "complaints_scored": int(sentiment["sentiment"].notna().sum()),
                 "negative_share": (float(sentiment["negative"].mean()) if len(sentiment) else None)},
        "messages": list(result["messages"]),  # type: ignore[arg-type]
        "settings": cfg.complaints.model_dump(mode="json"),
        "files": {name: str(path) for name, path in sorted(files.items())},
    }


def write_outputs(result: dict[str, object], cfg: Config, files: dict[str, Path]) -> None:
    """Every table and chart, each written atomically into the generation folder."""
    forecast: ForecastResult = result["forecast"]  # type: ignore[assignment]
    settings = cfg.complaints
    write_csv(forecast.weekly, files[WEEKLY_FILE])
    write_csv(_rounded(forecast.forecast), files[FORECAST_FILE])
    write_csv(_rounded(forecast.backtest), files[BACKTEST_FILE])
    write_csv(_rounded(forecast.accuracy), files[ACCURACY_FILE])
    _save(forecast_figure(forecast, settings.forecast.interval_levels), files[FORECAST_PLOT])
    write_csv(_rounded(result["plan"]), files[STAFFING_FILE])  # type: ignore[arg-type]
    _save(staffing_figure(result["plan"]), files[STAFFING_PLOT])  # type: ignore[arg-type]
    satisfaction: pd.DataFrame = result["satisfaction"]  # type: ignore[assignment]
    write_csv(_rounded(satisfaction), files[SATISFACTION_FILE])
    _save(funnel_figure(satisfaction, settings.satisfaction.alpha, result["score_sd"]),  # type: ignore[arg-type]
          files[FUNNEL_PLOT])
    grids: dict[str, pd.DataFrame] = result["grids"]  # type: ignore[assignment]
    for name, file in HEAT_FILES.items():
        write_csv(_rounded(grids.get(name, pd.DataFrame(columns=[*GRIDS[name], "complaints", "breached",
                                                                 "breach_rate"]))), files[file])
    _save(heatmap_figure(grids), files[HEAT_PLOT])
    write_csv(_rounded(result["quality"]), files[TEXT_QUALITY_FILE])  # type: ignore[arg-type]
    write_csv(result["suggestions"], files[SUGGESTIONS_FILE])  # type: ignore[arg-type]
    sentiment: pd.DataFrame = result["sentiment"]  # type: ignore[assignment]
    write_parquet(sentiment.assign(sentiment=sentiment["sentiment"].round(4)), files[SENTIMENT_FILE])
    _save(sentiment_figure(sentiment, settings.text.negative_below), files[SENTIMENT_PLOT])


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Forecast, staffing, satisfaction by unit, heat maps and text; write, summarise and log to MLflow."""
    say = progress or (lambda message: None)
    public = output_paths(cfg)
    outputs = StageOutputs("complaints", public, say)
    with outputs, outputs.commit() as files:
        tables = load_tables(cfg, NEEDS_TABLES)
        with tracked_run(cfg, stage="complaints") as active:
            mlflow.log_params(flatten_params(cfg.complaints, "complaints."))
            result = analyse(tables, cfg, say)
            for message in result["messages"]:  # type: ignore[attr-defined]
                log.warning("%s", message)
                say(message)
            write_outputs(result, cfg, files)
            payload = summary_payload(result, cfg, tables.as_of, {n: public[n] for n in OUTPUT_FILES})
            write_json(payload, files[SUMMARY_FILE])
            mlflow.log_metrics(_metrics(payload))
            for path in files.values():
                mlflow.log_artifact(str(path), "complaints")
            run_id = active.info.run_id
    fc = payload["forecast"]
    say((f"{fc['series_forecast']} series forecast (MASE overall {fc['mase_overall']:.3f}, seasonal naive "
         f"{fc['mase_seasonal_naive_overall']:.3f}), " if fc.get("series_forecast") else "no series forecast, ")
        + f"{payload['satisfaction']['units_significantly_below']} units significantly below average; "
        f"files in {cfg.paths.outputs_dir}/")
    return {"run_id": run_id, "summary": payload, "paths": {k: str(v) for k, v in public.items()}}


def _metrics(payload: dict[str, object]) -> dict[str, float]:
    out: dict[str, float] = {}
    forecast = payload["forecast"]
    for key in ("mase_overall", "mase_seasonal_naive_overall", "mae_ratio_to_seasonal_naive", "mase_total",
                "series_forecast", "series_skipped"):
        value = forecast.get(key)  # type: ignore[union-attr]
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[f"complaints.forecast.{key}"] = float(value)
    staffing = payload["staffing"]
    for key in ("peak_agents_to_schedule", "mean_agents_to_schedule"):
        if staffing[key] is not None:  # type: ignore[index]
            out[f"complaints.staffing.{key}"] = float(staffing[key])  # type: ignore[index]
    out["complaints.satisfaction.units_significantly_below"] = float(
        payload["satisfaction"]["units_significantly_below"])  # type: ignore[index]
    for row in payload["text"]["quality"]:  # type: ignore[index]
        for key in ("macro_f1", "baseline_macro_f1", "accuracy"):
            if row.get(key) is not None:
                out[f"complaints.text.{row['target']}.{key}"] = float(row[key])
    out["complaints.text.complaints_scored"] = float(payload["text"]["complaints_scored"])  # type: ignore[index]
    share = payload["text"]["negative_share"]  # type: ignore[index]
    if share is not None and math.isfinite(share):
        out["complaints.text.negative_share"] = float(share)
    return out

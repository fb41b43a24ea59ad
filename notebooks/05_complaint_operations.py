# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Complaint operations
#
# How many complaints are coming and how many care agents they need; which branches and
# business lines satisfy customers significantly less than the rest; where and when complaints
# and missed service targets cluster; and what the complaint text says (suggested category and
# priority, tone).
#
# Sources, all written by `churn complaints`: `data/outputs/complaint_weekly_counts.csv`,
# `complaint_forecast.csv`, `complaint_forecast_accuracy.csv`, `complaint_forecast_backtest.csv`,
# `staffing_plan.csv`, `satisfaction_by_unit.csv`, `complaint_heatmap_line_by_channel.csv`,
# `complaint_heatmap_weekday_by_hour.csv`, `complaint_text_quality.csv`, the charts
# `complaint_forecast.png`, `staffing_plan.png`, `satisfaction_funnel.png`, `complaint_heatmaps.png`,
# `complaint_sentiment.png` and `reports/complaints_summary.json`. They hold categories, units,
# counts and scores only: no complaint text.

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by mlflow

import json

import pandas as pd
from IPython.display import Image, Markdown, display

from pipelines.outputs import current_paths
from pipelines.report import latest_run, notebook_config

# %matplotlib inline

cfg, config_path = notebook_config(max_colwidth=60)
complaint_files = current_paths(cfg, "complaints")  # every file from one run of `churn complaints`
summary = json.loads(complaint_files["complaints_summary.json"].read_text())
accuracy = pd.read_csv(complaint_files["complaint_forecast_accuracy.csv"])
plan = pd.read_csv(complaint_files["staffing_plan.csv"])
units = pd.read_csv(complaint_files["satisfaction_by_unit.csv"])
quality = pd.read_csv(complaint_files["complaint_text_quality.csv"])
grids = {name: pd.read_csv(complaint_files[f"complaint_heatmap_{name}.csv"]) for name in ("line_by_channel", "weekday_by_hour")}
settings = summary["settings"]
display(Markdown(f"Config: `{config_path}`"))

# %% [markdown]
# ## Summary of the latest run

# %%
run = latest_run(cfg, "complaints")
forecast = summary["forecast"]
display(Markdown(
    (f"MLflow run `{run.info.run_id}`; " if run is not None else "")
    + f"data as of {str(summary['as_of'])[:10]}: **{forecast.get('series_forecast', 0)} weekly series forecast** "
    f"{settings['forecast']['horizon_weeks']} weeks ahead ({forecast.get('series_skipped', 0)} skipped), "
    f"**{summary['satisfaction']['units_significantly_below']} units significantly below the rest**, "
    f"{summary['text']['complaints_scored']:,} complaint texts scored."))
for message in summary["messages"]:
    display(Markdown(f"> {message}"))

# %% [markdown]
# ## Volume forecast
#
# Weekly complaints (whole Monday-start weeks) in total and per category and channel. Per series
# the model (ETS, ARIMA, the seasonal naive forecast: same week a year earlier, or the same with
# drift: plus the mean change from one year to the next) is chosen on a rolling-origin backtest.
# The choice itself is backtested: each fold is scored with the model the earlier folds chose, and
# that error over the in-sample error of the seasonal naive forecast is the **MASE**. A MASE below
# the seasonal naive forecast's on the same folds means the forecast beats it.

# %%
if accuracy.empty:
    display(Markdown("*No series had enough history to forecast: see the summary above.*"))
else:
    overall = forecast.get("mase_overall")
    ratio = forecast.get("mae_ratio_to_seasonal_naive")
    display(Markdown(
        f"MASE overall (mean over series): **{overall:.3f}**; the seasonal naive forecast on the same "
        f"folds: {forecast.get('mase_seasonal_naive_overall'):.3f}"
        + (f"; absolute error relative to seasonal naive: {ratio:.3f}" if ratio is not None else "")
        + f". Models chosen: {forecast.get('models_chosen')}."))
    display(accuracy[["series", "model", "complaints", "mase", "mase_seasonal_naive", "scale_reference"]]
            .sort_values("mase").round(3).reset_index(drop=True))
for skipped in summary["skipped_series"]:
    display(Markdown(f"> not forecast: `{skipped['series']}`: {skipped['reason']}"))
display(Image(filename=str(complaint_files["complaint_forecast.png"])))

# %% [markdown]
# ## Staffing
#
# Agents per week to answer each tier within its first-response target
# (`features.complaint_targets`) for `complaints.staffing.service_level` of complaints: Erlang C per
# tier over the open hours, occupancy capped, then grossed up for shrinkage. Handling times per
# tier are config assumptions (`complaints.staffing.handling_hours`).

# %%
if plan.empty:
    display(Markdown("*No staffing plan: it needs the total forecast and the complaints' priority column.*"))
else:
    weekly = plan.groupby("week_start").agg(forecast_complaints=("forecast_complaints", "sum"),
                                            staffed_for=("staffed_for_complaints", "sum"),
                                            agents_on_duty=("agents_on_duty", "sum"),
                                            agents_to_schedule=("agents_to_schedule", "sum"))
    display(Markdown(f"Staffed for the **{settings['staffing']['forecast_bound']}** forecast "
                     f"({'upper bound of the widest interval' if settings['staffing']['forecast_bound'] == 'upper' else 'mean'}); "
                     f"{settings['staffing']['open_hours_per_week']:.0f} open hours a week, "
                     f"shrinkage {settings['staffing']['shrinkage']:.0%}."))
    display(weekly.round(1))
display(Image(filename=str(complaint_files["staffing_plan.png"])))

# %% [markdown]
# ## Satisfaction by branch and business line
#
# CSAT (1-5), NPS (promoters minus detractors) and complaint satisfaction at closure, each unit
# against all other answers: one-sided Welch t-test, Benjamini-Hochberg correction within each score
# and unit type at a false discovery rate of `complaints.satisfaction.alpha`. Units significantly
# below the rest come first. In the funnel plots a unit outside the dashed (95%) or dotted (99.8%)
# limits differs by more than chance would explain for its number of answers.

# %%
if units.empty:
    display(Markdown("*No satisfaction by unit: no branch or business line column with scores.*"))
else:
    below = units[units["significantly_below"]]
    display(Markdown(f"**{len(below)}** unit-score pairs significantly below the rest "
                     f"(false discovery rate {settings['satisfaction']['alpha']:.0%}); "
                     f"{int(units['tested'].sum())} tested, {int((~units['tested']).sum())} with fewer than "
                     f"{settings['satisfaction']['min_answers']} answers not tested."))
    display(units.head(20)[["score", "unit_type", "unit", "answers", "mean", "rest_mean", "difference", "q_value",
                            "significantly_below"]].round(3))
display(Image(filename=str(complaint_files["satisfaction_funnel.png"])))

# %% [markdown]
# ## Heat maps: where and when complaints and missed targets cluster
#
# Complaints and the share past a first-response or resolution target, by business line x
# channel and by weekday x opening hour.

# %%
line_grid = grids["line_by_channel"]
if not line_grid.empty and line_grid["complaints"].sum() > 0:
    worst = line_grid[line_grid["complaints"] >= 30].sort_values("breach_rate", ascending=False).head(5)
    display(Markdown("Highest breach rates (cells with at least 30 complaints):"))
    display(worst.round(3).reset_index(drop=True))
display(Image(filename=str(complaint_files["complaint_heatmaps.png"])))

# %% [markdown]
# ## Complaint text
#
# Suggested category and priority from the text (TF-IDF + logistic regression), trained on the
# earlier complaints and measured on the latest `complaints.text.test_share` by macro-F1 against
# always suggesting the most frequent class; and the tone of each complaint (VADER compound score).

# %%
if quality.empty:
    display(Markdown("*No text classifier: the complaints have no text, or too few (see the summary).*"))
else:
    display(quality[["target", "classes", "train_complaints", "test_complaints", "macro_f1", "baseline_macro_f1",
                     "macro_f1_gain", "accuracy", "baseline_accuracy"]].round(3))
share = summary["text"]["negative_share"]
if share is not None:
    display(Markdown(f"{share:.1%} of complaint texts read negative "
                     f"(VADER compound below {settings['text']['negative_below']})."))
display(Image(filename=str(complaint_files["complaint_sentiment.png"])))

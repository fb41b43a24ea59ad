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
# # 2. Model report
#
# The latest training run (`churn train`): the calibrated LightGBM churn-risk model against
# its baselines on the out-of-time test set, how well its probabilities are calibrated, what
# contacting the top of the list would earn, what drives the risk, example customers with
# their reasons, and the champion / challenger history of both registered models.
#
# Sources: the latest finished `train` run in MLflow, `reports/train_metrics.json`,
# `reports/curves/*.csv` (the same data `dvc plots show` draws), `reports/plots/*.png`,
# `reports/example_reasons.csv` and the MLflow model registry.

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by mlflow

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, Markdown, display

from pipelines.report import latest_run, notebook_config, registry_history
from pipelines.train import CHURN_MODEL_NAME, VALUE_MODEL_NAME

# %matplotlib inline

cfg, config_path = notebook_config()
reports = Path(cfg.paths.reports_dir)
curves = reports / "curves"
plots = reports / "plots"
MODEL_NAMES = {"lightgbm": "LightGBM (calibrated)", "logistic": "logistic regression", "recency_rule": "recency rule"}
display(Markdown(f"Config: `{config_path}`"))

# %% [markdown]
# ## The latest training run

# %%
run = latest_run(cfg, "train")
summary = json.loads((reports / "train_metrics.json").read_text())
metrics = summary["metrics"]
if run is None:
    display(Markdown("**No finished training run in MLflow**: figures below come from `reports/` only."))
else:
    same = "the same run" if run.info.run_id == summary["run_id"] else f"**a different run** ({summary['run_id']})"
    display(Markdown(
        f"MLflow run `{run.info.run_id}` (experiment `{cfg.tracking.experiment}`), started "
        f"{pd.Timestamp(run.info.start_time, unit='ms'):%Y-%m-%d %H:%M} UTC, code `{run.data.tags.get('code_version', '?')}`; "
        f"`reports/train_metrics.json` comes from {same}."))
info = summary["info"]
pd.Series({
    "split": info.get("split"),
    "training cutoffs": ", ".join(info.get("train_cutoffs", [])),
    "test cutoffs": ", ".join(info.get("test_cutoffs", [])),
    "rows (fit / calibration / test)": f"{info.get('rows_fit', 0):,} / {info.get('rows_calibration', 0):,} / {info.get('rows_test', 0):,}",
    "features": info.get("features"),
    "calibration": info.get("churn_calibration_method"),
    "boosting rounds (churn / value)": f"{info.get('churn_best_iteration')} / {info.get('value_best_iteration')}",
    "churn horizon (days)": cfg.labels.horizon_days,
}, name="value").to_frame()

# %% [markdown]
# ## Against the baselines
#
# Higher is better for ROC-AUC, PR-AUC, lift and profit; lower is better for Brier score,
# log loss and calibration error. Best profit is the expected profit of a retention campaign
# that contacts the best-ranked share of customers (economics section of the config).

# %%
rows = {"LightGBM (calibrated)": "churn", "logistic regression": "baseline_logistic",
        "recency rule": "baseline_recency_rule"}
columns = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "brier": "Brier score", "log_loss": "log loss",
           "expected_calibration_error": "calibration error", "lift_top_10pct": "lift, top 10%",
           "captured_top_10pct": "churners in top 10%", "best_profit": "best profit (currency units)",
           "best_share_contacted": "share contacted at best profit"}
comparison = pd.DataFrame({label: {name: metrics.get(f"{prefix}.{key}") for key, name in columns.items()}
                           for label, prefix in rows.items() if f"{prefix}.roc_auc" in metrics}).T
display(comparison.astype(float).round(4))
ceiling = metrics.get("churn.true_hazard_roc_auc")
if ceiling is not None:
    display(Markdown(f"The generator's true churn hazard reaches ROC-AUC **{ceiling:.3f}** on the same rows "
                     f"(the best any model could do); the model is {metrics['churn.gap_to_true_hazard_roc_auc']:.3f} below it."))

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, key, label in ((axes[0], "ROC-AUC", "ROC-AUC (0.5 = random)"), (axes[1], "PR-AUC", "PR-AUC (base rate = random)")):
    values = comparison[key].astype(float)
    ax.barh(values.index[::-1], values.to_numpy()[::-1], color=["#4c72b0"] * len(values))
    ax.set_title(f"{key} on the out-of-time test set")
    ax.set_xlabel(label)
    ax.set_ylabel("Model")
    if key == "ROC-AUC":
        ax.axvline(0.5, color="grey", ls="--", label="random")
        if ceiling is not None:
            ax.axvline(ceiling, color="#c44e52", ls=":", label="true hazard (ceiling)")
        ax.set_xlim(0.4, 1.0)
    else:
        ax.axvline(metrics.get("churn.base_rate", 0), color="grey", ls="--", label="base rate")
    ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

value_columns = {"spearman": "rank correlation", "mae": "mean abs. error (currency units)",
                 "top_decile_value_share": "value share of top decile", "total_error_pct": "total error (%)"}
pd.DataFrame({label: {name: metrics.get(f"{prefix}.{key}") for key, name in value_columns.items()}
              for label, prefix in (("LightGBM value model", "value"), ("carry forward (last horizon)", "baseline_carry_forward"))
              if f"{prefix}.spearman" in metrics}).T.astype(float).round(3)

# %% [markdown]
# ## Calibration
#
# Customers split into ten equal-size bins by predicted churn probability: in a
# well-calibrated model each bin's observed churn rate matches its mean prediction.

# %%
reliability = pd.read_csv(curves / "reliability.csv")
fig, ax = plt.subplots(figsize=(6, 5))
top = max(reliability["mean_predicted"].max(), reliability["observed_rate"].max()) * 100 * 1.05
ax.plot([0, top], [0, top], ls="--", color="grey", label="perfect calibration")
ax.plot(reliability["mean_predicted"] * 100, reliability["observed_rate"] * 100, marker="o",
        label=f"model (ECE {metrics.get('churn.expected_calibration_error', float('nan')):.3f})")
ax.set_title("Reliability diagram, out-of-time test set")
ax.set_xlabel("Mean predicted churn probability (%)")
ax.set_ylabel("Observed churn rate (%)")
ax.legend(loc="upper left")
plt.show()

# %% [markdown]
# ## Gains and profit
#
# Gains: the share of all churners found when contacting the top X% by churn score. Profit:
# expected money from a campaign contacting the top X% (value kept minus contact and offer
# costs), customers ranked by the expected profit of contacting them (the recency rule by its
# own order); the dot is the best share.

# %%
gains = pd.read_csv(curves / "gains.csv")
profit = pd.read_csv(curves / "profit_curve.csv")
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
for name, curve in gains.groupby("model", sort=False):
    left.plot(curve["share_contacted"] * 100, curve["share_churners_captured"] * 100, label=MODEL_NAMES.get(name, name))
left.plot([0, 100], [0, 100], ls="--", color="grey", label="random")
left.set_title("Cumulative gains")
left.set_xlabel("Customers contacted, top share by score (%)")
left.set_ylabel("Churners captured (%)")
left.legend(loc="lower right")
for name, curve in profit.groupby("model", sort=False):
    line, = right.plot(curve["share_contacted"] * 100, curve["expected_profit"], label=MODEL_NAMES.get(name, name))
    best = curve.loc[curve["expected_profit"].idxmax()]
    right.scatter([best["share_contacted"] * 100], [best["expected_profit"]], color=line.get_color(), zorder=3)
right.axhline(0, color="grey", lw=0.8)
right.set_title("Retention campaign profit by share contacted")
right.set_xlabel("Customers contacted, top share by the model's ranking (%)")
right.set_ylabel("Expected profit (currency units)")
right.legend(loc="lower left")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What drives churn risk
#
# Feature importance (total gain) and the SHAP summary, as drawn by the train stage: each dot
# is a test customer, its position how much the feature moved that customer's risk.

# %%
importance = pd.read_csv(curves / "feature_importance.csv").head(15)
fig, ax = plt.subplots(figsize=(8, 5.5))
ax.barh(importance["feature"][::-1], importance["total_gain"][::-1], color="#4c72b0")
ax.set_title("Feature importance, top 15 (LightGBM total gain)")
ax.set_xlabel("Total gain (log-loss reduction)")
ax.set_ylabel("Feature")
fig.tight_layout()
plt.show()

# %%
for name in ("shap_summary.png", "value_by_decile.png"):
    if (plots / name).is_file():
        display(Image(filename=str(plots / name)))
    else:
        display(Markdown(f"*{plots / name} is missing.*"))

# %% [markdown]
# ## Example customers and their reasons
#
# The 20 test customers with the highest predicted risk, whether they churned, and the top
# reasons in plain words (TreeSHAP contributions turned into sentences). Customer ids only.

# %%
examples = pd.read_csv(reports / "example_reasons.csv")
reason_columns = [c for c in examples.columns if c.startswith("reason_")]
examples[["customer_id", "cutoff", "churn_probability", "churned", *reason_columns]].head(10).assign(
    churn_probability=lambda f: f["churn_probability"].round(3))

# %% [markdown]
# ## Champion and challenger history
#
# Every training run registers a new version of both models; a version becomes `champion`
# only if it beats the current champion on the same test rows by `model.champion_margin`
# (metric: `model.champion_metric`), otherwise it is a `challenger`. Scoring uses the champion.

# %%
decisions = pd.DataFrame(summary["champion"])
display(Markdown("Decisions of the latest run:"))
display(decisions[["model", "new_version", "alias", "new_metric", "champion_version", "champion_metric", "reason"]])

churn_history = registry_history(cfg, CHURN_MODEL_NAME, ("churn.roc_auc", "churn.pr_auc", "churn.best_profit"))
value_history = registry_history(cfg, VALUE_MODEL_NAME, ("value.spearman", "value.mae"))
display(Markdown(f"`{CHURN_MODEL_NAME}` versions:"))
display(churn_history)
display(Markdown(f"`{VALUE_MODEL_NAME}` versions:"))
display(value_history)

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for ax, history, metric, label, model in (
        (axes[0], churn_history, "churn.roc_auc", "ROC-AUC on its own test set", CHURN_MODEL_NAME),
        (axes[1], value_history, "value.spearman", "Rank correlation on its own test set", VALUE_MODEL_NAME)):
    colours = ["#c44e52" if "champion" in a else "#4c72b0" for a in history["aliases"]]
    values = history[metric].astype(float)
    bars = ax.bar(history["version"].astype("str"), values.fillna(0).to_numpy(), color=colours, width=0.6)
    ax.bar_label(bars, labels=[f"{v:.3f}\n{a}" for v, a in zip(values, history["aliases"])], fontsize=8, padding=2)
    ax.set_ylim(0, max(1.0, float(values.max()) * 1.2) if values.notna().any() else 1.0)
    ax.set_xlim(-0.75, max(len(history), 4) - 0.25)
    ax.set_title(f"{model}: every registered version (red = champion)")
    ax.set_xlabel("Model version")
    ax.set_ylabel(label)
fig.tight_layout()
plt.show()

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
# its baselines on the held-out test set, which churn model is served (LightGBM, the logistic
# regression or a blend of both: chosen on validation scores, and never worse than the
# logistic regression on the held-out data) and why, how well the probabilities are
# calibrated, what contacting the top of the list would earn (when customer value is known),
# what drives the risk, example customers with their reasons, and the champion / challenger
# history of the registered models.
#
# The registered models are refitted on every labelled cutoff after the evaluation; every
# figure here comes from the held-out fit, which did not see the test rows.
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

from models.evaluation import reliability_table
from pipelines.outputs import CHURN_MODEL_NAME, VALUE_MODEL_NAME, current_paths
from pipelines.report import latest_run, notebook_config, registry_history

# %matplotlib inline

cfg, config_path = notebook_config()
reports = Path(cfg.paths.reports_dir)
curves = reports / "curves"
plots = reports / "plots"
train_files = current_paths(cfg, "train")  # every file from one run of `churn train`
summary = json.loads(train_files["train_metrics.json"].read_text())
metrics = summary["metrics"]
info = summary["info"]
blend_weight = info.get("blend_weight_lightgbm")
BLEND_NAME = (f"blend: {blend_weight:g} LightGBM + {1 - blend_weight:g} logistic"
              if isinstance(blend_weight, (int, float)) else "blend of LightGBM and logistic regression")
MODEL_NAMES = {"lightgbm": "LightGBM (calibrated)", "logistic": "logistic regression", "blend": BLEND_NAME,
               "recency_rule": "recency rule"}
SERVED_NAMES = {"lightgbm": "LightGBM (calibrated)", "logistic_regression": "logistic regression",
                "blend": BLEND_NAME}
served = summary.get("selected_churn_model", info.get("selected_churn_model", "lightgbm"))
served_name = SERVED_NAMES.get(served, served.replace("_", " "))
value_column = cfg.labels.customer_value_column
no_value_reason = info.get("value_model")
if "value.spearman" in metrics:
    value_note = ""
elif "transactions" not in cfg.data.tables and value_column is not None:
    value_note = (f"each customer's value comes from the customers column `{value_column}` "
                  "(`labels.customer_value_column`), as given, so no value model was fitted.")
else:
    value_note = ("no value model was fitted" + (f" (the train stage says: *{no_value_reason}*)" if no_value_reason
                                                 else "") + ". "
                  "Without a customer value there is no lifetime value, value at risk or profit curve; the "
                  "retention list is ranked by churn risk alone (set `labels.customer_value_column` to a "
                  "numeric customers column, value per month, to rank by value at risk).")
display(Markdown(f"Config: `{config_path}`"))

# %% [markdown]
# ## The latest training run

# %%
run = latest_run(cfg, "train")
if run is None:
    display(Markdown("**No finished training run in MLflow**: figures below come from `reports/` only."))
else:
    same = "the same run" if run.info.run_id == summary["run_id"] else f"**a different run** ({summary['run_id']})"
    display(Markdown(
        f"MLflow run `{run.info.run_id}` (experiment `{cfg.tracking.experiment}`), started "
        f"{pd.Timestamp(run.info.start_time, unit='ms'):%Y-%m-%d %H:%M} UTC, code `{run.data.tags.get('code_version', '?')}`; "
        f"`reports/train_metrics.json` comes from {same}."))
refit_cutoffs = info.get("refit_cutoffs", [])
selection = info.get("selection")
lines = [f"**Served churn model: {served_name}**" + (f" ({selection})." if selection else ".")]
cross_validated = info.get("fit") == "cross_validated"
if str(info.get("split", "")).startswith("out_of_time"):
    heldout = (f"trained on the cutoffs {', '.join(info.get('train_cutoffs', []))} and evaluated on the later "
               f"cutoff {', '.join(info.get('test_cutoffs', []))} ({info.get('rows_test', 0):,} rows)")
else:
    heldout = (f"trained on a hashed share of the customers and evaluated on the other "
               f"{info.get('rows_test', 0):,} customers of the same cutoff")
if refit_cutoffs:
    span = refit_cutoffs[0] if len(refit_cutoffs) == 1 else f"{refit_cutoffs[0]} to {refit_cutoffs[-1]}"
    refit_rows = info.get("refit_rows", 0) + info.get("refit_calibration_rows", 0)
    how = ("every row, cross-validated and calibrated out of fold" if cross_validated else
           f"{info.get('refit_rows', 0):,} rows to fit, {info.get('refit_calibration_rows', 0):,} to calibrate")
    lines.append(
        f"The model registered as `{CHURN_MODEL_NAME}` is this algorithm **refitted on every labelled cutoff** "
        f"({len(refit_cutoffs)} cutoff{'s' if len(refit_cutoffs) != 1 else ''}, {span}: {refit_rows:,} rows; "
        f"{how}), so it has seen every label, the newest included, and cannot be tested on them"
        + (f" (the `{VALUE_MODEL_NAME}` model likewise)" if not value_note else "")
        + f". Every figure in this report comes from the **held-out fit**, {heldout}.")
if value_note:
    lines.append(f"**Customer value:** {value_note}")
display(Markdown("\n\n".join(lines)))
rounds_value = info.get("value_best_iteration")
pd.Series({
    "split": info.get("split"),
    "training cutoffs (held-out fit)": ", ".join(info.get("train_cutoffs", [])),
    "test cutoffs": ", ".join(info.get("test_cutoffs", [])),
    "rows (fit / calibration / test)": f"{info.get('rows_fit', 0):,} / {info.get('rows_calibration', 0):,} / {info.get('rows_test', 0):,}",
    "served churn model": served_name,
    "fitting": ("cross-validated on every training row" if cross_validated else
                "a hashed share of customers held back for early stopping and calibration"),
    "refit on (cutoffs / rows)": (f"{len(refit_cutoffs)} / "
                                  f"{info.get('refit_rows', 0) + info.get('refit_calibration_rows', 0):,}"
                                  if refit_cutoffs else "-"),
    "features": info.get("features"),
    "calibration": info.get("churn_calibration_method"),
    "boosting rounds (churn / value)": f"{info.get('churn_best_iteration')} / "
                                      f"{rounds_value if rounds_value is not None else 'no value model'}",
    "churn horizon (days)": cfg.labels.horizon_days,
}, name="value").to_frame()

# %% [markdown]
# ## Against the baselines
#
# Higher is better for ROC-AUC, PR-AUC, lift and profit; lower is better for Brier score,
# log loss and calibration error. Best profit is the expected profit of a retention campaign
# that contacts the best-ranked share of customers (economics section of the config); it needs
# a customer value and is left out when none is known. The served model is marked.

# %%
rows = {"LightGBM (calibrated)": "churn", "logistic regression": "baseline_logistic", BLEND_NAME: "blend",
        "recency rule": "baseline_recency_rule", "BG/NBD (buy till you die)": "baseline_btyd"}
columns = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "brier": "Brier score", "log_loss": "log loss",
           "expected_calibration_error": "calibration error", "lift_top_10pct": "lift, top 10%",
           "captured_top_10pct": "churners in top 10%", "best_profit": "best profit (currency units)",
           "best_share_contacted": "share contacted at best profit"}
served_row = SERVED_NAMES.get(served)
comparison = pd.DataFrame({label: {name: metrics.get(f"{prefix}.{key}") for key, name in columns.items()}
                           for label, prefix in rows.items() if f"{prefix}.roc_auc" in metrics}).T
comparison = comparison.astype(float).dropna(axis=1, how="all")
comparison.index = [f"{label} (served)" if label == served_row else label for label in comparison.index]
display(comparison.round(4))
ceiling = metrics.get("churn.true_hazard_roc_auc")
if ceiling is not None:
    display(Markdown(f"The generator's true churn hazard reaches ROC-AUC **{ceiling:.3f}** on the same rows "
                     f"(the best any model could do); LightGBM is {metrics['churn.gap_to_true_hazard_roc_auc']:.3f} below it."))

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
if value_note:
    display(Markdown("*No value model to compare with a baseline (see above).*"))
else:
    display(Markdown("Customer value model (next-horizon value of the customers who stayed) against carrying "
                     "the last horizon's value forward:"))
    display(pd.DataFrame({label: {name: metrics.get(f"{prefix}.{key}") for key, name in value_columns.items()}
                          for label, prefix in (("LightGBM value model", "value"),
                                                ("carry forward (last horizon)", "baseline_carry_forward"),
                                                ("BG/NBD x Gamma-Gamma", "baseline_btyd_value"))
                          if f"{prefix}.spearman" in metrics}).T.astype(float).round(3))

# %% [markdown]
# ## Calibration
#
# Customers split into ten equal-size bins by predicted churn probability: in a
# well-calibrated model each bin's observed churn rate matches its mean prediction.
# The LightGBM curve is drawn by the train stage; when another model is served (the logistic
# regression or the blend), its own curve is added from the test predictions
# (`reports/test_predictions.parquet`).

# %%
reliability = {"LightGBM" + (" (served)" if served == "lightgbm" else ""):
               (pd.read_csv(train_files["reliability.csv"]), metrics.get("churn.expected_calibration_error"))}
predictions_file = train_files["test_predictions.parquet"]
if served != "lightgbm" and predictions_file.is_file():
    predictions = pd.read_parquet(predictions_file, columns=["churned", "selected_probability"])
    reliability[f"{served_name} (served)"] = (
        reliability_table(predictions["churned"].to_numpy(dtype=int),
                          predictions["selected_probability"].to_numpy(dtype=float)),
        metrics.get("selected.expected_calibration_error"))
fig, ax = plt.subplots(figsize=(6, 5))
top = max(max(t["mean_predicted"].max(), t["observed_rate"].max()) for t, _ in reliability.values()) * 100 * 1.05
ax.plot([0, top], [0, top], ls="--", color="grey", label="perfect calibration")
for name, (table, ece) in reliability.items():
    ax.plot(table["mean_predicted"] * 100, table["observed_rate"] * 100, marker="o",
            label=f"{name} (ECE {ece if ece is not None else float('nan'):.3f})")
ax.set_title(f"Reliability diagram, {'out-of-time' if str(info.get('split', '')).startswith('out_of_time') else 'held-out'}"
             " test set")
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
# own order); the dot is the best share. The profit curve needs a customer value: without one
# only the gains are drawn.

# %%
gains = pd.read_csv(train_files["gains.csv"])
profit_file = train_files["profit_curve.csv"]
profit = pd.read_csv(profit_file) if profit_file.is_file() else None
if profit is None:
    display(Markdown(f"**No profit curve** (`{plots.parent / 'curves' / 'profit_curve.csv'}` was not written): a campaign's profit needs each "
                     "customer's value, and none is known in this run (see *The latest training run*). "
                     "Only the gains are drawn."))
    fig, left = plt.subplots(figsize=(6.5, 4.5))
else:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
for name, curve in gains.groupby("model", sort=False):
    left.plot(curve["share_contacted"] * 100, curve["share_churners_captured"] * 100, label=MODEL_NAMES.get(name, name))
left.plot([0, 100], [0, 100], ls="--", color="grey", label="random")
left.set_title("Cumulative gains")
left.set_xlabel("Customers contacted, top share by score (%)")
left.set_ylabel("Churners captured (%)")
left.legend(loc="lower right")
if profit is not None:
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
if profit is not None and profit["expected_profit"].max() <= 0:
    display(Markdown("*No share of customers makes a campaign pay under the current economics (best profit 0: "
                     "contact nobody). Check `economics.value_margin` (the share of the value the business "
                     "earns) and the contact and offer costs against the customers' value.*"))

# %% [markdown]
# ## What drives churn risk
#
# Feature importance (total gain) and the SHAP summary, as drawn by the train stage: each dot
# is a test customer, its position how much the feature moved that customer's risk. Both are
# of the LightGBM model.

# %%
if served == "logistic_regression":
    display(Markdown("*The served model is the logistic regression: its reasons come from its own linear terms. "
                     "The importance and SHAP summary below are of the LightGBM model evaluated alongside it, "
                     "which shows what drives risk in a model that can bend.*"))
elif served == "blend":
    display(Markdown(f"*The served model is the {BLEND_NAME}: a customer's reasons add the LightGBM part's TreeSHAP "
                     "values and the logistic part's linear terms, each by its weight. The importance and SHAP "
                     "summary below are of the LightGBM part.*"))
importance = pd.read_csv(train_files["feature_importance.csv"]).head(15)
fig, ax = plt.subplots(figsize=(8, 5.5))
ax.barh(importance["feature"][::-1], importance["total_gain"][::-1], color="#4c72b0")
ax.set_title("Feature importance, top 15 (LightGBM total gain)")
ax.set_xlabel("Total gain (log-loss reduction)")
ax.set_ylabel("Feature")
fig.tight_layout()
plt.show()

# %%
for name in ("shap_summary.png", "value_by_decile.png"):
    if train_files[name].is_file():
        display(Image(filename=str(train_files[name])))
    elif name == "value_by_decile.png" and value_note:
        display(Markdown("*No chart of predicted against actual value by decile: no value model was fitted.*"))
    else:
        display(Markdown(f"*{plots / name} is missing.*"))

# %% [markdown]
# ## Example customers and their reasons
#
# The 20 test customers with the highest predicted risk (by the served model), whether they
# churned, and the top reasons in plain words (TreeSHAP contributions for LightGBM, the linear
# terms for the logistic regression, both by weight for the blend, turned into sentences).
# Customer ids only.

# %%
display(Markdown(f"Top 10 by the served model, {served_name}:"))
examples = pd.read_csv(train_files["example_reasons.csv"])
reason_columns = [c for c in examples.columns if c.startswith("reason_")]
examples[["customer_id", "cutoff", "churn_probability", "churned", *reason_columns]].head(10).assign(
    churn_probability=lambda f: f["churn_probability"].round(3))

# %% [markdown]
# ## Champion and challenger history
#
# Every training run registers a new version of the churn model (and of the value model, when
# one is fitted); a version becomes `champion` only if it beats the current champion on the
# same test rows by `model.champion_margin` (metric: `model.champion_metric`), otherwise it is
# a `challenger`. Scoring uses the champion. A version is the refit on every labelled cutoff;
# its figures are those of its held-out fit.

# %%
decisions = pd.DataFrame(summary["champion"])
display(Markdown("Decisions of the latest run:"))
decision_columns = ["model", "algorithm", "new_version", "alias", "new_metric", "champion_version", "champion_metric",
                    "reason"]
decisions = decisions.reindex(columns=decision_columns)
decisions["algorithm"] = [SERVED_NAMES.get(a, a) if isinstance(a, str) else
                          ("LightGBM (Tweedie)" if m == VALUE_MODEL_NAME else "-")
                          for a, m in zip(decisions["algorithm"], decisions["model"])]
with pd.option_context("display.max_colwidth", 160):
    display(decisions)
if len(decisions) == 1 and value_note:
    display(Markdown(f"*No `{VALUE_MODEL_NAME}` decision: no value model was fitted in this run.*"))

churn_history = registry_history(cfg, CHURN_MODEL_NAME, ("selected.roc_auc", "churn.roc_auc", "churn.pr_auc",
                                                         "selected.best_profit"), tags=("selected_churn_model",))
# Runs before the served-model choice have only the LightGBM figure, which was then the served one.
churn_history["roc_auc (served)"] = churn_history["selected.roc_auc"].fillna(churn_history["churn.roc_auc"])
churn_history["algorithm"] = churn_history["selected_churn_model"].map(
    lambda a: SERVED_NAMES.get(a, a) if isinstance(a, str) else SERVED_NAMES["lightgbm"])
churn_history = churn_history[["version", "registered", "aliases", "algorithm", "roc_auc (served)", "churn.pr_auc",
                               "selected.best_profit", "run_id"]]
churn_history = churn_history.drop(columns=[c for c in ("churn.pr_auc", "selected.best_profit")
                                            if churn_history[c].isna().all()])
value_history = registry_history(cfg, VALUE_MODEL_NAME, ("value.spearman", "value.mae"))
display(Markdown(f"`{CHURN_MODEL_NAME}` versions:"))
display(churn_history)
if value_history.empty:
    display(Markdown(f"*No `{VALUE_MODEL_NAME}` version is registered in this MLflow store: no run fitted a value "
                     "model.*"))
else:
    display(Markdown(f"`{VALUE_MODEL_NAME}` versions:"))
    display(value_history)

# %%
panels = [(churn_history, "roc_auc (served)", "ROC-AUC of the served model on its own test set", CHURN_MODEL_NAME)]
if not value_history.empty:
    panels.append((value_history, "value.spearman", "Rank correlation on its own test set", VALUE_MODEL_NAME))
fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), squeeze=False)
for ax, (history, metric, label, model) in zip(axes[0], panels):
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

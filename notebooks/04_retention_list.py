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
# # 4. Retention list
#
# This week's list (`churn score`): who is in which care segment, what each team is asked
# to do and whether it fits their capacity, the value at risk and the benefit expected from
# acting, and whether today's customers still look like the ones the model was trained on.
#
# Sources: `data/outputs/scores.parquet` (every eligible customer), `retention_list.csv`
# (the selected customers in order), `manifest.json` (models, settings, summary) and the
# latest `score` run in MLflow (feature drift). Customers appear by id only.

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by mlflow
import io
import json
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from mlflow.exceptions import MlflowException

from models.retention import SEGMENTS
from pipelines.report import latest_run, notebook_config
from pipelines.score import LIST_FILE, MANIFEST_FILE, SCORES_FILE

# %matplotlib inline

cfg, config_path = notebook_config(max_colwidth=70)
outputs = Path(cfg.paths.outputs_dir)
scores = pd.read_parquet(outputs / SCORES_FILE)
listed = pd.read_csv(outputs / LIST_FILE, dtype={"customer_id": "str"})
manifest = json.loads((outputs / MANIFEST_FILE).read_text())
plan = manifest["plan"]
display(Markdown(f"Config: `{config_path}`"))

# %% [markdown]
# ## The list at a glance

# %%
models = manifest["models"]
display(Markdown(
    f"Scored as of **{manifest['as_of'][:10]}** with `{models['churn'].get('resolved_uri', models['churn'].get('uri'))}` "
    f"and `{models['value'].get('resolved_uri', models['value'].get('uri'))}`: "
    f"**{plan['customers_scored']:,}** eligible customers, **{plan['customers_selected']:,}** on the list "
    f"({plan['complaint_first']:,} of them have an overdue complaint to resolve first)."))
pd.Series({
    "value at risk, all scored (currency units)": round(plan["total_value_at_risk"], 2),
    "value at risk, selected (currency units)": round(plan["total_value_at_risk_selected"], 2),
    "expected benefit of the list (currency units)": round(plan["total_expected_benefit_selected"], 2),
    "churn horizon (days)": manifest["horizon_days"],
    "reasons: exact TreeSHAP / fast path attribution": f"{manifest['reasons']['tree_shap']} / {manifest['reasons']['path_attribution']}",
}, name="value").to_frame()

# %% [markdown]
# ## Care segments and actions
#
# Segments follow the care playbook, first match wins: high value and at risk, churn
# warning, high-value established, new, ordinary. Thresholds used this week:

# %%
display(pd.Series(manifest["segment_thresholds"], name="threshold").to_frame())
segments = pd.DataFrame({
    "scored": pd.Series(plan["segments"]),
    "selected": pd.Series(plan["selected_by_segment"]),
}).reindex(list(SEGMENTS)).fillna(0).astype(int)
fig, ax = plt.subplots(figsize=(10, 4))
x = np.arange(len(segments))
ax.bar(x - 0.2, segments["scored"], 0.4, label="scored", color="#8c8c8c")
ax.bar(x + 0.2, segments["selected"], 0.4, label="on the list", color="#4c72b0")
ax.set_xticks(x, [s.replace("_", " ") for s in segments.index])
ax.set_title("Customers per care segment: scored and selected")
ax.set_xlabel("Care segment")
ax.set_ylabel("Customers (count, log scale)")
ax.set_yscale("symlog")
ax.legend(loc="upper left")
plt.show()

# %%
actions = (scores[scores["selected"]]
           .assign(action=lambda f: f["action"].astype("str"), channel=lambda f: f["channel"].astype("str"),
                   owner=lambda f: f["owner"].astype("str"))
           .groupby(["action", "channel", "owner"], observed=True)
           .agg(customers=("customer_id", "size"), value_at_risk=("value_at_risk", "sum"),
                expected_benefit=("expected_benefit", "sum"), earliest_deadline=("deadline", "min"))
           .sort_values("customers", ascending=False).reset_index())
actions.assign(value_at_risk=lambda f: f["value_at_risk"].round(2), expected_benefit=lambda f: f["expected_benefit"].round(2),
               earliest_deadline=lambda f: f["earliest_deadline"].dt.strftime("%Y-%m-%d"))

# %% [markdown]
# ## Value at risk by segment
#
# Value at risk = churn probability × lifetime value: what the bank expects to lose from
# each customer if nothing is done.

# %%
by_segment = (scores.assign(segment=scores["segment"].astype("str"))
              .groupby("segment")
              .agg(value_at_risk=("value_at_risk", "sum"), churn_probability=("churn_probability", "mean"),
                   lifetime_value=("lifetime_value", "mean"))
              .reindex(list(SEGMENTS)).fillna(0))
selected_risk = scores[scores["selected"]].assign(segment=lambda f: f["segment"].astype("str")).groupby("segment")[
    "value_at_risk"].sum().reindex(list(SEGMENTS)).fillna(0)
fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.2))
labels = [s.replace("_", " ") for s in SEGMENTS]
left.barh(labels[::-1], by_segment["value_at_risk"].to_numpy()[::-1], color="#8c8c8c", label="all scored")
left.barh(labels[::-1], selected_risk.to_numpy()[::-1], color="#c44e52", label="on the list")
left.set_title("Value at risk per care segment")
left.set_xlabel("Value at risk (currency units)")
left.set_ylabel("Care segment")
left.legend(loc="lower right")
right.hist(scores["churn_probability"] * 100, bins=40, color="#4c72b0")
right.set_title("Churn probability of every scored customer")
right.set_xlabel(f"Churn probability within {manifest['horizon_days']} days (%)")
right.set_ylabel("Customers (count)")
fig.tight_layout()
plt.show()
by_segment.round(3)

# %% [markdown]
# ## Capacity
#
# Each owning team has a weekly contact capacity (`scoring.selection.capacity`; empty = no
# limit). Overdue complaints are a service obligation and are listed whatever the capacity.

# %%
owners = pd.DataFrame(plan["owners"]).T
owners["capacity"] = pd.to_numeric(owners["capacity"], errors="coerce")
fig, ax = plt.subplots(figsize=(10, 4))
x = np.arange(len(owners))
ax.bar(x - 0.2, owners["selected"].astype(float), 0.4, label="selected", color="#4c72b0")
limited = owners["capacity"].notna().to_numpy()
ax.bar(x[limited] + 0.2, owners.loc[limited, "capacity"].astype(float), 0.4, label="capacity", color="#cccccc")
for position in x[~limited]:
    ax.text(position + 0.2, 0.5, "no limit", ha="center", va="bottom", rotation=90, fontsize=8)
ax.set_xticks(x, [o.replace("_", " ") for o in owners.index])
ax.set_yscale("symlog")
ax.set_title("Contacts per team: selected against weekly capacity")
ax.set_xlabel("Owning team")
ax.set_ylabel("Customers (count, log scale)")
ax.legend(loc="upper right")
plt.show()
owners.assign(use=lambda f: (f["selected"].astype(float) / f["capacity"]).map(
    lambda v: f"{v:.0%}" if pd.notna(v) else "no limit"))

# %% [markdown]
# ## Expected benefit
#
# Expected benefit of a contact = value at risk × the action's success rate − its cost.
# The curve adds the customers up in list order.

# %%
ordered = listed.sort_values("rank")
fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.2))
left.plot(ordered["rank"], ordered["expected_benefit"].cumsum(), color="#55a868")
left.axhline(0, color="grey", lw=0.8)
left.set_title("Cumulative expected benefit down the list")
left.set_xlabel("Position on the list (rank)")
left.set_ylabel("Cumulative expected benefit (currency units)")
benefit = ordered.groupby("segment")["expected_benefit"].sum().reindex(list(SEGMENTS)).fillna(0)
right.barh(labels[::-1], benefit.to_numpy()[::-1], color="#55a868")
right.axvline(0, color="grey", lw=0.8)
right.set_title("Expected benefit of the list per care segment")
right.set_xlabel("Expected benefit (currency units)")
right.set_ylabel("Care segment")
fig.tight_layout()
plt.show()
pd.Series(plan["selection_reasons"], name="customers").rename_axis("selection reason").to_frame()

# %% [markdown]
# ## The top of the list
#
# The first 15 customers, with what to do, by whom, by when, and why (reasons in plain words).

# %%
reason_columns = [c for c in listed.columns if c.startswith("reason_") and c != "reason_method"]
ordered.head(15)[["rank", "customer_id", "segment", "churn_probability", "value_at_risk", "action", "owner",
                  "deadline", *reason_columns]]

# %% [markdown]
# ## Drift since training
#
# Population stability index (PSI) of each model feature between the training data and
# today's customers. Above 0.1: worth a look; above 0.25: the model may need retraining.

# %%
drift = manifest["drift"]
run = latest_run(cfg, "score")
psi = None
if run is not None:
    try:
        psi = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/drift.csv")))
    except (MlflowException, OSError) as error:  # an old run without the artifact: fall back to the manifest
        display(Markdown(f"*Drift table not found in run `{run.info.run_id}` ({type(error).__name__}).*"))
if psi is None:
    psi = pd.DataFrame(list(drift["features_above_warning"].items()), columns=["feature", "psi"])
display(Markdown(f"Largest PSI **{drift['max_psi']:.3f}**, mean {drift['mean_psi']:.3f} over {drift['features']} features; "
                 f"{len(drift['features_above_warning'])} above the warning level {drift['warn_above']}."))
top = psi.sort_values("psi", ascending=False).head(15)
fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(top), 3) + 1.5))
colours = ["#c44e52" if v > drift["warn_above"] else "#4c72b0" for v in top["psi"]]
ax.barh(top["feature"][::-1], top["psi"].to_numpy()[::-1], color=colours[::-1])
ax.axvline(drift["warn_above"], color="#c44e52", ls="--", label=f"warning ({drift['warn_above']})")
ax.axvline(0.25, color="grey", ls=":", label="retrain (0.25)")
ax.set_title("Feature drift since training (top 15 by PSI)")
ax.set_xlabel("Population stability index (PSI, unitless)")
ax.set_ylabel("Feature")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()

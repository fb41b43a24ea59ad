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
# acting, who was left out of the scoring population and why, and whether today's customers
# still look like the ones the model was trained on.
#
# Sources: `data/outputs/scores.parquet` (every eligible customer), `retention_list.csv`
# (the selected customers in order), `excluded.csv` (customers a population rule left out),
# `manifest.json` (models, settings, summary) and the latest `score` run in MLflow (feature
# drift). Customers appear by id only, and only on the list; left-out customers only as counts.
# Without a customer value (a customers-only snapshot with no `labels.customer_value_column`)
# the money figures are empty and the notebook says so instead of charting them.

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

from features.labels import EXCLUSION_REASONS
from models.retention import SEGMENTS, SELECTION_REASONS
from pipelines.effects import effects_figure
from pipelines.outputs import current_paths
from pipelines.report import latest_run, notebook_config

# %matplotlib inline

cfg, config_path = notebook_config(max_colwidth=70)
outputs = Path(cfg.paths.outputs_dir)
score_files = current_paths(cfg, "score")  # every file from one run of `churn score`
scores = pd.read_parquet(score_files["scores.parquet"])
listed = pd.read_csv(score_files["retention_list.csv"], dtype={"customer_id": "str"})
manifest = json.loads(score_files["manifest.json"].read_text())
plan = manifest["plan"]
excluded_file = score_files["excluded.csv"]
has_value = bool(np.isfinite(scores["value_at_risk"].to_numpy(dtype=float)).any())
has_list = len(listed) > 0
value_source = plan.get("value_source") or manifest["models"]["value"].get("source", "model")
REASON_WORDS = {
    "service_obligation": "listed: an overdue complaint to resolve (whatever the capacity)",
    "positive_expected_benefit": "listed: expected benefit above the threshold, within capacity",
    "highest_risk_no_value": "listed: churn warning, taken by risk (no customer value known)",
    "over_capacity": "not listed: worth contacting, but the team's capacity is full",
    "below_benefit_threshold": "not listed: expected benefit at or below scoring.selection.min_expected_benefit",
    "no_churn_warning_no_value": "not listed: no churn warning, and no customer value to weigh",
    "sleeping_dog": "not listed: the uplift model says a sales offer would likely drive them away",
    "control": "not listed: drawn into the randomised holdout (scoring.holdout.share) to measure the list's effect",
    "highest_uplift_no_value": "listed: persuadable, taken by predicted uplift (no customer value known)",
    "not_persuadable_no_value": "not listed: not persuadable, and no customer value to weigh (ranked by uplift)",
}


def readable(text: str) -> str:
    """A column or config key in words (`customers.signup_date` -> `customers.signup date`)."""
    return str(text).replace("_date", " date")


display(Markdown(f"Config: `{config_path}`"))

# %% [markdown]
# ## The list at a glance

# %%
models = manifest["models"]
churn_model = models["churn"]
algorithm = str(churn_model.get("algorithm", "lightgbm"))
algorithm_name = "LightGBM" if algorithm == "lightgbm" else algorithm.replace("_", " ")
churn_text = f"`{churn_model.get('resolved_uri', churn_model.get('uri'))}` ({algorithm_name})"
if value_source == "model":
    value_text = f"value model `{models['value'].get('resolved_uri', models['value'].get('uri'))}`"
elif value_source == "customers_column":
    value_text = f"customer value from the customers column `{cfg.labels.customer_value_column}`"
else:
    value_text = "**no customer value** (no value model, no `labels.customer_value_column`)"
display(Markdown(
    f"Scored as of **{manifest['as_of'][:10]}** with churn model {churn_text} and {value_text}: "
    f"**{plan['customers_scored']:,}** eligible customers, **{plan['customers_selected']:,}** on the list "
    f"({plan['complaint_first']:,} of them have an overdue complaint to resolve first)."))
why_empty = plan.get("why_empty")
if why_empty:
    display(Markdown(f"### {'Why the list is empty' if not has_list else 'About this list'}\n\n"
                     f"> {why_empty[0].upper() + why_empty[1:]}."))
methods = listed["reason_method"].astype("str").value_counts() if has_list else pd.Series(dtype=int)
METHOD_WORDS = {"tree_shap": "exact TreeSHAP", "path_attribution": "fast path attribution",
                "linear_terms": "linear terms (logistic regression)",
                "tree_shap+linear_terms": "exact TreeSHAP + linear terms (blend)",
                "path_attribution+linear_terms": "fast path attribution + linear terms (blend)"}
glance: dict[str, object] = {}
if has_value:
    glance.update({
        "value at risk, all scored (currency units)": round(plan["total_value_at_risk"], 2),
        "value at risk, selected (currency units)": round(plan["total_value_at_risk_selected"], 2),
        "expected benefit of the list (currency units)": round(plan["total_expected_benefit_selected"], 2),
    })
else:
    glance["value at risk and expected benefit"] = "not available: no customer value is known"
glance["churn horizon (days)"] = manifest["horizon_days"]
glance["reasons on the list"] = (", ".join(f"{METHOD_WORDS.get(m, m)}: {n:,}" for m, n in methods.items())
                                 if has_list else "-")
pd.Series(glance, name="value", dtype=object).to_frame()

# %% [markdown]
# ## Who was left out of the population
#
# Customers of the customers table who were not scored at the scoring date, by reason, and
# the column or config key that decides it. Customers a configurable rule left out (today the
# `inactivity` look-back) are listed by id in `data/outputs/excluded.csv`; only the counts are
# shown here.

# %%
not_in_population = plan.get("not_in_population")
excluded = (pd.read_csv(excluded_file, dtype={"customer_id": "str", "reason": "str", "setting": "str"})
            if excluded_file.is_file() else None)
if not_in_population is None and excluded is None:
    display(Markdown("*These outputs predate the population counts: rerun `churn score` to see who was left out.*"))
else:
    counts = pd.Series(not_in_population or {}, dtype="int64")
    in_file = (excluded.groupby("reason").size() if excluded is not None and len(excluded) else pd.Series(dtype="int64"))
    settings = (excluded.groupby("reason")["setting"].first() if excluded is not None and len(excluded)
                else pd.Series(dtype="str"))
    reasons = list(dict.fromkeys([*EXCLUSION_REASONS, *counts.index, *in_file.index]))
    if cfg.labels.definition != "inactivity" and not in_file.get("no_transaction_in_lookback", 0):
        reasons.remove("no_transaction_in_lookback")  # the look-back rule applies to inactivity churn only
    left_out = pd.DataFrame([{
        "reason": reason.replace("_", " "),
        "customers": int(counts.get(reason, in_file.get(reason, 0))),
        "listed in excluded.csv": int(in_file.get(reason, 0)),
        "meaning": readable(EXCLUSION_REASONS.get(reason, (reason, ""))[0]),
        "controlled by": readable(settings.get(reason, EXCLUSION_REASONS.get(reason, ("", "-"))[1])),
    } for reason in reasons]).set_index("reason")
    total = int(left_out["customers"].sum())
    by_rule = int(manifest["rows"].get("excluded", left_out["listed in excluded.csv"].sum()))
    display(Markdown(
        f"**{total:,}** customers of the customers table were not in the population at the scoring date"
        + (f" ({by_rule:,} of them left out by a configurable rule and listed in `excluded.csv`)." if by_rule else ".")
        if total else "Every customer of the customers table was in the population at the scoring date."))
    with pd.option_context("display.max_colwidth", 100):
        display(left_out)

# %% [markdown]
# ## Care segments and actions
#
# Segments follow the care playbook, first match wins: high value and at risk, churn
# warning, high-value established, new, ordinary. Thresholds used this week:

# %%
thresholds = pd.Series(manifest["segment_thresholds"], name="threshold", dtype=object)
if not has_value:
    thresholds = thresholds.map(lambda v: "n/a (no value)" if isinstance(v, float) and np.isinf(v) else v)
    display(Markdown("*With no customer value nobody is high value: only the churn warning, new and ordinary "
                     "segments (and complaint first) are used.*"))
display(thresholds.to_frame())
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
if not has_list:
    display(Markdown("*Nobody is on this week's list, so no action is asked of any team"
                     + (" (see *Why the list is empty* above)." if why_empty else ".") + "*"))
else:
    actions = (scores[scores["selected"]]
               .assign(action=lambda f: f["action"].astype("str"), channel=lambda f: f["channel"].astype("str"),
                       owner=lambda f: f["owner"].astype("str"))
               .groupby(["action", "channel", "owner"], observed=True)
               .agg(customers=("customer_id", "size"), value_at_risk=("value_at_risk", "sum"),
                    expected_benefit=("expected_benefit", "sum"), earliest_deadline=("deadline", "min"))
               .sort_values("customers", ascending=False).reset_index())
    actions = actions.assign(value_at_risk=lambda f: f["value_at_risk"].round(2),
                             expected_benefit=lambda f: f["expected_benefit"].round(2),
                             earliest_deadline=lambda f: f["earliest_deadline"].dt.strftime("%Y-%m-%d"))
    if not has_value:
        actions = actions.drop(columns=["value_at_risk", "expected_benefit"])
    display(actions)

# %% [markdown]
# ## Value at risk by segment
#
# Value at risk = churn probability × retained lifetime value (the customer's lifetime value
# if they stay): what the business expects to lose from each customer if nothing is done.

# %%
labels = [s.replace("_", " ") for s in SEGMENTS]
by_segment = (scores.assign(segment=scores["segment"].astype("str"))
              .groupby("segment")
              .agg(customers=("customer_id", "size"), churn_probability=("churn_probability", "mean"),
                   value_at_risk=("value_at_risk", "sum"), lifetime_value=("lifetime_value", "mean"))
              .reindex(list(SEGMENTS)))
by_segment["customers"] = by_segment["customers"].fillna(0).astype(int)
if has_value:
    selected_risk = scores[scores["selected"]].assign(segment=lambda f: f["segment"].astype("str")).groupby("segment")[
        "value_at_risk"].sum().reindex(list(SEGMENTS)).fillna(0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.2))
    left.barh(labels[::-1], by_segment["value_at_risk"].fillna(0).to_numpy()[::-1], color="#8c8c8c", label="all scored")
    left.barh(labels[::-1], selected_risk.to_numpy()[::-1], color="#c44e52", label="on the list")
    left.set_title("Value at risk per care segment")
    left.set_xlabel("Value at risk (currency units)")
    left.set_ylabel("Care segment")
    left.legend(loc="lower right")
else:
    display(Markdown("*No value at risk: no customer value is known, so only the churn probabilities are shown.*"))
    by_segment = by_segment.drop(columns=["value_at_risk", "lifetime_value"])
    fig, right = plt.subplots(figsize=(7, 4.2))
right.hist(scores["churn_probability"] * 100, bins=40, color="#4c72b0")
warning = manifest["segment_thresholds"].get("churn_warning_probability")
if warning is not None and np.isfinite(warning):
    right.axvline(warning * 100, color="#c44e52", ls="--", label=f"churn warning ({warning:.0%})")
    right.legend(loc="upper right")
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
counted = [c for c in ("selected", "service_obligations", "over_capacity_not_selected") if c in owners]
owners[counted] = owners[counted].astype(int)
if not has_list:
    display(Markdown("*Nobody is on the list: every team's capacity is unused.*"))
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
# The curve adds the customers up in list order. Below: why each scored customer is or is
# not on the list.

# %%
ordered = listed.sort_values("rank")
if not has_list:
    display(Markdown("*Nobody is on the list: no expected benefit to add up.*"))
elif not has_value:
    display(Markdown("*No expected benefit: it needs the value at risk, and no customer value is known; the list "
                     "is ordered by churn risk.*"))
else:
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
reasons_table = pd.Series(plan["selection_reasons"], name="customers")
reasons_table = reasons_table.reindex([*[r for r in SELECTION_REASONS if r in reasons_table.index],
                                       *[r for r in reasons_table.index if r not in SELECTION_REASONS]])
reasons_table = reasons_table.rename_axis("selection reason").to_frame()
reasons_table["meaning"] = [REASON_WORDS.get(r, "") for r in reasons_table.index]
with pd.option_context("display.max_colwidth", 100):
    display(reasons_table)

# %% [markdown]
# ## The top of the list
#
# The first 15 customers, with what to do, by whom, by when, and why (reasons in plain words).

# %%
reason_columns = [c for c in listed.columns if c.startswith("reason_") and c != "reason_method"]
if not has_list:
    display(Markdown("*Nobody is on the list.*"))
else:
    shown = ["rank", "customer_id", "segment", "churn_probability", "next_horizon_value_if_retained", "value_at_risk",
             "action", "owner", "deadline", *reason_columns]
    top_rows = ordered.head(15).reindex(columns=shown)
    display(top_rows.dropna(axis=1, how="all") if not has_value else top_rows)

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
if drift.get("note"):
    display(Markdown(f"> {drift['note']}"))
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

# %% [markdown]
# ## Ranking, uplift classes and the holdout
#
# Uplift is the churn probability a contact takes away: P(churn | not contacted) - P(churn |
# contacted), learned by `churn train` from past contacts with a randomised control group.
# `scoring.ranking: uplift` ranks by uplift x retained lifetime value - cost; `value_at_risk` by
# churn risk x retained lifetime value x success rate - cost. Both lists are compared below
# (before the holdout), and a seeded share of each list is kept as control.

# %%
ranking = plan.get("ranking", {"used": "value_at_risk", "note": ""})
holdout = plan.get("holdout", {"controls": 0, "share": 0})
display(Markdown(f"Ranked by **{ranking['used']}** (asked: {ranking.get('requested', ranking['used'])}). "
                 f"Randomised control kept out of the list: **{holdout['controls']:,}** "
                 f"(share {holdout['share']}, seed {holdout.get('seed')})."))
if ranking.get("note"):
    display(Markdown(f"> {ranking['note']}"))
comparison = plan.get("ranking_comparison")
if comparison:
    display(pd.DataFrame(comparison).T.rename_axis("ranking"))
    classes = pd.Series(plan.get("selected_by_uplift_class", {}), name="listed customers")
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(classes.index, classes.to_numpy(), color="#4c72b0")
    ax.set_title("Listed customers by uplift class")
    ax.set_xlabel("Uplift class")
    ax.set_ylabel("Customers (count)")
    fig.tight_layout()
    plt.show()
else:
    display(Markdown("No uplift model was used (no contacts table with a randomised control group, or "
                     "`churn train` found too few control customers): the list is ranked by value at risk."))

# %% [markdown]
# ## Campaign effects: past contacts vs randomised control
#
# From `churn effects` (`reports/effects.csv`): for past contacts with a randomised control group,
# the churn prevented (control rate - contacted rate) within the horizon with its 95% interval,
# overall, per care segment (placed by the champion models, as the list places customers), per action
# and per customer segment; value kept, satisfaction and repurchase are in the
# same table, with the sample size a future test needs to detect each observed effect.

# %%
effects_file = Path(cfg.paths.reports_dir) / "effects.csv"
effects_summary = Path(cfg.paths.reports_dir) / "effects.json"
if effects_summary.is_file() and json.loads(effects_summary.read_text()).get("status") == "measured":
    effects_table = pd.read_csv(effects_file)
    summary_effects = json.loads(effects_summary.read_text())
    fig = effects_figure(effects_table)  # the chart `churn effects` writes to reports/effects.png
    plt.show()
    others = effects_table[(effects_table["group"] == "all")][["outcome", "contacted", "control", "mean_contacted",
                                                               "mean_control", "effect", "low", "high", "p_value",
                                                               "needed_contacted_per_test"]]
    display(others.set_index("outcome"))
    truth = summary_effects.get("generator_average_effect")
    if truth:
        display(Markdown(f"Generated data: the generator's own churn prevented per contact is {truth['value']:.4f}, "
                         f"{'inside' if truth['within_interval'] else 'outside'} the interval."))
elif effects_summary.is_file():
    display(Markdown(f"No campaign effect measured: {json.loads(effects_summary.read_text()).get('why')}"))
else:
    display(Markdown("`churn effects` has not been run for this config (no `reports/effects.json`)."))

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
# # 1. Data overview
#
# What the latest pipeline run was given, and what the customers look like: the validation
# summary, who was in the population at each training cutoff (and who a rule left out),
# activity and value, RFM segments and lifecycle stages, complaint volumes and complaints that
# missed their service-level target.
#
# The notebook only reads the pipeline's outputs (`reports/validation.json`,
# `reports/features_summary.json`, `data/features/*.parquet`) and the validated input
# tables; it shows aggregates and never a complaint's text or any customer detail.
# Only the customers table is required: a section whose table is not in the config
# (transactions, complaints) says so instead of drawing an empty chart.
# The config comes from `CHURN_CONFIG` (set by `churn report`), else `configs/default.yaml`.

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by mlflow

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from features.catalogue import LIFECYCLE_STAGES, RFM_SEGMENT_RULES, RFM_SEGMENTS
from features.contract import PRIORITY_TIERS
from features.labels import EXCLUSION_REASONS
from models.rules import breached_targets
from pipelines.outputs import current_paths
from pipelines.report import notebook_config
from pipelines.tables import load_tables

# %matplotlib inline

cfg, config_path = notebook_config()
reports = Path(cfg.paths.reports_dir)
features_dir = Path(cfg.paths.features_dir)
display(Markdown(f"Config: `{config_path}`"))

# %% [markdown]
# ## Validation summary
#
# Every input table passed the data contract (`churn validate`); rows and date range per table.

# %%
validation = json.loads(current_paths(cfg, "validate")["validation.json"].read_text())
summary = pd.DataFrame([
    {"table": name, "rows": entry["rows"], "first event": entry.get("first", ""), "last event": entry.get("last", ""),
     "columns": len(entry.get("columns", []))}
    for name, entry in validation["tables"].items() if name != "as_of"
]).set_index("table")
display(Markdown(f"Data complete up to **{validation['as_of']}** (exclusive); all tables valid: "
                 f"**{validation['valid']}**."))
summary

# %% [markdown]
# ## Training cutoffs and the population
#
# At each training cutoff the population is every customer who had signed up and not closed
# before it (and, for `labels.definition: inactivity`, made a transaction in the
# `labels.inactivity_lookback_days` before it). The table counts who was in and who was left
# out, per reason, and the churn rate within the horizon; the last row is the scoring date.
# The customers a configurable rule left out are listed by id in
# `data/features/excluded.parquet` (not shown here).

# %%
def readable(text: str) -> str:
    """A column or config key in words (`customers.signup_date` -> `customers.signup date`)."""
    return str(text).replace("_date", " date")


feature_files = current_paths(cfg, "features")  # every file from one run of `churn features`
features_summary = json.loads(feature_files["features_summary.json"].read_text())
train_summary = features_summary["train"]
per_cutoff = pd.DataFrame({
    "customers": pd.Series(train_summary["rows_per_cutoff"]),
    "churn rate": pd.Series(train_summary["churn_rate_per_cutoff"]),
}).rename_axis("cutoff")
per_cutoff.index = pd.to_datetime(per_cutoff.index)
left_out_per_cutoff = train_summary.get("not_in_population_per_cutoff")
rules = features_summary.get("population_rules") or {
    name: {"meaning": meaning, "controlled_by": key} for name, (meaning, key) in EXCLUSION_REASONS.items()}
rules = {name: rules[name] for name in sorted(rules, key=lambda n: list(EXCLUSION_REASONS).index(n)
                                              if n in EXCLUSION_REASONS else len(EXCLUSION_REASONS))}
if features_summary["label_definition"] != "inactivity":  # the look-back rule applies to inactivity churn only
    rules.pop("no_transaction_in_lookback", None)
reason_label = {name: f"left out: {name.replace('_', ' ')}" for name in rules}
population = per_cutoff[["customers"]].rename(columns={"customers": "in population"})
if left_out_per_cutoff is None:
    display(Markdown("*This features summary predates the population counts: rerun `churn features` to see "
                     "who each rule left out.*"))
else:
    counts = pd.DataFrame(left_out_per_cutoff).T.reindex(columns=list(rules)).fillna(0).astype(int)
    counts.index = pd.to_datetime(counts.index)
    population = population.join(counts.rename(columns=reason_label))
population = population.assign(**{"churn rate (%)": (per_cutoff["churn rate"] * 100).round(2)})
population.index = population.index.strftime("%Y-%m-%d")
scoring = features_summary.get("score", {})
if "not_in_population" in scoring:
    population.loc[f"{pd.Timestamp(scoring['cutoff']).date()} (scoring date)"] = {
        "in population": scoring.get("rows"),
        **{reason_label[name]: scoring["not_in_population"].get(name, 0) for name in rules},
        "churn rate (%)": np.nan}
population = population.rename_axis("cutoff")
display(population)
with pd.option_context("display.max_colwidth", 100):
    display(pd.DataFrame([{"reason": name.replace("_", " "), "meaning": readable(rule["meaning"]),
                           "controlled by": readable(rule["controlled_by"])} for name, rule in rules.items()])
            .set_index("reason"))

# %%
horizon = features_summary["horizon_days"]
definition = features_summary["label_definition"]
if len(per_cutoff) < 2:
    only = per_cutoff.iloc[0]
    display(Markdown(
        f"One training cutoff ({per_cutoff.index[0]:%Y-%m-%d}): {only['churn rate'] * 100:.1f}% of its "
        f"{int(only['customers']):,} customers churned within {horizon} days ({definition}). A trend over "
        "cutoffs needs more than one (`labels.cutoffs.count`), so no trend chart is drawn."))
else:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.plot(per_cutoff.index, per_cutoff["churn rate"] * 100, marker="o")
    ax.set_title(f"Churn rate within {horizon} days of each training cutoff ({definition})")
    ax.set_xlabel("Training cutoff (date)")
    ax.set_ylabel("Customers who churned (%)")
    ax.set_ylim(bottom=0)
    fig.autofmt_xdate()
    plt.show()

# %% [markdown]
# ## Activity and value
#
# Distributions over the customers eligible at the scoring date (`data/features/score.parquet`).

# %%
score = pd.read_parquet(feature_files["score.parquet"])
train = pd.read_parquet(feature_files["train.parquet"])
cutoff_count = train["cutoff"].nunique()
display(Markdown(f"{len(score):,} customers eligible at the scoring date; training table: {len(train):,} rows "
                 f"over {cutoff_count} cutoff{'s' if cutoff_count != 1 else ''}."))

VALUE_BANDS = [-np.inf, 0, 1_000, 5_000, 20_000, 100_000, np.inf]
VALUE_LABELS = ["< 0", "0-1k", "1k-5k", "5k-20k", "20k-100k", "> 100k"]
panels = (
    ("transaction_count_365d", "Transactions in the last 365 days", "Transactions (count, top 1% clipped)"),
    ("transaction_amount_365d", "Net transaction value, last 365 days", "Net value band (currency units)"),
    ("days_since_last_transaction", "Days since the last transaction", "Days (top 1% clipped)"),
)
panels = tuple(panel for panel in panels if panel[0] in score)
if not panels:
    display(Markdown("**No transactions table in this config** (`data.tables.transactions`): activity and value "
                     "are not available, nor the RFM segments and lifecycle stages built from them. "
                     + ("Tenure, from the customers table, is shown instead." if "tenure_days" in score else "")))
    if "tenure_days" in score:
        tenure_years = score["tenure_days"].dropna().to_numpy(dtype=float) / 365.25
        fig, ax = plt.subplots(figsize=(8, 3.8))
        ax.hist(tenure_years, bins=40, color="#4c72b0")
        ax.set_title("Tenure at the scoring date")
        ax.set_xlabel("Years since signup")
        ax.set_ylabel("Customers (count)")
        plt.show()
else:
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (column, title, xlabel) in zip(axes[0], panels):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Customers (count)")
        values = score[column].dropna().to_numpy(dtype=float)
        if column == "transaction_amount_365d":  # heavy-tailed: customers per value band
            bands = pd.cut(values, VALUE_BANDS, labels=VALUE_LABELS, right=False).value_counts().reindex(VALUE_LABELS)
            ax.bar(VALUE_LABELS, bands.to_numpy(), color="#4c72b0")
        else:
            high = np.quantile(values, 0.99) if len(values) else 1.0
            ax.hist(np.clip(values, None, high), bins=40, color="#4c72b0")
    fig.suptitle("Activity and value at the scoring date")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## RFM segments and lifecycle stages
#
# Left: how many customers sit in each segment today. Right: the share of each segment's
# customers who churned within the horizon, over every training cutoff.

# %%
def segment_view(column: str, order: tuple[str, ...], label: str) -> None:
    """Customers per level today, and the historical churn rate per level (training table)."""
    if column not in score:
        display(Markdown(f"*No {label}s: the `{column}` feature needs the transactions table, which this "
                         "config does not have.*"))
        return
    today = score[column].astype("str").value_counts().reindex(order, fill_value=0)
    rate = train.groupby(train[column].astype("str"))["churned"].mean().reindex(order) * 100
    overall = train["churned"].mean() * 100
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
    left.barh(list(order)[::-1], today.to_numpy()[::-1], color="#4c72b0")
    left.set_title(f"Customers per {label} at the scoring date")
    left.set_xlabel("Customers (count)")
    left.set_ylabel(label[0].upper() + label[1:])
    right.barh(list(order)[::-1], rate.fillna(0).to_numpy()[::-1], color="#dd8452")
    right.axvline(overall, color="grey", ls="--", label=f"all customers ({overall:.1f}%)")
    right.set_title(f"Churn rate per {label} (all training cutoffs)")
    right.set_xlabel("Customers who churned within the horizon (%)")
    right.set_ylabel(label[0].upper() + label[1:])
    right.legend(loc="lower right")
    fig.tight_layout()
    plt.show()


segment_view("rfm_segment", RFM_SEGMENTS, "RFM segment")
if "rfm_segment" in score:
    display(pd.DataFrame(RFM_SEGMENT_RULES, columns=["segment", "rule (first match wins; scores are 1-5 quintiles)"]))

# %%
segment_view("lifecycle_stage", LIFECYCLE_STAGES, "lifecycle stage")

# %% [markdown]
# ## Complaints
#
# Volumes by category, channel, priority tier and month, from the validated complaints
# table. The free text of a complaint is never read here.

# %%
tables = load_tables(cfg)
complaints = tables.complaints
has_complaints = complaints is not None and not complaints.empty
if not has_complaints:
    display(Markdown("**No complaints in this data** (" + ("the complaints table is empty" if complaints is not None
                     else "no `data.tables.complaints` in the config") + "): complaint volumes, service-level "
                     "breaches and the complaint targets below cannot be shown."))
    complaints = pd.DataFrame(columns=["complaint_id", "customer_id", "opened_at", "category"])
complaints = complaints.drop(columns=["text"], errors="ignore")
complaints["month"] = pd.to_datetime(complaints["opened_at"]).dt.to_period("M").dt.to_timestamp()
customers_total = len(tables.customers)
if has_complaints:
    display(Markdown(f"{len(complaints):,} complaints, suggestions and inquiries from "
                     f"{complaints['customer_id'].nunique():,} of {customers_total:,} customers."))

# %%
def count_bars(ax: plt.Axes, column: str, title: str, label: str, order: list[str] | None = None) -> None:
    """Horizontal bars of complaint counts per level of `column`."""
    ax.set_title(title)
    ax.set_xlabel("Complaints (count)")
    ax.set_ylabel(label)
    if column not in complaints:
        ax.text(0.5, 0.5, f"no `{column}` column", ha="center", va="center", transform=ax.transAxes)
        return
    counts = complaints[column].astype("str").where(complaints[column].notna(), "(missing)").value_counts()
    if order is not None:
        counts = counts.reindex([*order, *[c for c in counts.index if c not in order]], fill_value=0)
    counts = counts.head(15)
    ax.barh(counts.index[::-1], counts.to_numpy()[::-1], color="#4c72b0")


if has_complaints:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    count_bars(axes[0], "category", "Complaints by category (top 15)", "Category")
    count_bars(axes[1], "channel", "Complaints by channel", "Channel")
    count_bars(axes[2], "priority", "Complaints by priority tier", "Priority tier", list(PRIORITY_TIERS))
    fig.tight_layout()
    plt.show()

# %%
if has_complaints:
    monthly = complaints.groupby("month").size()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(monthly.index, monthly.to_numpy(), width=20, color="#4c72b0")
    ax.set_title("Complaints received per month")
    ax.set_xlabel("Month opened")
    ax.set_ylabel("Complaints (count)")
    fig.autofmt_xdate()
    plt.show()

# %%
if has_complaints:
    top_categories = complaints["category"].astype("str").value_counts().head(8).index
    heat = (complaints[complaints["category"].astype("str").isin(top_categories)]
            .assign(category=lambda f: f["category"].astype("str"))
            .pivot_table(index="category", columns="month", values="opened_at", aggfunc="count", fill_value=0)
            .reindex(top_categories))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    image = ax.imshow(heat.to_numpy(dtype=float), aspect="auto", cmap="Blues")
    ax.set_yticks(range(len(heat.index)), heat.index)
    step = max(1, len(heat.columns) // 12)
    ax.set_xticks(range(0, len(heat.columns), step), [c.strftime("%Y-%m") for c in heat.columns[::step]],
                  rotation=45, ha="right")
    ax.set_title("Complaint heat map: top categories by month")
    ax.set_xlabel("Month opened")
    ax.set_ylabel("Category")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="Complaints (count)")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Service-level targets
#
# A complaint breaches its target when its first reply or its resolution took longer than
# its tier allows (`features.complaint_targets`), or it is still waiting past that time at the
# as-of date. Same rule as the complaint features and the rule mining.

# %%
targets = cfg.features.complaint_targets
as_of_us = int(pd.Timestamp(tables.as_of).as_unit("us").value // 1_000) if tables.as_of is not None else None
late = breached_targets(complaints, as_of_us, targets) if as_of_us is not None and has_complaints else None
if not has_complaints:
    display(Markdown("*No complaints: service-level breaches cannot be measured.*"))
else:
    display(pd.DataFrame({tier: {"first response (hours)": t.first_response_hours, "resolution (hours)": t.resolution_hours}
                          for tier, t in targets.items()}).T.rename_axis("tier"))
if has_complaints and late is None:
    display(Markdown("*The complaints have no priority or no response/resolution times: breaches cannot be measured.*"))
elif late is not None:
    complaints["breached"] = late
    by_tier = complaints.groupby(complaints["priority"].astype("str"))["breached"].mean().reindex(list(PRIORITY_TIERS)) * 100
    by_month = complaints.groupby("month")["breached"].mean() * 100
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.2), gridspec_kw={"width_ratios": [1, 2]})
    left.bar(by_tier.index, by_tier.fillna(0).to_numpy(), color="#c44e52")
    left.set_title("Complaints past their target, by tier")
    left.set_xlabel("Priority tier")
    left.set_ylabel("Complaints past target (%)")
    right.plot(by_month.index, by_month.to_numpy(), marker="o", color="#c44e52")
    right.set_title("Complaints past their target, by month opened")
    right.set_xlabel("Month opened")
    right.set_ylabel("Complaints past target (%)")
    right.set_ylim(bottom=0)
    fig.autofmt_xdate()
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## Targets from the care playbook
#
# The source documents set a complaint rate below 2% of customers, satisfaction of at least
# 90% and response timeliness of at least 99%. Measured over the last 12 months of data.

# %%
if not has_complaints:
    display(Markdown("*No complaints: the complaint rate, satisfaction and timeliness targets cannot be measured.*"))
elif tables.as_of is not None:
    recent = complaints[complaints["opened_at"] >= tables.as_of - pd.DateOffset(months=12)]
    kpis = {"complaint rate (customers with a complaint, % of customers)":
            (recent["customer_id"].nunique() / customers_total * 100, "< 2")}
    if "satisfaction" in recent and recent["satisfaction"].notna().any():
        kpis["satisfied at closure (score 4-5, % of rated)"] = ((recent["satisfaction"].dropna() >= 4).mean() * 100, ">= 90")
    if "breached" in recent:
        kpis["within service-level target (% of complaints)"] = ((~recent["breached"]).mean() * 100, ">= 99")
    display(pd.DataFrame(kpis, index=["measured", "target"]).T.assign(
        measured=lambda f: f["measured"].astype(float).round(1)))

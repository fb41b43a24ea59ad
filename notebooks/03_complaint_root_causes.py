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
# # 3. Complaint root causes
#
# Which complaints come together, in which order, which categories start the chains (the
# system node to fix first), and which complaint patterns are followed by churn, by a
# complaint still open at the end, or by a missed service target.
#
# A **basket** is one customer's complaints within `rules.window_days` of the first one (an
# episode). Support: share of baskets with the pattern; confidence: share of baskets with the
# left side that also have the right side; lift: how many times more often than chance.
#
# Sources: `data/outputs/complaint_rules.csv`, `complaint_order_pairs.csv`,
# `complaint_chains.csv`, `root_causes.csv`, `churn_rules.csv`, the chain diagram
# `complaint_chains.png` and `reports/rules_summary.json`, written by `churn rules`.
# These tables hold categories and counts only: no customer ids and no complaint text.
# Data without a complaints table (a retailer's purchase log, a customers-only snapshot) has
# nothing to mine: the notebook then says so and shows no empty charts.

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, imported by mlflow

import json
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Image, Markdown, display

from pipelines.outputs import current_paths
from pipelines.report import latest_run, notebook_config

# %matplotlib inline

cfg, config_path = notebook_config(max_colwidth=80)
outputs = Path(cfg.paths.outputs_dir)
rule_files = current_paths(cfg, "rules")  # every file from one run of `churn rules`
rules_summary = json.loads(rule_files["rules_summary.json"].read_text())
rules = pd.read_csv(rule_files["complaint_rules.csv"])
pairs = pd.read_csv(rule_files["complaint_order_pairs.csv"])
chains = pd.read_csv(rule_files["complaint_chains.csv"])
roots = pd.read_csv(rule_files["root_causes.csv"])
churn_rules = pd.read_csv(rule_files["churn_rules.csv"])
has_complaints = rules_summary["counts"].get("complaints", 0) > 0
NOTHING_MINED = "*No complaints were mined (see the summary above): nothing to show here.*"


def short(text: str, width: int = 60) -> str:
    """A rule's text, tidied for an axis label."""
    tidy = str(text).replace("category=", "").replace("_", " ")
    return textwrap.shorten(tidy, width=width, placeholder="...")


def empty_chart(title: str, message: str) -> None:
    """A titled placeholder chart when a table has no rows, so the report says why."""
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    plt.show()


display(Markdown(f"Config: `{config_path}`"))

# %% [markdown]
# ## Summary of the latest run

# %%
run = latest_run(cfg, "rules")
counts = rules_summary["counts"]
settings = rules_summary["settings"]
if not has_complaints:
    why = "; ".join(rules_summary["messages"]) or "the complaints table has no rows"
    source = ("this config has no complaints table (`data.tables.complaints`)" if "complaints" not in cfg.data.tables
              else "the complaints table has no complaint in the mined period")
    display(Markdown(
        (f"MLflow run `{run.info.run_id}`; " if run is not None else "")
        + f"data as of {str(rules_summary['as_of'])[:10]}: **no complaints to mine**: {source} (the rules stage says: "
        f"*{why}*). Complaint rules, chains, root causes and the complaint patterns linked to churn all need "
        "complaints, so every section below is empty."))
else:
    display(Markdown(
        (f"MLflow run `{run.info.run_id}`; " if run is not None else "")
        + f"data as of {str(rules_summary['as_of'])[:10]}: **{counts.get('complaints', 0):,} complaints** from "
        f"{counts.get('customers', 0):,} customers in **{counts.get('baskets', 0):,} baskets** of "
        f"{settings['window_days']} days, mined with {settings['algorithm']} (support at least "
        f"{counts.get('min_support_used', settings['min_support']):.4f}, i.e. "
        f"{counts.get('min_basket_count_used', settings['min_basket_count'])} baskets; lift at least {settings['min_lift']})."))
    for message in rules_summary["messages"]:
        display(Markdown(f"> {message}"))
    display(pd.Series(dtype=object, name="count", data={
        "complaint rules": counts.get("rules", 0),
        "ordered pairs (A usually before B)": counts.get("ordered_pairs", 0),
        "chains": counts.get("chains", 0),
        "root categories": counts.get("root_categories", 0),
        "churn / open / breach rules": counts.get("outcome_rules", counts.get("churn_rules", 0)),
        "churn rate after a basket (base rate)": round(counts.get("churn_base_rate") or 0.0, 4),
    }).to_frame())

# %% [markdown]
# ## Top complaint rules
#
# "A → B": customers who complain about A in an episode also complain about B, `lift` times
# more often than chance.

# %%
if not has_complaints:
    display(Markdown(NOTHING_MINED))
else:
    if rules.empty:
        empty_chart("Top complaint rules by lift", "No complaint rule passed the thresholds")
    else:
        top = rules.sort_values(["lift", "support"], ascending=False).head(15)
        labels = [f"{short(a, 40)}  \u2192  {short(b, 30)}" for a, b in zip(top["antecedents"], top["consequents"])]
        fig, ax = plt.subplots(figsize=(10, 0.4 * len(top) + 1.5))
        bars = ax.barh(labels[::-1], top["lift"].to_numpy()[::-1], color="#4c72b0")
        ax.bar_label(bars, labels=[f"conf. {c:.0%}, {n} baskets" for c, n in zip(top["confidence"][::-1], top["baskets"][::-1])],
                     fontsize=8, padding=3)
        ax.axvline(1, color="grey", ls="--")
        ax.set_title(f"Top {len(top)} complaint rules by lift")
        ax.set_xlabel("Lift (times more often than chance; 1 = independent)")
        ax.set_ylabel("Rule: complaint A \u2192 complaint B")
        ax.set_xlim(0, top["lift"].max() * 1.35)
        fig.tight_layout()
        plt.show()
    display(rules.head(15)[["antecedents", "consequents", "baskets", "customers", "support", "confidence", "lift"]])

# %% [markdown]
# ## Complaint chains
#
# Rules say what comes together; the order test says what comes first. A chain
# A → B → C holds when each step is significantly more often in that order
# (sign test, Holm-adjusted at `rules.order_alpha`).

# %%
if not has_complaints:
    display(Markdown(NOTHING_MINED))
else:
    if rule_files["complaint_chains.png"].is_file():
        display(Image(filename=str(rule_files["complaint_chains.png"])))
    display(chains.head(10)[["rank", "chain", "baskets_in_order", "customers_in_order", "ordered_confidence",
                             "weakest_step_confidence", "churn_rate_after", "churn_lift"]])

# %%
if has_complaints:  # the chains cell above already said why there is nothing
    significant = pairs[pairs["significant"].astype(bool)] if not pairs.empty else pairs
    if significant.empty:
        empty_chart("Which complaint comes first", "No ordered complaint pair is significant")
    else:
        matrix = significant.pivot_table(index="first_category", columns="then_category", values="ordered_confidence")
        fig, ax = plt.subplots(figsize=(1.1 * len(matrix.columns) + 4, 0.6 * len(matrix.index) + 2.5))
        image = ax.imshow(matrix.to_numpy(dtype=float) * 100, cmap="Oranges", aspect="auto", vmin=0)
        ax.set_xticks(range(len(matrix.columns)), [short(c, 20) for c in matrix.columns], rotation=35, ha="right")
        ax.set_yticks(range(len(matrix.index)), [short(c, 24) for c in matrix.index])
        for (i, j), value in pd.DataFrame(matrix.to_numpy()).stack().items():
            if pd.notna(value):
                ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=8)
        ax.grid(False)
        ax.set_title("Significant ordered pairs: share of A's episodes followed by B")
        ax.set_xlabel("Then (B)")
        ax.set_ylabel("First (A)")
        fig.colorbar(image, ax=ax, label="Episodes with A followed by B (%)")
        fig.tight_layout()
        plt.show()

# %% [markdown]
# ## Root categories to fix first
#
# A root category starts chains and has no significant complaint before it. Ranked by the
# complaints that follow it downstream: fixing it first removes the most follow-up complaints.

# %%
if not has_complaints:
    display(Markdown(NOTHING_MINED))
else:
    if roots.empty:
        empty_chart("Root categories to fix first", "No chains, so no root categories")
    else:
        ranked = roots.sort_values("downstream_complaints", ascending=False).head(12)
        colours = ["#c44e52" if bool(r) else "#8c8c8c" for r in ranked["is_root"]]
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(ranked) + 1.5))
        ax.barh([short(c, 30) for c in ranked["category"]][::-1], ranked["downstream_complaints"].to_numpy()[::-1],
                color=colours[::-1])
        ax.set_title("Complaints that follow each category downstream (red = root category)")
        ax.set_xlabel("Downstream complaints (count)")
        ax.set_ylabel("Complaint category")
        fig.tight_layout()
        plt.show()
    display(roots.head(12)[["rank", "category", "is_root", "downstream_categories", "downstream_complaints",
                            "customers_affected", "share_of_baskets_leading", "churn_rate_after", "churn_lift"]])

# %% [markdown]
# ## Complaint patterns linked to churn
#
# Outcome rules: complaint patterns after which the customer churned (`churned`), the
# complaint was still open at the end (`open_complaint`) or a service target was missed
# (`breached_target`) more often than the base rate. Lift = outcome rate / base rate.

# %%
if not has_complaints:
    display(Markdown(NOTHING_MINED))
else:
    if churn_rules.empty:
        empty_chart("Complaint patterns linked to churn", "No outcome rule passed outcome_min_lift")
    else:
        outcomes = list(dict.fromkeys(churn_rules["outcome"]))
        fig, axes = plt.subplots(1, len(outcomes), figsize=(7.5 * len(outcomes), 5.5), squeeze=False)
        for ax, outcome in zip(axes[0], outcomes):
            top = churn_rules[churn_rules["outcome"] == outcome].sort_values("lift", ascending=False).head(10)
            bars = ax.barh([short(a, 45) for a in top["antecedents"]][::-1], top["lift"].to_numpy()[::-1], color="#dd8452")
            ax.bar_label(bars, labels=[f"{r:.0%} vs {b:.0%}" for r, b in zip(top["outcome_rate"][::-1], top["base_rate"][::-1])],
                         fontsize=8, padding=3)
            ax.axvline(1, color="grey", ls="--")
            ax.set_xlim(0, top["lift"].max() * 1.3)
            ax.set_title(f"Patterns followed by '{outcome}' (label: rate vs base)")
            ax.set_xlabel("Lift over the base rate")
            ax.set_ylabel("Complaint pattern in the episode")
        fig.tight_layout()
        plt.show()
    display(churn_rules.sort_values(["outcome", "lift"], ascending=[True, False]).groupby("outcome").head(5)
            [["outcome", "antecedents", "baskets_with_antecedent", "customers_with_outcome", "outcome_rate",
              "base_rate", "lift"]])

"""`churn effects`: what past retention contacts did, contacted vs randomised control.

Reads the uplift rows `churn features` wrote (`{paths.features_dir}/uplift.parquet`: each
customer contacted or kept as control just after a month-start cutoff, with the churn label
of that cutoff) and the transactions and surveys tables, and compares contacted and control
customers over the label window on churn, value kept, satisfaction and repurchase, overall,
per care segment (as `churn score` assigns it, from the champion models), per action and per
customer segment (`models/uplift/effects.py`): difference, 95% interval,
p-value and the sample size a future test needs to detect it. Writes, together,
`reports/effects.csv`, `reports/effects.json` and `reports/effects.png`, and logs them to MLflow.
Without a control group it says so and writes only the JSON with the reason.
On generated data the generator's own average contact effect (from `evaluation.truth_dir`)
is reported beside the estimate, with whether the interval holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from features.contract import Tables
from models.uplift.data import control_group_problem
from models.uplift.effects import campaign_effects, window_outcomes
from pipelines.config import Config
from pipelines.io import StageError, StageOutputs, to_safe_csv
from pipelines.outputs import stage_paths
from pipelines.tables import load_tables
from pipelines.tracking import tracked_run
from pipelines.uplift import read_uplift_table, true_uplift

EFFECTS_CSV = "effects.csv"
EFFECTS_JSON = "effects.json"
EFFECTS_PNG = "effects.png"


def effects_figure(table: pd.DataFrame) -> plt.Figure:
    """Churn prevented (control - contacted rate) with its 95% interval, overall, per segment and action."""
    churn = table[table["outcome"] == "churned"].dropna(subset=["effect"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * max(len(churn), 4) + 1.2))
    labels = [f"{g}: {lvl}" if g != "all" else "all contacts" for g, lvl in zip(churn["group"], churn["level"])]
    y = np.arange(len(churn))[::-1]
    ax.errorbar(churn["effect"] * 100, y, xerr=[(churn["effect"] - churn["low"]) * 100,
                                               (churn["high"] - churn["effect"]) * 100], fmt="o", capsize=3)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(y, labels)
    ax.set_xlabel("Churn prevented by the contact (percentage points, 95% interval)")
    ax.set_title("Past contacts vs randomised control: churn within the horizon")
    fig.tight_layout()
    return fig


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Compare contacted and control customers; write the table, summary and chart; log to MLflow."""
    say = progress or (lambda message: None)
    reports = Path(cfg.paths.reports_dir)
    outputs = StageOutputs("effects", stage_paths(cfg, "effects"), say)
    with outputs, tracked_run(cfg, stage="effects") as active:
        rows = read_uplift_table(cfg)
        if rows is None:
            raise StageError(f"{Path(cfg.paths.features_dir) / 'uplift.parquet'} does not exist: run "
                             "`churn features --config ...` first")
        tables = load_tables(cfg)
        why = control_group_problem(tables.contacts) if rows.empty else None
        if rows.empty:
            why = why or "no contact record falls in a treatment window with a complete label window"
            say(f"no campaign effect can be measured: {why}")
            mlflow.set_tag("effects", f"none: {why}"[:500])
            summary: dict[str, object] = {"status": "none", "why": why}
            with outputs.commit() as files:
                files[EFFECTS_JSON].write_text(pd.Series(summary).to_json(indent=2) + "\n", encoding="utf-8")
                to_safe_csv(pd.DataFrame(), files[EFFECTS_CSV])
                plt.close(_empty_figure(why, files[EFFECTS_PNG]))
            return {"run_id": active.info.run_id, "summary": summary, "table": pd.DataFrame()}
        say(f"{len(rows):,} past contact decisions ({int((rows['treatment'] == 0).sum()):,} randomised control) "
            f"at {rows['cutoff'].nunique()} cutoffs; measuring outcomes over the {cfg.labels.horizon_days}-day window")
        measured = window_outcomes(rows, tables.transactions, tables.surveys, cfg.labels.horizon_days)
        care, care_note = past_care_segments(rows, tables, cfg)
        say(care_note)
        if care is not None:
            measured["care_segment"] = care
        table = campaign_effects(measured, ("care_segment", "action", "segment"))
        overall = table[(table["group"] == "all") & (table["outcome"] == "churned")].iloc[0]
        summary = {"status": "measured", "rows": int(len(rows)), "control_rows": int((rows["treatment"] == 0).sum()),
                   "cutoffs": int(rows["cutoff"].nunique()), "horizon_days": cfg.labels.horizon_days,
                   "churn_prevented": {k: _plain(overall[k]) for k in ("effect", "low", "high", "p_value",
                                                                        "needed_contacted_per_test")},
                   "care_segments": care_note,
                   "satisfaction_answers": int(np.isfinite(measured.get("satisfaction", pd.Series(dtype=float))
                                                           .to_numpy(dtype=float)).sum()),
                   "definitions": {"churned": "effect = control rate - contacted rate (churn prevented)",
                                   "value_kept": "value in the label window (labels.value_column), contacted - control",
                                   "satisfaction": "mean CSAT of answers in the label window, contacted - control",
                                   "repurchase": "share with a positive transaction in the window, contacted - control",
                                   "needed_contacted_per_test": "contacted customers a future test needs (controls "
                                   "in the observed ratio) to detect the observed effect, 80% power, 5% two-sided"}}
        if cfg.evaluation.truth_dir:
            truth = true_uplift(rows, Path(cfg.evaluation.truth_dir), cfg.labels.horizon_days)
            if truth is not None:
                treated = rows["treatment"].to_numpy() == 1
                true_mean = float(np.nanmean(truth[treated]))
                summary["generator_average_effect"] = {
                    "value": true_mean, "within_interval": bool(overall["low"] <= true_mean <= overall["high"]),
                    "note": "the generator's true churn prevented per contacted customer (an approximation from its "
                            "monthly hazard and contact effect); a check of the estimate, available on generated data only"}
        ci = summary["churn_prevented"]
        say(f"churn prevented per contact: {ci['effect']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"  # type: ignore[index]
            + (f"; the generator's own: {summary['generator_average_effect']['value']:.4f}"  # type: ignore[index]
               if "generator_average_effect" in summary else ""))
        with outputs.commit() as files:
            to_safe_csv(table, files[EFFECTS_CSV])
            files[EFFECTS_JSON].write_text(pd.Series(summary).to_json(indent=2) + "\n", encoding="utf-8")
            fig = effects_figure(table)
            fig.savefig(files[EFFECTS_PNG], format="png")
            plt.close(fig)
            metrics = {f"effects.{r.group}.{r.level}.{r.outcome}.{k}": float(getattr(r, k))
                       for r in table.itertuples() for k in ("effect", "low", "high")
                       if getattr(r, k) is not None and np.isfinite(getattr(r, k))}
            mlflow.log_metrics({k.replace(" ", "_"): v for k, v in metrics.items()})
            mlflow.log_artifact(str(files[EFFECTS_CSV]))
            mlflow.log_artifact(str(files[EFFECTS_JSON]))
            mlflow.log_artifact(str(files[EFFECTS_PNG]))
    say(f"wrote {reports / EFFECTS_CSV}, {reports / EFFECTS_JSON} and {reports / EFFECTS_PNG}")
    return {"run_id": active.info.run_id, "summary": summary, "table": table}


def past_care_segments(rows: pd.DataFrame, tables: Tables, cfg: Config) -> tuple[np.ndarray | None, str]:
    """Each past contact's care segment at its cutoff, as `churn score` assigns it, and a sentence saying how.

    The champion churn-risk and value models (`scoring.churn_model_uri`, `scoring.value_model_uri`) score
    the row's point-in-time features (all from before the contact), then `care_segments` applies
    `scoring.segments`, its value quantile taken over that cutoff's contact rows (not the whole
    population the list sees). A function of pre-contact features only, so contacted and control stay
    comparable within each segment. None (and why) when no champion model can be used.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from models.boosting import ValueModel
    from models.retention import care_segments
    from pipelines.score import customer_value_source, known_values, load_model, score_customers

    client = MlflowClient()
    try:
        churn, _, _, _ = load_model(cfg.scoring.churn_model_uri, "churn-risk", client)
        source = customer_value_source(cfg)
        value: ValueModel | np.ndarray | None = None
        if source == "model":
            value = load_model(cfg.scoring.value_model_uri, "customer-value", client)[0]  # type: ignore[assignment]
        elif source == "column" and tables.customers is not None:
            value = known_values(tables.customers, rows["customer_id"], cfg)
    except (StageError, MlflowException) as error:
        return None, (f"no effects by care segment: {str(error).splitlines()[0][:300]} (run `churn train` first; "
                      "the care segment needs the champion churn-risk model)")
    models = [churn] + ([value] if isinstance(value, ValueModel) else [])
    problems = [p for model in models for p in model.schema.problems(rows)]
    if problems:
        return None, f"no effects by care segment: the contact rows do not fit the champion models ({problems[0]})"
    scored = score_customers(rows, churn.schema.matrix(rows), churn, value, cfg)
    segment = np.empty(len(rows), dtype=object)
    for _, at in rows.groupby("cutoff", sort=True).indices.items():
        part = scored.iloc[at]
        found, _ = care_segments(part["churn_probability"].to_numpy(), part["retained_lifetime_value"].to_numpy(),
                                 part["tenure_days"].to_numpy(dtype=float), cfg.scoring.segments)
        segment[at] = found["segment"].astype("str").to_numpy()
    return segment, ("care segments of past contacts: the champion models score each contact's features at its cutoff, "
                     "scoring.segments applied per cutoff (value quantile over that cutoff's contact rows)")


def _empty_figure(why: str, path: Path) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, "No campaign effect: " + why[:90], ha="center", va="center", wrap=True)
    fig.savefig(path, format="png")
    return fig


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return value.item() if hasattr(value, "item") else value

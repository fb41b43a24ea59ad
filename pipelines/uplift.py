"""The uplift part of `churn train`: fit and judge the meta-learners, report, log and register.

Reads `{paths.features_dir}/uplift.parquet` (built by `churn features`); when it is empty
(no contacts table, or no randomised control group) says why and registers nothing, and
`churn score` ranks by value at risk. Otherwise writes `reports/uplift_metrics.json` (Qini,
AUUC and uplift@k with bootstrap intervals per learner, the chosen learner and why),
`reports/curves/qini.csv` and `reports/plots/qini.png`, logs the same to MLflow and registers
the refitted model as `contact-uplift` (champion if its held-out Qini beats the champion's).

On generated data the generator's truth (`evaluation.truth_dir`) gives each row's true
uplift; its Spearman correlation with the prediction is reported, never used to choose.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from models.data import FeatureSchema
from models.uplift.learners import UpliftModel
from models.uplift.metrics import point_metrics
from models.uplift.training import UpliftResult, train_uplift
from pipelines.config import Config
from pipelines.io import write_csv, write_json
from pipelines.truth import customer_truth, hazard_at

log = logging.getLogger("pipelines.uplift")

UPLIFT_MODEL_NAME = "contact-uplift"
UPLIFT_FILE = "uplift.parquet"
CONTACT_MONTHS = 3
"""Month starts a contact's effect covers in the generator (91 days): the truth's approximation."""
DAYS_PER_MONTH = 30.4375


def read_uplift_table(cfg: Config) -> pd.DataFrame | None:
    from pipelines.outputs import current_paths

    path = current_paths(cfg, "features")[UPLIFT_FILE]  # from the same generation as the training table
    return pd.read_parquet(path) if path.is_file() else None


def closure_share_within(horizon_days: int, month: int, close_after: tuple[float, float] = (15.0, 75.0)) -> float:
    """Generator mechanics: the chance a decision to leave taken in month `month` after the cutoff
    (uniform in it) closes the account before the horizon ends (closure 15-75 days after deciding)."""
    days = np.linspace(month * DAYS_PER_MONTH, (month + 1) * DAYS_PER_MONTH, 200, endpoint=False)
    room = horizon_days - days - close_after[0]
    return float(np.clip(room / (close_after[1] - close_after[0]), 0.0, 1.0).mean())


def true_uplift(keys: pd.DataFrame, truth_dir: Path, horizon_days: int) -> np.ndarray | None:
    """The generator's true uplift of a contact just after each (customer_id, cutoff): churn within
    the horizon prevented, from the true monthly hazard h at the cutoff and the true relative cut e.

    uplift = sum over the months the contact covers (j = 1..3) of e * h * (1 - h)^(j-1) * the chance a
    decision in month j closes within the horizon; 0 for a customer who already decided to leave.
    An approximation (hazard held at its cutoff level) for reporting only; None without truth.
    """
    hazard = hazard_at(keys, truth_dir, ["hazard", "decided_to_leave"])
    effect = customer_truth(keys["customer_id"], truth_dir, ["true_contact_effect"])
    if hazard is None or effect is None:
        return None
    merged = hazard.assign(true_contact_effect=effect["true_contact_effect"])
    h = merged["hazard"].to_numpy(dtype=float)
    e = merged["true_contact_effect"].to_numpy(dtype=float)
    shares = [closure_share_within(horizon_days, j) for j in range(1, CONTACT_MONTHS + 1)]
    total = sum(e * h * (1 - h) ** (j - 1) * share for j, share in enumerate(shares, 1))
    decided = merged["decided_to_leave"].fillna(False).to_numpy(dtype=bool)
    return np.where(decided, 0.0, total)


def qini_figure(result: UpliftResult) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, curve in result.curves.items():
        label = name.replace("_", "-") + (" (chosen)" if name == result.selected else "")
        ax.plot(curve["share_targeted"], curve["qini"], label=label)
    any_curve = next(iter(result.curves.values()))
    ax.plot(any_curve["share_targeted"], any_curve["qini_random"], "k--", label="random targeting")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_title("Qini curve on the held-out cutoffs")
    ax.set_xlabel("Customers targeted, top share by predicted uplift (0-1)")
    ax.set_ylabel("Churners kept by contacting them (count)")
    ax.legend()
    fig.tight_layout()
    return fig


def fit_and_report(cfg: Config, schema: FeatureSchema, say: Callable[[str], None],
                   save_figure: Callable[[plt.Figure, Path], None], files: dict[str, Path]) -> dict[str, object]:
    """Fit, report and log the uplift model inside the open training run; return its summary.

    Writes into the train stage's new generation (`files`: uplift_metrics.json, qini.csv, qini.png).
    Returns {"status": "trained", ...} or {"status": "none", "why": ...}; registration is separate.
    """
    table = read_uplift_table(cfg)
    if not cfg.uplift.enabled:
        why = "uplift.enabled is false"
    elif table is None:
        why = f"{Path(cfg.paths.features_dir) / UPLIFT_FILE} does not exist: run `churn features` first"
    elif table.empty:
        why = "no uplift rows (no contacts table or no randomised control group; see reports/features_summary.json)"
    else:
        why = ""
    if why:
        summary: dict[str, object] = {"status": "none", "why": why,
                                      "fallback": "churn score ranks by value at risk (scoring.ranking is ignored)"}
        say(f"no uplift model: {why}")
        mlflow.set_tag("uplift", f"none: {why}"[:500])
        write_json(summary, files["uplift_metrics.json"])
        return summary
    assert table is not None
    truth = None
    if cfg.evaluation.truth_dir:
        truth = true_uplift(table, Path(cfg.evaluation.truth_dir), cfg.labels.horizon_days)
    say(f"fitting the uplift learners ({', '.join(cfg.uplift.learners)}) on {len(table):,} rows "
        f"({int((table['treatment'] == 0).sum()):,} randomised control)")
    try:
        result = train_uplift(table, cfg.uplift, cfg.labels.horizon_days, cfg.seed, truth, schema)
    except ValueError as error:
        summary = {"status": "none", "why": str(error), "fallback": "churn score ranks by value at risk"}
        say(f"no uplift model: {error}")
        mlflow.set_tag("uplift", f"none: {error}"[:500])
        write_json(summary, files["uplift_metrics.json"])
        return summary
    chosen = result.metrics[result.selected]
    say(f"uplift: {result.info['selection']}; {result.selected}'s held-out Qini {chosen['qini']['value']:.4f} "
        f"[{chosen['qini']['low']:.4f}, {chosen['qini']['high']:.4f}]"
        + (f"; Spearman with the true uplift {chosen['true_uplift_spearman']['value']:.3f} (report only)"
           if "true_uplift_spearman" in chosen else ""))
    gate = str(result.info["ranking_gate"])
    say("uplift ranking: " + ("earned (its held-out Qini interval is above uplift.min_qini_lower_bound)"
                              if gate == "passed" else f"not trusted, `churn score` ranks by value at risk: {gate}"))
    oracle = result.info.get("oracle_qini")
    if isinstance(oracle, dict):
        say(f"held-out Qini of the generator's true uplift (the best any model could do on these rows): "
            f"{oracle['value']:.4f} [{oracle['low']:.4f}, {oracle['high']:.4f}]")
        mlflow.log_metrics({f"uplift.oracle.qini{suffix}": float(oracle[key]) for key, suffix in
                            (("value", ""), ("low", "_low"), ("high", "_high")) if np.isfinite(oracle[key])})
    mlflow.log_metrics(result.flat_metrics())
    mlflow.set_tag("uplift", result.selected)
    mlflow.set_tag("uplift.ranking_gate", gate[:500])
    curves = pd.concat([c.assign(learner=name) for name, c in result.curves.items()], ignore_index=True)
    write_csv(curves, files["qini.csv"])
    save_figure(qini_figure(result), files["qini.png"])
    summary = {"status": "trained", "selected": result.selected, "metrics": result.metrics, "info": result.info,
               "sign": "uplift = P(churn | not contacted) - P(churn | contacted): positive = the contact keeps customers",
               "bootstrap": {"resamples": cfg.uplift.bootstrap, "level": 0.95, "seed": cfg.seed},
               "true_uplift_note": ("Spearman of predicted vs the generator's true uplift on the held-out rows; "
                                    "a report figure only, never used to choose") if truth is not None else None}
    write_json(summary, files["uplift_metrics.json"])
    mlflow.log_artifact(str(files["uplift_metrics.json"]))
    return {**summary, "_result": result, "_table": table}


def rescore_qini(result: UpliftResult, table: pd.DataFrame, cfg: Config) -> Callable[[Path], float | None]:
    """Qini of a registered uplift bundle on this run's held-out rows (champion comparison)."""
    held = table[table["cutoff"].astype("datetime64[us]").isin(pd.to_datetime(result.info["test_cutoffs"]))] \
        if result.info["split"] == "out_of_time" else None

    def rescore(bundle: Path) -> float | None:
        if held is None or held.empty:
            return None
        model = UpliftModel.load(bundle)
        if model.schema.problems(held):
            return None
        return point_metrics(model.predict(held), held["treatment"].to_numpy(), held["churned"].to_numpy(),
                             cfg.uplift.top_shares)["qini"]

    return rescore

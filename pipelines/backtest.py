"""`churn backtest`: replay the retention list at past cutoffs, with models trained only on data before each.

For each month start c from --from to --to (default: the latest `backtest.cutoffs` month
starts whose label horizon has ended by as_of):
1. the tables as known at c (`features.build.tables_before`: nothing at or after c);
2. churn and value models (LightGBM, the config's booster settings, calibration on a hashed
   share of customers; above `model.sampling.max_training_rows` rows the non-churners sampled with
   weights, as `churn train` does) on `backtest.training_cutoffs` monthly training cutoffs before c, and the
   uplift learners on the contacts before c (chosen by Qini as in `churn train`, fewer bootstrap
   resamples); no uplift model when the history before c has too few control customers;
3. the scoring table at c and the list under both rankings at the configured capacity (no
   holdout); the uplift list is cut to the value-at-risk list's size (its top by rank), and a
   seeded random list of that size is drawn from the scored customers, so the three lists
   compete on whom they contact, not on how many;
4. what happened after c (from the full tables, for evaluation only): churn within the horizon,
   the bank's randomised contacts just after c, and (generated data) the true uplift.
A bank with more than `labels.max_training_customers` customers is replayed on that training sample
(`pipelines.tables.load_sampled_tables`: every row of the sampled customers, the end of the data from
every row), with each team's capacity scaled to the sample's share; the summary says so (`sample`).
Of the event tables only the columns the features and labels read are read (`uplift_stage_inputs`).
Writes, together, `reports/backtest.csv` (one line per cutoff and list), `reports/backtest.json`
(totals per list and the settings) and `reports/backtest.png`, and logs them to MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from features._grouping import US_PER_DAY, cutoff_us, datetimes_us
from features.build import (build_labels, build_scoring_table, build_training_table, tables_as_of, tables_before,
                            uplift_stage_inputs)
from features.contract import Tables
from features.settings import SettingsProblem
from models.boosting import ValueModel, fit_churn_model, fit_value_model
from models.data import (WEIGHT_COLUMN, RowSample, Split, customer_hash_share, infer_schema, model_feature_columns,
                         sample_non_churners)
from models.retention import overdue_complaint_tiers, retention_plan
from models.uplift.backtest import list_outcomes, random_list, totals
from models.uplift.data import build_uplift_table, contact_assignments, control_group_problem, uplift_cutoffs
from models.uplift.training import ranking_gate, train_uplift
from pipelines.config import Config
from pipelines.io import StageError, StageOutputs, to_safe_csv
from pipelines.outputs import stage_paths
from pipelines.score import customer_value_source, known_values, score_customers
from pipelines.tables import load_sampled_tables
from pipelines.tracking import tracked_run
from pipelines.truth import HAZARD_FILE
from pipelines.uplift import true_uplift

BACKTEST_CSV = "backtest.csv"
BACKTEST_JSON = "backtest.json"
BACKTEST_PNG = "backtest.png"
LISTS = ("value_at_risk", "uplift", "random")
BOOTSTRAP = 20
"""Bootstrap resamples of the replayed uplift learners' Qini interval (the gate; fewer than `churn train`)."""


def scaled_capacity(capacity: dict[str, int | None], share: float) -> dict[str, int | None]:
    """Each team's capacity for a replay on a `share` of the customers: the same share of it, rounded, at
    least 1 where the team has any (None, no limit, stays None)."""
    return {owner: None if limit is None else 0 if limit == 0 else max(1, round(limit * share))
            for owner, limit in capacity.items()}


def capacity_text(capacity: dict[str, int | None]) -> str:
    return ", ".join(f"{owner} {'no limit' if limit is None else f'{limit:,}'}" for owner, limit in capacity.items())


def backtest_cutoffs(tables: Tables, cfg: Config, start: str | None, end: str | None) -> list[pd.Timestamp]:
    """Month starts in [start, end] whose horizon ends by as_of (default: the latest `backtest.cutoffs`)."""
    last = tables_as_of(tables) - pd.Timedelta(days=cfg.labels.horizon_days)
    latest = pd.Timestamp(year=last.year, month=last.month, day=1)
    if end is not None:
        latest = min(latest, pd.Timestamp(end))
        latest = pd.Timestamp(year=latest.year, month=latest.month, day=1)
    if start is not None:
        first = pd.Timestamp(start)
        first = first if first.day == 1 else (first + pd.offsets.MonthBegin(1))
        count = (latest.year - first.year) * 12 + latest.month - first.month + 1
    else:
        count = cfg.backtest.cutoffs
    return [pd.Timestamp(latest - pd.DateOffset(months=k)).as_unit("us") for k in range(max(count, 0))][::-1]


def uplift_rows_before(rows: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """The uplift rows a replay at `cutoff` may learn from: those whose label window ends by it.

    Exactly the rows `build_uplift_table` makes from the tables as known at the cutoff (features are
    point-in-time, the contact and the label fall in [row cutoff, row cutoff + horizon) <= cutoff), so
    one build over the full tables serves every replay; `test_backtest` checks the list is the same
    as a replay on the tables with the future removed.
    """
    if rows.empty:
        return rows
    last = cutoff_us(cutoff) - horizon_days * US_PER_DAY
    return rows[datetimes_us(rows["cutoff"]) <= last].reset_index(drop=True)


def sampled_replay_rows(table: pd.DataFrame, calibration: np.ndarray, cfg: Config
                        ) -> tuple[pd.DataFrame, np.ndarray, RowSample]:
    """A replay's training rows sampled as `churn train` samples its own (`models.data.sample_non_churners`,
    `model.sampling.max_training_rows`): above that many rows, every churner, a hashed share of the
    calibration customers with all their rows, and the other non-churners at a seeded rate, weighted by its
    inverse (`WEIGHT_COLUMN`), so the probabilities stay calibrated; below it every row, unweighted."""
    split = Split(~calibration, calibration, np.zeros(len(table), dtype=bool), "replay", (), ())
    sample = sample_non_churners(table[["customer_id", "cutoff", "churned"]], split,
                                 cfg.model.sampling.max_training_rows, cfg.model.calibration_share, cfg.seed)
    if not sample.active:
        return table, calibration, sample
    kept = table[sample.keep].assign(**{WEIGHT_COLUMN: sample.weight[sample.keep]}).reset_index(drop=True)
    return kept, calibration[sample.keep], sample


def replay(full: Tables, cutoff: pd.Timestamp, cfg: Config, truth_dir: Path | None,
           say: Callable[[str], None], uplift_rows: pd.DataFrame | None = None
           ) -> tuple[list[dict[str, object]], dict[str, object], dict[str, pd.DataFrame]]:
    """The three lists at one past cutoff and what each reached and saved; models see only data before it.

    `uplift_rows` (optional): the uplift rows built once over the full tables, of which the replay keeps
    only those before the cutoff (`uplift_rows_before`); without them they are built from the past tables.
    """
    past = tables_before(full, cutoff)
    labels = cfg.labels.model_copy(update={"cutoffs": cfg.labels.cutoffs.model_copy(
        update={"count": cfg.backtest.training_cutoffs})})
    try:
        table = build_training_table(past, cfg.features, labels)
    except Exception as error:  # noqa: BLE001 - no training cutoff before c: this cutoff cannot be replayed
        return [], {"cutoff": str(cutoff.date()), "skipped": f"no training data before it ({error})"}, {}
    y = table["churned"].to_numpy(dtype=int)
    if not 0 < y.sum() < len(y):
        dates = pd.to_datetime(table["cutoff"])
        held = "no churner" if y.sum() == 0 else "only churners"
        return [], {"cutoff": str(cutoff.date()), "skipped": (
            f"the training rows before it hold one churn class: {held} in {len(y):,} rows of the training cutoffs "
            f"{dates.min().date()} to {dates.max().date()} (backtest.training_cutoffs), nothing to learn from; "
            "a replay needs churn in the label windows before its cutoff")}, {}
    schema = infer_schema(table, model_feature_columns(table))
    calibration = customer_hash_share(table["customer_id"], cfg.seed) < cfg.model.calibration_share
    table, calibration, sample = sampled_replay_rows(table, calibration, cfg)
    y = table["churned"].to_numpy(dtype=int)
    churn, _ = fit_churn_model(table, ~calibration, calibration, schema, cfg.model.booster, cfg.model.calibration,
                               cfg.seed)
    value: ValueModel | np.ndarray | None = None
    stayed = y == 0
    if past.transactions is not None:
        value, _ = fit_value_model(table, ~calibration & stayed, calibration & stayed, schema, cfg.model.value_booster,
                                   cfg.model.tweedie_variance_power, cfg.seed)
    uplift_model, uplift_note, gate = None, "", ""
    rows = (build_uplift_table(past, cfg.features, cfg.labels, cfg.uplift)[0] if uplift_rows is None
            else uplift_rows_before(uplift_rows, cutoff, cfg.labels.horizon_days))
    if rows.empty:
        uplift_note = "no contacts with a control group before it"
    else:
        try:
            uplift_model = train_uplift(rows, cfg.uplift.model_copy(update={"bootstrap": BOOTSTRAP}),
                                        cfg.labels.horizon_days, cfg.seed, schema=schema).final
            gate = ranking_gate(uplift_model.evidence, cfg.uplift.min_qini_lower_bound) or "passed"
        except ValueError as error:
            uplift_note = str(error)
    frame = build_scoring_table(past, cfg.features, cfg.labels, as_of=cutoff)
    if value is None and customer_value_source(cfg) == "customers_column":
        # snapshot data: the value `churn score` ranks by, a customers column (the snapshot's, the only one known)
        value = known_values(past.customers, frame["customer_id"], cfg)
    scored = score_customers(frame, schema.matrix(frame), churn, value, cfg)
    scored["uplift"] = uplift_model.predict(frame) if uplift_model is not None else np.nan
    tiers = overdue_complaint_tiers(past.complaints, cutoff, cfg.features.complaint_targets,
                                    cfg.scoring.selection.complaint_trigger)
    plans = {ranking: retention_plan(scored, tiers, cfg.scoring, cfg.features.complaint_targets, cutoff,
                                     ranking=ranking, uplift_threshold=cfg.uplift.class_threshold)[0]
             for ranking in ("value_at_risk", "uplift")}
    ids = scored["customer_id"].astype("str")
    outcome = build_labels(full, cutoff, cfg.labels).set_index("customer_id")["churned"]
    churned = outcome.reindex(ids.to_numpy()).to_numpy(dtype=float)
    campaign = np.full(len(scored), -1, dtype=np.int64)
    if full.contacts is not None and "treatment" in full.contacts:
        assigned, _ = contact_assignments(full.contacts, cutoff, cfg.uplift.treatment_window_days)
        arm = assigned.set_index("customer_id")["treatment"].reindex(ids.to_numpy())
        campaign = arm.fillna(-1).to_numpy(dtype=np.int64)
    truth = true_uplift(pd.DataFrame({"customer_id": ids.to_numpy(), "cutoff": cutoff}), truth_dir,
                        cfg.labels.horizon_days) if truth_dir is not None else None
    size = int(plans["value_at_risk"]["selected"].sum())
    seed = cfg.backtest.random_seed if cfg.backtest.random_seed is not None else cfg.seed
    by_uplift = plans["uplift"]
    uplift_rank = by_uplift["rank"].to_numpy(dtype="float64", na_value=np.inf)
    lists = {"value_at_risk": plans["value_at_risk"]["selected"].to_numpy(dtype=bool),
             # the same number of customers, the top of the uplift list: the lists compete on who, not how many
             "uplift": (by_uplift["selected"].to_numpy(dtype=bool) & (uplift_rank <= size))
             if uplift_model is not None else None,
             "random": random_list(size, len(scored), seed * 1000 + cutoff.month)}
    lines = []
    for name in LISTS:
        chosen = lists[name]
        if chosen is None:
            continue
        lines.append({"cutoff": str(cutoff.date()), "list": name,
                      **list_outcomes(chosen, churned, scored["value_at_risk"].to_numpy(),
                                      scored["retained_lifetime_value"].to_numpy(), campaign, truth)})
    info = {"cutoff": str(cutoff.date()), "training_rows": sample.rows, "uplift_rows": int(len(rows)),
            **({"training_rows_kept": sample.kept, "non_churner_rate": round(sample.rate, 6),
                "calibration_rate": round(sample.calibration_rate, 6)} if sample.active else {}),
            "uplift_model": uplift_model is not None, **({"uplift_note": uplift_note} if uplift_note else {}),
            # would `churn score` have ranked by this uplift model (uplift.min_qini_lower_bound)?
            **({"uplift_ranking_gate": gate} if gate else {}),
            "scored": int(len(scored)), "uplift_list_before_equal_size": int(by_uplift["selected"].sum()) if uplift_model is not None else None}
    listed = {name: pd.DataFrame({"customer_id": ids[chosen].to_numpy()}) for name, chosen in lists.items()
              if chosen is not None}
    return lines, info, listed


def backtest_figure(table: pd.DataFrame, has_truth: bool) -> plt.Figure:
    metrics = ["churners_reached", "value_at_risk_reached", "estimated_value_saved"] + (
        ["true_value_saved"] if has_truth else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.6))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for name in LISTS:
            part = table[table["list"] == name]
            if len(part):
                ax.plot(pd.to_datetime(part["cutoff"]), part[metric], marker="o", label=name.replace("_", " "))
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("Cutoff (month start)")
        ax.tick_params(axis="x", rotation=45)
    np.atleast_1d(axes)[0].set_ylabel("Per list (count or currency units)")
    np.atleast_1d(axes)[0].legend()
    fig.suptitle("Retention lists replayed at past cutoffs")
    fig.tight_layout()
    return fig


def run(cfg: Config, start: str | None = None, end: str | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Replay the lists at every cutoff; write the table, totals and chart; log to MLflow."""
    say = progress or (lambda message: None)
    reports = Path(cfg.paths.reports_dir)
    outputs = StageOutputs("backtest", stage_paths(cfg, "backtest"), say)
    with outputs, tracked_run(cfg, stage="backtest") as active:
        full, sample = load_sampled_tables(cfg, columns=uplift_stage_inputs(cfg.features, cfg.labels))
        configured_capacity = cfg.scoring.selection.capacity
        if sample is not None:
            cfg = cfg.model_copy(update={"scoring": cfg.scoring.model_copy(update={"selection": (
                cfg.scoring.selection.model_copy(update={"capacity": scaled_capacity(configured_capacity,
                                                                                     sample.share)}))})})
            say(f"replaying on the training sample: {sample.kept:,} of {sample.of:,} customers "
                f"(labels.max_training_customers), every row of theirs; each team's capacity scaled to that share "
                f"({capacity_text(cfg.scoring.selection.capacity)}), so the lists reach as deep into the ranking "
                "as the full lists would")
            mlflow.set_tags({"backtest.sample_customers": sample.kept, "backtest.sample_of": sample.of})
        one_moment = cfg.labels.churn_flag is not None  # a flag snapshot: nothing before its one window to replay
        cutoffs = [] if one_moment else backtest_cutoffs(full, cfg, start, end)
        if not cutoffs and not one_moment and (start is not None or end is not None):
            raise StageError(f"no backtest cutoff between {start} and {end} whose {cfg.labels.horizon_days}-day "
                             f"horizon ends by the data's as_of ({tables_as_of(full).date()}); choose earlier dates")
        truth_dir = Path(cfg.evaluation.truth_dir) if cfg.evaluation.truth_dir else None
        if truth_dir is not None and not (truth_dir / HAZARD_FILE).is_file():
            truth_dir = None
        lines: list[dict[str, object]] = []
        infos: list[dict[str, object]] = []
        chosen: dict[str, dict[str, pd.DataFrame]] = {}
        clock = time.perf_counter()
        rows: pd.DataFrame | None = None  # None: each replay builds its own (and says why it has none)
        needed = [c for c in uplift_cutoffs(full, cfg.labels, cfg.uplift)
                  if cutoffs and c + pd.Timedelta(days=cfg.labels.horizon_days) <= max(cutoffs)]
        if needed and control_group_problem(full.contacts) is None:
            say("building the uplift rows once; each replay learns only from those whose label window ends before it")
            rows = build_uplift_table(full, cfg.features, cfg.labels, cfg.uplift, needed)[0]
        for cutoff in cutoffs:
            say(f"replaying the list at {cutoff.date()} with models trained on data before it")
            try:
                found, info, listed = replay(full, cutoff, cfg, truth_dir, say, rows)
            except (ValueError, SettingsProblem) as error:  # too little history before it to fit the models
                found, info, listed = [], {"cutoff": str(cutoff.date()), "skipped": str(error)[:500]}, {}
            chosen[str(cutoff.date())] = listed
            lines.extend(found)
            infos.append(info)
            if "skipped" in info:
                say(f"cutoff {cutoff.date()} skipped: {info['skipped']}")
        if not lines:
            why = ("a snapshot with a churn flag (labels.churn_flag) describes one moment: there is no earlier "
                   "list to replay" if one_moment else
                   "no cutoff could be replayed: " + "; ".join(f"{i['cutoff']}: {i.get('skipped')}" for i in infos)
                   if infos else "the data holds no month start with a full label horizon before as_of")
            say(f"no backtest: {why}")
            mlflow.set_tag("backtest", f"none: {why}"[:500])
            summary_none: dict[str, object] = {"status": "none", "why": why, "cutoffs": infos}
            with outputs.commit() as files:
                files[BACKTEST_JSON].write_text(pd.Series(summary_none).to_json(indent=2) + "\n", encoding="utf-8")
                to_safe_csv(pd.DataFrame({"cutoff": [], "list": []}), files[BACKTEST_CSV])
                fig, ax = plt.subplots(figsize=(6, 2))
                ax.axis("off")
                ax.text(0.5, 0.5, "No backtest: " + why[:90], ha="center", va="center", wrap=True)
                fig.savefig(files[BACKTEST_PNG], format="png")
                plt.close(fig)
            return {"run_id": active.info.run_id, "summary": summary_none, "table": pd.DataFrame(), "lists": {}}
        table = pd.DataFrame(lines)
        summed = totals(table)
        summary = {"status": "replayed", "cutoffs": infos, "seconds": round(time.perf_counter() - clock, 1),
                   "totals": {r["list"]: {k: (None if pd.isna(v) else float(v)) for k, v in r.items() if k != "list"}
                              for r in summed.to_dict("records")},
                   "capacity": cfg.scoring.selection.capacity,
                   "ranking_compared": [name for name in LISTS if name in set(table["list"])],  # no uplift list without contacts
                   "value_source": customer_value_source(cfg),  # "none": the value-at-risk list ranks by risk alone
                   **({"sample": {**sample.describe(), "capacity_configured": configured_capacity}}
                      if sample is not None else {}),
                   "training_cutoffs": cfg.backtest.training_cutoffs,
                   "definitions": "see models/uplift/backtest.py: estimated_* from the bank's randomised contacts "
                                  "just after each cutoff; true_* from the generator's truth (generated data only)"}
        with outputs.commit() as files:
            to_safe_csv(table, files[BACKTEST_CSV])
            files[BACKTEST_JSON].write_text(pd.Series(summary).to_json(indent=2) + "\n", encoding="utf-8")
            fig = backtest_figure(table, "true_value_saved" in table)
            fig.savefig(files[BACKTEST_PNG], format="png")
            plt.close(fig)
            mlflow.log_metrics({f"backtest.{r['list']}.{k}": float(v) for r in summed.to_dict("records")
                                for k, v in r.items() if k != "list" and pd.notna(v)})
            for name in (BACKTEST_CSV, BACKTEST_JSON, BACKTEST_PNG):
                mlflow.log_artifact(str(files[name]))
    say(f"wrote {reports / BACKTEST_CSV}, {reports / BACKTEST_JSON} and {reports / BACKTEST_PNG}")
    return {"run_id": active.info.run_id, "summary": summary, "table": table, "lists": chosen}

"""Fit the meta-learners, choose one by Qini on validation rows inside the training rows, judge every one
on held-out cutoffs by Qini, refit the chosen on every row."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from models.data import FeatureSchema, customer_hash_share, infer_schema, model_feature_columns
from models.uplift.data import TREATMENT_COLUMNS
from models.uplift.learners import UpliftModel, fit_uplift
from models.uplift.metrics import bootstrap_metrics, point_metrics, uplift_curves
from models.uplift.settings import UpliftSettings


@dataclass
class UpliftResult:
    """The chosen learner, its held-out figures, and the model refitted on every uplift row."""

    selected: str
    final: UpliftModel
    evaluated: dict[str, UpliftModel]
    metrics: dict[str, dict[str, dict[str, float]]]
    """learner -> metric -> {value, low, high} on the held-out rows."""
    curves: dict[str, pd.DataFrame]
    test: pd.DataFrame
    info: dict[str, object] = field(default_factory=dict)

    def flat_metrics(self) -> dict[str, float]:
        """`uplift.<learner>.<metric>[_low|_high]` and `uplift.selected.*` for MLflow."""
        out: dict[str, float] = {}
        for learner, metrics in self.metrics.items():
            for name in (learner, "selected") if learner == self.selected else (learner,):
                for metric, figures in metrics.items():
                    out[f"uplift.{name}.{metric}"] = figures["value"]
                    out[f"uplift.{name}.{metric}_low"] = figures["low"]
                    out[f"uplift.{name}.{metric}_high"] = figures["high"]
        return {k: v for k, v in out.items() if np.isfinite(v)}


def ranking_gate(evidence: dict[str, float], floor: float | None) -> str:
    """Why a model's held-out evidence does not earn `scoring.ranking: uplift` ("" when it does).

    The rule: the lower end of the 95% bootstrap interval of the held-out Qini coefficient must be
    above `floor` (`uplift.min_qini_lower_bound`), i.e. the uplift ranking is shown to beat random
    targeting on customers it never saw. A Qini interval that straddles zero means the randomised
    contacts cannot tell this ranking from a random one, so ranking by it would be a guess.
    """
    if floor is None:
        return ""
    low = evidence.get("low", float("nan"))
    if not np.isfinite(low):
        return (f"the uplift model carries no held-out Qini interval (retrain it with `churn train`); "
                f"uplift.min_qini_lower_bound is {floor}")
    if low > floor:
        return ""
    return (f"its held-out Qini {evidence.get('value', float('nan')):.4f} [95% interval {low:.4f}, "
            f"{evidence.get('high', float('nan')):.4f}] does not clear uplift.min_qini_lower_bound {floor}: the "
            "randomised contacts cannot tell its ranking from random targeting")


def uplift_features(table: pd.DataFrame) -> list[str]:
    """The model features of an uplift table: the churn features, never the contact columns."""
    return [c for c in model_feature_columns(table) if c not in TREATMENT_COLUMNS]


def split_uplift_rows(table: pd.DataFrame, horizon_days: int, test_cutoffs: int, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, str, list[str], list[str]]:
    """(train, test) masks: the latest `test_cutoffs` cutoffs held out, training cutoffs ending one
    horizon before the first of them; with too few cutoffs, customers hashed (a quarter held out)."""
    cutoffs = pd.to_datetime(table["cutoff"])
    unique = sorted(cutoffs.unique())
    if len(unique) > test_cutoffs:
        held = unique[-test_cutoffs:]
        first = held[0]
        train_cut = [c for c in unique[:-test_cutoffs] if c + pd.Timedelta(days=horizon_days) <= first]
        if train_cut:
            test = cutoffs.isin(held).to_numpy()
            train = cutoffs.isin(train_cut).to_numpy()
            return (train, test, "out_of_time", [str(pd.Timestamp(c).date()) for c in train_cut],
                    [str(pd.Timestamp(c).date()) for c in held])
    test = customer_hash_share(table["customer_id"], seed + 3) < 0.25
    every = [str(pd.Timestamp(c).date()) for c in unique]
    return ~test, test, "hashed_customers", every, every


def selection_rows(table: pd.DataFrame, train: np.ndarray, horizon_days: int, settings: UpliftSettings, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(fit, validation) masks inside the training rows, split as `split_uplift_rows` splits all of them (the
    latest `uplift.test_cutoffs` training cutoffs, fit cutoffs ending one horizon before; else customers hashed
    with another key), so a learner is chosen without the held-out rows its gate then reads. None when either
    part would hold fewer than `uplift.min_control_rows` of either arm."""
    positions = np.flatnonzero(train)
    inner = table.iloc[positions].reset_index(drop=True)
    fit, validation, kind, *_ = split_uplift_rows(inner, horizon_days, settings.test_cutoffs, seed + 1)
    treatment = inner["treatment"].to_numpy()
    for part in (fit, validation):
        if min(int((treatment[part] == 0).sum()), int((treatment[part] == 1).sum())) < settings.min_control_rows:
            return None
    fit_rows, validation_rows = np.zeros(len(table), dtype=bool), np.zeros(len(table), dtype=bool)
    fit_rows[positions[fit]] = True
    validation_rows[positions[validation]] = True
    return fit_rows, validation_rows, kind


def train_uplift(table: pd.DataFrame, settings: UpliftSettings, horizon_days: int, seed: int,
                 true_uplift: np.ndarray | None = None, schema: FeatureSchema | None = None) -> UpliftResult:
    """Choose a learner by its Qini coefficient on validation rows inside the training rows
    (`selection_rows`), fit every configured learner on the training rows and judge each on the
    held-out rows (Qini and the rest, intervals by bootstrap), refit the chosen on every row. The
    chosen learner's held-out interval, which the ranking gate reads, is therefore not also the
    figure it won on (with one learner, or too few rows to split, it is chosen as it is: the info says).

    `true_uplift` (optional, aligned with `table`): the generator's true effect, reported as a
    Spearman correlation on the held-out rows only, never used to choose. `schema` (optional):
    the churn model's schema, so both models read the same features the same way.
    """
    table = table.reset_index(drop=True)
    problems = [f"{arm} rows: {int(count)}" for arm, count in
                (("control", (table["treatment"] == 0).sum()), ("contacted", (table["treatment"] == 1).sum()))
                if count < settings.min_control_rows]
    if problems:
        raise ValueError(f"too few uplift rows to learn from ({', '.join(problems)}; "
                         f"uplift.min_control_rows is {settings.min_control_rows})")
    features = uplift_features(table)
    schema = schema or infer_schema(table, features)
    train, test, kind, train_cutoffs, test_cutoffs = split_uplift_rows(table, horizon_days, settings.test_cutoffs,
                                                                       seed)
    held = table[test]
    t_test = held["treatment"].to_numpy(dtype=np.int64)
    y_test = held["churned"].to_numpy(dtype=np.int64)
    evaluated: dict[str, UpliftModel] = {}
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    curves: dict[str, pd.DataFrame] = {}
    predictions: dict[str, np.ndarray] = {}
    for learner in settings.learners:
        model = fit_uplift(table[train], schema, learner, settings.booster, seed)
        evaluated[learner] = model
        predicted = model.predict(held)
        predictions[learner] = predicted
        metrics[learner] = bootstrap_metrics(predicted, t_test, y_test, settings.top_shares, settings.bootstrap, seed)
        curves[learner] = uplift_curves(predicted, t_test, y_test)
        if true_uplift is not None:
            truth = np.asarray(true_uplift, dtype=float)[test]
            known = np.isfinite(truth)
            if known.sum() > 2:
                rho = float(spearmanr(predicted[known], truth[known]).statistic)
                metrics[learner]["true_uplift_spearman"] = {"value": rho, "low": float("nan"), "high": float("nan")}
    choice = selection_rows(table, train, horizon_days, settings, seed) if len(settings.learners) > 1 else None
    validation_qini: dict[str, float] = {}
    if choice is not None:
        fit_rows, validation_rows, _ = choice
        checked = table[validation_rows]
        for learner in settings.learners:
            model = fit_uplift(table[fit_rows], schema, learner, settings.booster, seed)
            validation_qini[learner] = point_metrics(model.predict(checked), checked["treatment"].to_numpy(dtype=np.int64),
                                                     checked["churned"].to_numpy(dtype=np.int64),
                                                     settings.top_shares)["qini"]
    judged_by = validation_qini or {name: metrics[name]["qini"]["value"] for name in settings.learners}
    selected = max(settings.learners, key=lambda name: (judged_by[name], -settings.learners.index(name)))
    final = fit_uplift(table, schema, selected, settings.booster, seed, rounds=evaluated[selected].rounds)
    final.evidence = {k: float(v) for k, v in metrics[selected]["qini"].items()}
    test_frame = pd.DataFrame({"customer_id": held["customer_id"].astype("str").to_numpy(),
                               "cutoff": held["cutoff"].to_numpy(), "treatment": t_test, "churned": y_test,
                               **{f"uplift_{name}": values for name, values in predictions.items()}})
    if true_uplift is not None:
        test_frame["true_uplift"] = np.asarray(true_uplift, dtype=float)[test]
    info: dict[str, object] = {
        "split": kind, "train_cutoffs": train_cutoffs, "test_cutoffs": test_cutoffs,
        "rows_train": int(train.sum()), "rows_test": int(test.sum()),
        "control_rows_train": int((table["treatment"][train] == 0).sum()),
        "control_rows_test": int((t_test == 0).sum()), "rows_all": int(len(table)),
        "control_rows_all": int((table["treatment"] == 0).sum()),
        "selected_learner": selected,
        "selection": _selection_note(selected, settings.learners, validation_qini, metrics, choice),
        "validation_qini": validation_qini,
        "rows_validation": int(choice[1].sum()) if choice is not None else 0,
        "control_rows_validation": int((table["treatment"][choice[1]] == 0).sum()) if choice is not None else 0,
        "features": len(schema.features),
        "ranking_gate": ranking_gate(final.evidence, settings.min_qini_lower_bound) or "passed",
    }
    if true_uplift is not None:
        truth = np.asarray(true_uplift, dtype=float)[test]
        if np.isfinite(truth).all():
            # how well a perfect ranking would score on these held-out rows: the data's power, not a model's
            info["oracle_qini"] = bootstrap_metrics(truth, t_test, y_test, settings.top_shares, settings.bootstrap,
                                                    seed)["qini"]
    return UpliftResult(selected, final, evaluated, metrics, curves, test_frame, info)


def _selection_note(selected: str, learners: tuple[str, ...], validation_qini: dict[str, float],
                    metrics: dict[str, dict[str, dict[str, float]]],
                    choice: tuple[np.ndarray, np.ndarray, str] | None) -> str:
    """Why `selected` was chosen, in words."""
    if len(learners) == 1:
        return f"{selected} is the only configured learner (uplift.learners)"
    if choice is None:
        return (f"{selected} has the highest held-out Qini coefficient "
                + ", ".join(f"{name} {metrics[name]['qini']['value']:.5f}" for name in learners)
                + " (too few training rows for a validation split of their own, uplift.min_control_rows: chosen "
                  "on the held-out rows, so its held-out figure is mildly optimistic)")
    where = "its latest training cutoffs" if choice[2] == "out_of_time" else "a hashed quarter of its customers"
    return (f"{selected} has the highest Qini coefficient on validation rows inside the training rows ({where}) "
            + ", ".join(f"{name} {validation_qini[name]:.5f}" for name in learners)
            + "; the held-out figures are each learner's on rows none was chosen by")

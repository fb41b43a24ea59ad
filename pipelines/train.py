"""The train stage: fit, evaluate, explain, log to MLflow and register with champion/challenger.

Refuses (exit code 4, naming the key) a training table that `churn features` built from other
settings or other data than the config's (`pipelines.features.check_built_from`), holds the
lock of the reports folder while it runs (a second `churn train` there stops at once) and
removes what killed runs left in it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from models.boosting import ChurnModel, ValueModel, load_churn_model
from models.blend import BlendChurnModel
from models.linear import LinearChurnModel
from models.data import LABEL_COLUMNS, REFIT_WEIGHT_COLUMN, WEIGHT_COLUMN, FeatureSchema, RowSample, sample_non_churners, split_rows
from models.evaluation import reliability_table, roc_table, stayer_value_metrics
from models.explain import reason_codes
from models.plots import (gains_figure, importance_figure, pr_figure, profit_figure, reliability_figure,
                          roc_figure, shap_summary_figure, value_decile_figure)
from models.time_to_churn import HORIZONS_FOLDER, HorizonRiskModels
from models.training import TrainingResult, champion_score, compare_with_champion, train_models
from pipelines.config import Config
from pipelines.fingerprint import input_fingerprint, settings_difference
from pipelines.features import check_built_from
from pipelines.io import StageError, StageOutputs, write_csv, write_json, write_parquet, write_with
from pipelines.outputs import CHURN_MODEL_NAME, OPTIONAL, VALUE_MODEL_NAME, current_paths, stage_paths
from pipelines.tracking import flatten_params, load_registered_bundle, tracked_run
from pipelines.truth import HAZARD_FILE, hazard_at
from pipelines.uplift import UPLIFT_MODEL_NAME, fit_and_report, rescore_qini

log = logging.getLogger("pipelines.train")

PYFUNC_FILE = Path(__file__).resolve().parent.parent / "models" / "pyfunc_model.py"
CODE_PATHS = [str(Path(__file__).resolve().parent.parent / name) for name in ("features", "models")]


def read_training_table(path: Path, cfg: Config) -> tuple[pd.DataFrame, RowSample]:
    """The training table, lean: float feature columns as float32, one cutoff (row group) at a time.

    With more rows than `model.sampling.max_training_rows`, non-churner fit rows are sampled
    with weights (`models.data.sample_non_churners`; the weights in `WEIGHT_COLUMN`) as each
    cutoff is read, so the whole table is never in memory. Labels stay float64.
    """
    parquet = pq.ParquetFile(path)
    keys = pq.read_table(path, columns=["customer_id", "cutoff", "churned"]).to_pandas()
    split = split_rows(keys, cfg.labels.horizon_days, cfg.model.calibration_share,
                       cfg.model.single_cutoff_test_share, cfg.seed)
    sample = sample_non_churners(keys, split, cfg.model.sampling.max_training_rows, cfg.model.calibration_share,
                                 cfg.seed)
    del keys, split
    parts: list[pa.Table] = []
    offset = 0
    for group in range(parquet.num_row_groups):
        part = parquet.read_row_group(group)
        rows = slice(offset, offset + part.num_rows)
        offset += part.num_rows
        if sample.active:
            keep = sample.keep[rows]
            part = (part.filter(pa.array(keep)).append_column(WEIGHT_COLUMN, pa.array(sample.weight[rows][keep]))
                    .append_column(REFIT_WEIGHT_COLUMN, pa.array(sample.refit_weight[rows][keep])))
        for index, field in enumerate(part.schema):
            if pa.types.is_float64(field.type) and field.name not in LABEL_COLUMNS \
                    and field.name not in (WEIGHT_COLUMN, REFIT_WEIGHT_COLUMN):
                part = part.set_column(index, pa.field(field.name, pa.float32()), pc.cast(part.column(index), pa.float32()))
        parts.append(part)
    table = pa.concat_tables(parts) if parts else parquet.schema_arrow.empty_table()
    del parts
    return table.to_pandas(split_blocks=True, self_destruct=True), sample


def true_churn_probability(table: pd.DataFrame, truth_dir: Path, horizon_days: int) -> pd.Series | None:
    """The generator's probability of closing within the horizon, from its monthly hazard at each cutoff."""
    keyed = hazard_at(table[["customer_id", "cutoff"]], truth_dir, ["hazard"])
    if keyed is None:
        log.warning("no %s: the true-hazard ceiling is skipped", truth_dir / HAZARD_FILE)
        return None
    months = horizon_days / 30.4375
    return 1.0 - (1.0 - keyed["hazard"]) ** months


def save_figure(fig: plt.Figure, path: Path) -> None:
    write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def synthetic_example(schema: FeatureSchema, table: pd.DataFrame, rows: int = 3) -> pd.DataFrame:
    """A model input example that is no real customer: each feature's quartiles, drawn independently."""
    columns: dict[str, list[object]] = {}
    for name in schema.features:
        if name in schema.categorical:
            levels = list(schema.categorical[name]) or ["unknown"]
            columns[name] = [levels[i % len(levels)] for i in range(rows)]
        else:
            values = table[name].to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            quantiles = np.quantile(finite, np.linspace(0.25, 0.75, rows)) if len(finite) else np.zeros(rows)
            columns[name] = [float(round(q, 2)) for q in quantiles]
    return pd.DataFrame(columns)


def write_reports(result: TrainingResult, table: pd.DataFrame, cfg: Config, templates: dict[str, str],
                  files: dict[str, Path]) -> dict[str, Path]:
    """Plots (PNG), curve data (CSV, for `dvc plots`), test predictions and example reasons, into `files`.

    `files` maps each output name (`pipelines.outputs`, stage train) to where to write it: the
    new generation of the stage's commit. Returns the names written and their paths there.
    """
    test = result.test
    y = test["churned"].to_numpy()
    scores = {"LightGBM (calibrated)": test["churn_probability"].to_numpy(),
              "logistic regression": test["logistic_score"].to_numpy()}
    if "recency_score" in test:
        scores["recency rule"] = test["recency_score"].to_numpy()
    if "btyd_score" in test:
        scores["BG/NBD"] = test["btyd_score"].to_numpy()
    test_rows = table[result.split.test].reset_index(drop=True)
    sample = test_rows.sample(n=min(2000, len(test_rows)), random_state=cfg.seed)
    contributions = result.churn.contributions(sample)
    importance = result.churn.importance()
    roc = roc_table(y, scores)
    figures = {
        "roc.png": roc_figure(roc),
        "precision_recall.png": pr_figure(y, scores),
        "reliability.png": reliability_figure(y, test["churn_probability"].to_numpy()),
        "cumulative_gains.png": gains_figure(y, scores),
        "feature_importance.png": importance_figure(importance),
        "shap_summary.png": shap_summary_figure(contributions, result.churn.schema.matrix(sample), seed=cfg.seed),
    }
    if result.profit_curves:
        figures["profit_curve.png"] = profit_figure({("LightGBM" if k == "lightgbm" else k.replace("_", " ")): v
                                                     for k, v in result.profit_curves.items()})
    if result.value is not None:
        figures["value_by_decile.png"] = value_decile_figure(test["future_value"].to_numpy(),
                                                             test["next_horizon_value_if_retained"].to_numpy())
    paths: dict[str, Path] = {}
    for name, fig in figures.items():
        save_figure(fig, files[name])
        paths[name] = files[name]
    gains = pd.concat([g.assign(model=name) for name, g in result.gains.items()], ignore_index=True)
    curves = {"gains.csv": gains, "roc.csv": roc,
              "reliability.csv": reliability_table(y, test["churn_probability"].to_numpy()),
              "feature_importance.csv": importance.rename("total_gain").rename_axis("feature").reset_index()
              .sort_values("total_gain", ascending=False)}
    if result.profit_curves:
        curves["profit_curve.csv"] = pd.concat([c.assign(model=name) for name, c in result.profit_curves.items()],
                                               ignore_index=True)
    for name, frame in curves.items():
        paths[name] = write_csv(frame, files[name])
    paths["test_predictions.parquet"] = write_parquet(test, files["test_predictions.parquet"])
    chosen = result.selected_model
    top = test_rows.assign(churn_probability=test["selected_probability"].to_numpy()).nlargest(20, "churn_probability")
    reasons = reason_codes(top, chosen.contributions(top), templates, cfg.model.reasons_per_customer)
    examples = pd.concat([top[["customer_id", "cutoff", "churn_probability", "churned"]], reasons], axis=1)
    paths["example_reasons.csv"] = write_csv(examples, files["example_reasons.csv"])
    return paths


def log_bundle(model: ChurnModel | LinearChurnModel | BlendChurnModel | ValueModel, name: str, example: pd.DataFrame,
               output_column: str, horizons: HorizonRiskModels | None = None) -> mlflow.models.model.ModelInfo:
    """Log a bundle as a models-from-code pyfunc and register a new version of `name`
    (with `horizons`: the risk models of the shorter horizons in its `horizons/` folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        model.save(bundle)
        if horizons is not None:
            horizons.save(bundle / HORIZONS_FOLDER)
        output = pd.DataFrame({output_column: model.predict(example)})
        mlflow.set_tag(f"{name}.algorithm", getattr(model, "algorithm", "lightgbm"))
        signature = infer_signature(example, output)
        requirements = [f"{pkg}=={__import__(mod).__version__}" for pkg, mod in
                        (("lightgbm", "lightgbm"), ("pandas", "pandas"), ("numpy", "numpy"),
                         ("scikit-learn", "sklearn"), ("pydantic", "pydantic"), ("mlflow", "mlflow"))]
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(PYFUNC_FILE), artifacts={"bundle": str(bundle)},
            code_paths=CODE_PATHS, signature=signature, input_example=example,
            pip_requirements=requirements, registered_model_name=name,
        )


def champion_decision(client: MlflowClient, name: str, new_version: str, new_metric: float,
                      rescore: Callable[[Path], float | None], margin: float, metric_name: str,
                      test_cutoff: str, last_cutoff: str, cfg: Config) -> dict[str, object]:
    """Compare with the current champion on the same test rows; move the alias only if the new one wins.

    Served models are refitted on every labelled cutoff, so a champion trained on data that
    includes today's test cutoff would be judged on rows it has seen. Such a champion is
    compared by the held-out figure recorded when it was trained (a version tag), and the
    decision says so. A champion trained with other `features` or `labels` settings than the
    config's is not compared: `churn score` would refuse it with this config (`settings_difference`),
    so the new version takes its place. The new version is tagged with its own held-out figure and
    the last cutoff it was trained on.
    """
    champion_metric: float | None = None
    champion_version: str | None = None
    note = ""
    try:
        current = client.get_model_version_by_alias(name, "champion")
        champion_version = current.version
        seen = current.tags.get("last_training_cutoff")
        difference = settings_difference(client, current.run_id, cfg)
        if difference is not None:
            key, value, then = difference
            note = (f"champion was trained with {key} {then}, this config has {value}: it cannot score these "
                    "features; ")
        elif seen is not None and seen >= test_cutoff:
            recorded = current.tags.get(f"heldout.{metric_name}")
            champion_metric = float(recorded) if recorded is not None else None
            note = ("champion was trained on the test cutoff, so it is compared by its own held-out "
                    f"{metric_name}; " if recorded is not None else "champion has no comparable held-out figure; ")
        else:
            champion_metric = rescore(load_registered_bundle(f"models:/{name}@champion"))
            if champion_metric is None:
                note = "champion cannot score the current features; "
    except MlflowException:
        note = "no champion yet; "
    promote, reason = compare_with_champion(new_metric, champion_metric, margin)
    alias = "champion" if promote else "challenger"
    client.set_registered_model_alias(name, alias, new_version)
    client.set_model_version_tag(name, new_version, f"heldout.{metric_name}", repr(float(new_metric)))
    client.set_model_version_tag(name, new_version, "last_training_cutoff", last_cutoff)
    return {"model": name, "new_version": new_version, "alias": alias, "new_metric": new_metric,
            "champion_version": champion_version, "champion_metric": champion_metric, "reason": note + reason}


def knows_value(cfg: Config) -> bool:
    """Snapshot data whose value per horizon comes from a customers column: no value model to fit."""
    return "transactions" not in cfg.data.tables and cfg.labels.customer_value_column is not None


def run(cfg: Config, progress: Callable[[str], None] | None = None,
        templates: dict[str, str] | None = None) -> dict[str, object]:
    """Train both models, write reports, log everything to MLflow and register the versions."""
    say = progress or (lambda message: None)
    outputs = StageOutputs("train", stage_paths(cfg, "train"), say, optional=OPTIONAL["train"])
    with outputs:
        return _train(cfg, say, templates, outputs)


def _train(cfg: Config, say: Callable[[str], None], templates: dict[str, str] | None,
           outputs: StageOutputs) -> dict[str, object]:
    features = current_paths(cfg, "features")  # the training table and its record, from one generation
    train_path = features["train.parquet"]
    if not train_path.is_file():
        raise StageError(f"{Path(cfg.paths.features_dir) / 'train.parquet'} does not exist: "
                         "run `churn features --config ...` first")
    fingerprint = input_fingerprint(cfg, extra_files={"train_table": train_path})
    check_built_from(cfg, fingerprint, summary_path=features["features_summary.json"])
    table, sample = read_training_table(train_path, cfg)
    if templates is None:
        from features.catalogue import reason_templates
        templates = reason_templates()
    say(f"training table: {sample.rows:,} rows, {table['cutoff'].nunique()} cutoff(s)")
    if sample.active:
        say(f"sampled the training table: {sample.kept:,} of {sample.rows:,} rows kept: non-churner fit rows "
            f"{sample.rate:.1%} (weighted x{1 / sample.rate:.1f}), calibration customers {sample.calibration_rate:.1%} "
            "(all their rows), every fit churner and every test row (model.sampling.max_training_rows: "
            f"{cfg.model.sampling.max_training_rows:,})")
    truth = (true_churn_probability(table, Path(cfg.evaluation.truth_dir), cfg.labels.horizon_days)
             if cfg.evaluation.truth_dir else None)
    with tracked_run(cfg, stage="train") as active:
        mlflow.log_params(flatten_params(cfg))
        mlflow.log_dict(fingerprint, "inputs/fingerprint.json")
        say("fitting LightGBM churn and value models and the baselines")
        try:
            result = train_models(table, cfg.model, cfg.economics, cfg.labels.horizon_days, cfg.seed, truth,
                                  known_value=knows_value(cfg))
        except ValueError as error:
            raise StageError(f"cannot train on {Path(cfg.paths.features_dir) / 'train.parquet'}: {error}") from None
        result.info["sampling"] = {"rows": sample.rows, "rows_kept": sample.kept, "non_churner_fit_rows": sample.sampleable,
                                   "non_churner_rate": sample.rate,
                                   "calibration_customer_rate": sample.calibration_rate,
                                   "max_training_rows": cfg.model.sampling.max_training_rows}
        logistic_rows = result.info.get("logistic_rows_fit")
        if isinstance(logistic_rows, int) and logistic_rows < int(result.info["rows_fit"]):  # type: ignore[call-overload]
            say(f"logistic regression fitted on {logistic_rows:,} of {result.info['rows_fit']:,} fit rows "
                f"(hashed customers; model.sampling.logistic_max_rows: {cfg.model.sampling.logistic_max_rows:,})")
        metrics = result.metrics
        say(f"test ROC-AUC: LightGBM {metrics.get('churn.roc_auc', float('nan')):.3f}, "
            f"logistic regression {metrics.get('baseline_logistic.roc_auc', float('nan')):.3f}; "
            f"serving {result.selected.replace('_', ' ')} ({result.info['selection']})")
        timing = sorted(int(k[5:-len("d.roc_auc")]) for k in metrics if k.startswith("risk_") and k.endswith("d.roc_auc"))
        if timing:
            say("risk by horizon (ROC-AUC / calibration error): " + ", ".join(
                f"{d} days {metrics[f'risk_{d}d.roc_auc']:.3f} / {metrics[f'risk_{d}d.expected_calibration_error']:.4f}"
                for d in timing))
        if result.value is None:
            say(f"no value model: {result.info.get('value_model', 'value per horizon from customers.' + str(cfg.labels.customer_value_column))}")
        say(f"refitted on every labelled cutoff ({result.info['refit_rows']:,} rows); writing reports")
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.set_tag("selected_churn_model", result.selected)
        mlflow.log_dict({k: v for k, v in result.info.items() if k != "tuning_trials"}, "training_info.json")
        if "tuning_trials" in result.info:  # every trial's settings and validation log loss, and the winner
            mlflow.log_dict({"trials": result.info["tuning_trials"], "stopped_by": result.info["tuning_stopped_by"]},
                            "tuning/trials.json")
            mlflow.log_params({f"tuned.{k}": v for k, v in result.info["tuned_booster"].items()})  # type: ignore[union-attr]
        mlflow.log_dict({"features": list(result.churn.schema.features),
                         "categorical": {k: list(v) for k, v in result.churn.schema.categorical.items()}},
                        "features.json")
        with outputs.commit() as files:  # every report file switches in together when the block ends
            paths = write_reports(result, table, cfg, templates, files)
            uplift = fit_and_report(cfg, result.churn.schema, say, save_figure, files)
            for name, path in paths.items():  # the new files, logged before they are switched in
                folder = stage_paths(cfg, "train")[name].parent.name
                if folder in ("plots", "curves"):
                    mlflow.log_artifact(str(path), folder)
            for name in ("qini.png", "qini.csv"):
                if files[name].is_file():
                    mlflow.log_artifact(str(files[name]), stage_paths(cfg, "train")[name].parent.name)
            summary = _register(cfg, say, result, table, active, uplift)
            write_json(summary, files["train_metrics.json"])
            mlflow.log_artifact(str(files["train_metrics.json"]))
    metrics_path = Path(cfg.paths.reports_dir) / "train_metrics.json"
    say(f"reports in {cfg.paths.reports_dir}/ (metrics: {metrics_path})")
    public = stage_paths(cfg, "train")
    return {**summary, "paths": {k: str(public[k]) for k in paths}}


def _register(cfg: Config, say: Callable[[str], None], result: TrainingResult, table: pd.DataFrame,
              active: mlflow.ActiveRun, uplift: dict[str, object]) -> dict[str, object]:
    """Log and register the served models, decide champion or challenger; the summary for train_metrics.json."""
    say("registering models in the MLflow registry")
    final_churn = result.final_churn or result.selected_model
    example = synthetic_example(final_churn.schema, table)
    churn_info = log_bundle(final_churn, CHURN_MODEL_NAME, example, "churn_probability", result.final_horizons)
    client = MlflowClient()
    test_rows = table[result.split.test].reset_index(drop=True)
    y = test_rows["churned"].to_numpy(dtype=int)
    ltv = result.test["retained_lifetime_value"].to_numpy()
    metric = cfg.model.champion_metric
    if metric == "best_profit" and not np.isfinite(ltv).any():
        say("model.champion_metric best_profit needs customer values; none here: roc_auc is used instead")
        metric = "roc_auc"

    def rescore_churn(bundle: Path) -> float | None:
        model = load_churn_model(bundle)
        if model.schema.problems(test_rows):
            return None
        return champion_score(metric, y, model.predict(test_rows), ltv, cfg.economics)

    def rescore_value(bundle: Path) -> float | None:
        model = ValueModel.load(bundle)
        if model.schema.problems(test_rows):
            return None
        return stayer_value_metrics(y, test_rows["future_value"].to_numpy(), model.predict(test_rows))["spearman"]

    new_churn = champion_score(metric, y, result.test["selected_probability"].to_numpy(), ltv, cfg.economics)
    test_cutoff = max(result.split.test_cutoffs)
    last_cutoff = str(pd.Timestamp(table["cutoff"].max()).date())
    decisions = [
        champion_decision(client, CHURN_MODEL_NAME, str(churn_info.registered_model_version), new_churn,
                          rescore_churn, cfg.model.champion_margin, metric, test_cutoff, last_cutoff, cfg),
    ]
    if result.final_value is not None:
        value_info = log_bundle(result.final_value, VALUE_MODEL_NAME, example, "predicted_value")
        decisions.append(champion_decision(client, VALUE_MODEL_NAME, str(value_info.registered_model_version),
                                           result.metrics["value.spearman"], rescore_value,
                                           cfg.model.champion_margin, "spearman", test_cutoff, last_cutoff, cfg))
    if uplift["status"] == "trained":
        fitted = uplift.pop("_result")
        uplift_table = uplift.pop("_table")
        uplift_info = log_bundle(fitted.final, UPLIFT_MODEL_NAME, example, "uplift")
        decisions.append(champion_decision(client, UPLIFT_MODEL_NAME, str(uplift_info.registered_model_version),
                                           fitted.metrics[fitted.selected]["qini"]["value"],
                                           rescore_qini(fitted, uplift_table, cfg), 0.0, "qini",
                                           max(fitted.info["test_cutoffs"]),
                                           str(pd.Timestamp(uplift_table["cutoff"].max()).date()), cfg))
    decisions[0]["algorithm"] = result.selected
    decisions[0]["selection"] = result.info["selection"]
    for decision in decisions:
        say(f"{decision['model']} v{decision['new_version']} -> {decision['alias']}: {decision['reason']}")
        mlflow.set_tag(f"{decision['model']}.alias", str(decision["alias"]))
    mlflow.log_dict({"decisions": decisions}, "champion_decision.json")
    return {"run_id": active.info.run_id, "metrics": result.metrics,
            "info": {k: v for k, v in result.info.items() if k != "tuning_trials"},
            "selected_churn_model": result.selected,
            "uplift": {k: v for k, v in uplift.items() if k in ("status", "why", "selected", "info")},
            "champion": decisions}

"""From nothing to a retention list on real data no one here made, as a new user would do it.

For each shape of data the contract promises (a retailer's purchase log; a subscription
company's customer snapshot, with closure dates and as shipped with only a churn flag), the test
runs only the CLI: `churn init` writes a config
from the files, `churn run` runs every stage (validate, features, train, score, rules,
report). Then it checks what a user would check:

- no stage printed a Python traceback, and every stage succeeded;
- the retention list is not empty, or the manifest says exactly why;
- customers left out by a population rule are written with their reason;
- the served churn model (chosen on validation scores only) beats a logistic regression and
  a default LightGBM that this test fits itself on the same split (all training rows, library
  defaults), and on purchases the BG/NBD baseline: by held-out log loss, and by ROC-AUC
  unless the difference is within the noise of the held-out rows (a paired bootstrap of the
  held-out customers: the served model may trail by a point estimate, never significantly);
  the project must beat what a user gets from a notebook in minutes;
- calibration error and log loss are reported for the served model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models.data import infer_schema, model_feature_columns, split_rows
from pipelines.config import load_config
from tests.realdata.datasets import RealDataset

CHURN = Path(sys.executable).parent / "churn"


def churn(*args: str, cwd: Path, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    # the config's own MLflow store, as for a user: no tracking settings inherited from other tests
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run([str(CHURN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-6000:]
    assert result.returncode == 0, f"churn {args[0]} exited {result.returncode}\n{output[-6000:]}"
    return result


def reference_predictions(config: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Held-out rows (customer_id, cutoff, churned) of the pipeline's own split, and the predictions
    there of two models a user would try first, fitted on all its training rows."""
    cfg = load_config(config)
    table = pd.read_parquet(Path(config.parent, cfg.paths.features_dir) / "train.parquet")
    split = split_rows(table, cfg.labels.horizon_days, cfg.model.calibration_share,
                       cfg.model.single_cutoff_test_share, cfg.seed)
    features = model_feature_columns(table)
    schema = infer_schema(table, features)
    x = schema.matrix(table)
    y = table["churned"].to_numpy(dtype=int)
    train = split.fit | split.calibration
    categorical = [c for c in features if c in schema.categorical]
    numeric = [c for c in features if c not in schema.categorical]
    as_text = {c: "object" for c in categorical}
    logistic = Pipeline([
        ("prepare", ColumnTransformer([
            ("numeric", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
             numeric),
            ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value="<missing>",
                                                        keep_empty_features=True),
                                          OneHotEncoder(handle_unknown="ignore")), categorical)])),
        ("model", LogisticRegression(max_iter=5000))]).fit(x[train].astype(as_text), y[train])
    booster = lgb.LGBMClassifier(verbose=-1, random_state=cfg.seed).fit(x[train], y[train])
    held_out = {"logistic regression": logistic.predict_proba(x[split.test].astype(as_text))[:, 1],
                "default LightGBM": booster.predict_proba(x[split.test])[:, 1]}
    rows = table.loc[split.test, ["customer_id", "cutoff", "churned"]].reset_index(drop=True)
    return rows, held_out


def held_out_figures(y: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """ROC-AUC and log loss of one model's held-out predictions."""
    return {"roc_auc": float(roc_auc_score(y, probability)),
            "log_loss": float(log_loss(y, np.clip(probability, 1e-6, 1 - 1e-6), labels=[0, 1]))}


def auc_difference_interval(y: np.ndarray, ours: np.ndarray, theirs: np.ndarray, draws: int = 2000,
                            seed: int = 0) -> tuple[float, float]:
    """95% interval of ROC-AUC(ours) - ROC-AUC(theirs) over bootstrap draws of the same held-out rows."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(draws):
        pick = rng.integers(0, len(y), len(y))
        if 0 < y[pick].sum() < len(pick):
            differences.append(roc_auc_score(y[pick], ours[pick]) - roc_auc_score(y[pick], theirs[pick]))
    low, high = np.quantile(differences, [0.025, 0.975])
    return float(low), float(high)


def held_out_predictions(folder: Path, config: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The held-out labels, the served model's predictions there (the train stage's test predictions)
    and the references' (`reference_predictions`), row for row."""
    cfg = load_config(config)
    rows, held_out = reference_predictions(config)
    predictions = pd.read_parquet(folder / cfg.paths.reports_dir / "test_predictions.parquet")
    served = rows.merge(predictions[["customer_id", "cutoff", "selected_probability"]], on=["customer_id", "cutoff"],
                        how="left", validate="one_to_one")["selected_probability"].to_numpy(dtype=float)
    assert np.isfinite(served).all(), "the served model's test predictions do not cover the held-out rows"
    return rows["churned"].to_numpy(dtype=int), served, held_out


def check_outcome(folder: Path, config: Path) -> dict[str, object]:
    cfg = load_config(config)
    metrics = json.loads((folder / cfg.paths.reports_dir / "train_metrics.json").read_text())
    manifest = json.loads((folder / cfg.paths.outputs_dir / "manifest.json").read_text())
    listed = pd.read_csv(folder / cfg.paths.outputs_dir / "retention_list.csv", dtype={"customer_id": "str"})
    assert len(listed) > 0 or manifest["plan"].get("why_empty"), "an empty list must say why"
    excluded = pd.read_csv(folder / cfg.paths.outputs_dir / "excluded.csv", dtype=str)
    assert len(excluded) == manifest["rows"]["excluded"]
    assert set(excluded["reason"]) <= {"no_transaction_in_lookback"}
    figures = metrics["metrics"]
    y, served_p, held_out = held_out_predictions(folder, config)
    served = held_out_figures(y, served_p)
    assert abs(served["roc_auc"] - figures["selected.roc_auc"]) < 1e-9  # the report's figure is these rows'
    references = {name: held_out_figures(y, p) for name, p in held_out.items()}
    intervals = {name: auc_difference_interval(y, served_p, p) for name, p in held_out.items()}
    print(f"\n{folder.name}: served {metrics['selected_churn_model']} ROC-AUC {served['roc_auc']:.4f}, log loss "
          f"{served['log_loss']:.4f}, ECE {figures['selected.expected_calibration_error']:.4f}; "
          + ", ".join(f"{name} {f['roc_auc']:.4f} / {f['log_loss']:.4f} (AUC difference 95% "
                      f"[{intervals[name][0]:+.4f}, {intervals[name][1]:+.4f}])" for name, f in references.items())
          + f"; listed {len(listed)}, left out {len(excluded)}")
    if "baseline_btyd.roc_auc" in figures:  # purchases: BG/NBD, fitted by the train stage on the same split
        references["BG/NBD"] = {"roc_auc": figures["baseline_btyd.roc_auc"], "log_loss": figures["baseline_btyd.log_loss"]}
    for name, reference in references.items():
        assert served["log_loss"] < reference["log_loss"], (
            f"served model log loss {served['log_loss']:.4f} not below {name} {reference['log_loss']:.4f}")
        if served["roc_auc"] < reference["roc_auc"]:
            assert name in intervals and intervals[name][1] > 0, (
                f"served model ROC-AUC {served['roc_auc']:.4f} below {name} {reference['roc_auc']:.4f}"
                + (f", significantly (95% interval of the difference {intervals[name]})" if name in intervals else ""))
    assert np.isfinite(figures["selected.expected_calibration_error"])
    assert (folder / cfg.paths.reports_dir / "html" / "index.html").is_file()
    return {"metrics": figures, "manifest": manifest}


def check_scored_on_duckdb(folder: Path, config: Path) -> None:
    """`churn score` as a user runs it weekly (it prints the list's head), then the same on DuckDB from
    the files (after `churn validate`): the scoring rows spooled and read back, the open complaints
    read by the engine. The same customers, probabilities and list as the pandas engine's."""
    churn("score", "--config", config.name, cwd=folder)
    raw = yaml.safe_load(config.read_text())
    raw["features"]["engine"] = "duckdb"
    raw["paths"]["outputs_dir"] = str(folder / "outputs-duckdb")
    duck = folder / "duckdb.yaml"
    duck.write_text(yaml.safe_dump(raw, sort_keys=False))
    churn("validate", "--config", duck.name, cwd=folder)
    churn("score", "--config", duck.name, cwd=folder)
    outputs = folder / load_config(config).paths.outputs_dir
    ours, theirs = (pd.read_parquet(path / "scores.parquet") for path in (outputs, folder / "outputs-duckdb"))
    assert list(theirs["customer_id"]) == list(ours["customer_id"]) and len(ours) > 0
    # both engines sum money exactly (features/_grouping.py decimal_units): the same features, the same scores
    np.testing.assert_array_equal(theirs["churn_probability"], ours["churn_probability"])
    listed = [pd.read_csv(path / "retention_list.csv", dtype={"customer_id": "str"})["customer_id"].tolist()
              for path in (outputs, folder / "outputs-duckdb")]
    assert listed[0] == listed[1]


@pytest.mark.slow
def test_retailer_purchase_log_from_init_to_list(retail_data: RealDataset, tmp_path: Path) -> None:
    churn("init", "--customers", str(retail_data.customers), "--transactions", str(retail_data.transactions),
          "--column", "customers.customer_id=household_id", "--column", "transactions.customer_id=household_id",
          "--column", "transactions.timestamp=transaction_timestamp", "--column", "transactions.amount=sales_value",
          "--out", "mine.yaml", cwd=tmp_path)
    config = tmp_path / "mine.yaml"
    assert load_config(config).labels.definition == "inactivity"
    churn("run", "--config", "mine.yaml", cwd=tmp_path)
    outcome = check_outcome(tmp_path, config)
    assert outcome["manifest"]["plan"]["value_source"] == "model"
    check_scored_on_duckdb(tmp_path, config)


@pytest.mark.slow
def test_subscription_snapshot_from_init_to_list(snapshot_data: RealDataset, tmp_path: Path) -> None:
    churn("init", "--customers", str(snapshot_data.customers),
          "--column", "customers.signup_date=subscription_start", "--out", "mine.yaml", cwd=tmp_path)
    config = tmp_path / "mine.yaml"
    cfg = load_config(config)
    assert cfg.labels.definition == "closure" and cfg.labels.cutoffs.anchor == "as_of"
    assert "target" not in cfg.features.static_features  # the source's churn flag is the outcome
    churn("run", "--config", "mine.yaml", cwd=tmp_path)
    outcome = check_outcome(tmp_path, config)
    assert outcome["manifest"]["plan"]["value_source"] == "none"
    check_scored_on_duckdb(tmp_path, config)  # a list without customer values printed, then on DuckDB


@pytest.mark.slow
def test_snapshot_with_a_churn_flag_and_no_dates_from_init_to_list(flag_snapshot_data: RealDataset,
                                                                   tmp_path: Path) -> None:
    """The same snapshot as the package ships it: a churn flag (`target`, 1.0 / 0.0) and no date at all.
    `churn init` finds the flag by its name and the user gives only the snapshot date; every customer is
    trained on, the stayers are listed, and the served model beats the references as on the dated form."""
    churn("init", "--customers", str(flag_snapshot_data.customers), "--as-of", str(flag_snapshot_data.as_of),
          "--out", "mine.yaml", cwd=tmp_path)
    config = tmp_path / "mine.yaml"
    cfg = load_config(config)
    assert cfg.labels.churn_flag is not None and cfg.labels.churn_flag.column == "target"
    assert cfg.labels.churn_flag.tenure_column is None and "target" not in cfg.features.static_features
    churn("run", "--config", "mine.yaml", cwd=tmp_path)
    outcome = check_outcome(tmp_path, config)
    train = pd.read_parquet(tmp_path / cfg.paths.features_dir / "train.parquet")
    source = pd.read_csv(flag_snapshot_data.customers, dtype={"id": "str"})
    assert len(train) == len(source) and train["churned"].sum() == int((source["target"] == 1.0).sum())
    assert "days_to_churn" not in train.columns  # a flag says who left, not when: no time to churn is learnt
    scores = pd.read_parquet(tmp_path / cfg.paths.outputs_dir / "scores.parquet")
    stayed = set(source.loc[source["target"] == 0.0, "id"])
    assert set(scores["customer_id"]) == stayed  # the stayers, every one; who left is not listed
    assert outcome["manifest"]["listed_on"].startswith(str(flag_snapshot_data.as_of))
    # the snapshot describes one moment: scoring it at another is refused, naming the rule, nothing written
    listed = (tmp_path / cfg.paths.outputs_dir / "retention_list.csv").read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    other = subprocess.run([str(CHURN), "score", "--config", "mine.yaml", "--as-of", "2014-06-01"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600, env=env)
    said = " ".join((other.stdout + other.stderr).split())
    assert other.returncode == 4 and "labels.churn_flag" in said and "Traceback" not in said, said
    assert (tmp_path / cfg.paths.outputs_dir / "retention_list.csv").read_bytes() == listed

"""The analyst notebooks on the data shapes the contract promises besides the full bank.

Two small projects are built in tmp and run end to end by `churn run` (validate, features,
train, score, rules, report), side by side:

- a retailer: customers and transactions only (no complaints, surveys or contacts), churn =
  inactivity; the purchase log comes from `churn generate` with the other tables left out;
- a customers-only snapshot: static columns and closures, no transactions, so no value model,
  no profit curve and empty money columns in the scores; made here with pandas.

Every notebook must render without an error and say in words what is not available, instead
of failing or drawing empty charts (tests/pipelines/test_notebooks.py checks the full bank).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import BIN, ROOT, small_config, stage_environment
from tests.pipelines.test_notebooks import MIN_IMAGES, STDERR_OUTPUT

SNAPSHOT_AS_OF = pd.Timestamp("2024-07-01")
SNAPSHOT_CUSTOMERS = 600


def base_config() -> dict[str, object]:
    """configs/default.yaml shrunk for tests (few boosting rounds), without the demo's hidden truth."""
    raw = yaml.safe_load(small_config((ROOT / "configs" / "default.yaml").read_text(encoding="utf-8")))
    raw["evaluation"]["truth_dir"] = None
    return raw


def retail_project(root: Path) -> dict[str, object]:
    """A purchase log: the generator's customers and transactions only, churn = no purchase in the horizon."""
    raw = root / "raw"
    subprocess.run([str(BIN / "churn"), "generate", "--customers", "400", "--months", "12", "--seed", "7",
                    "--out", str(raw)], cwd=root, env=stage_environment(), capture_output=True, text=True, check=True)
    config = base_config()
    config["data"] = {"as_of": None, "tables": {"customers": {"path": str(raw / "customers.parquet")},
                                                "transactions": {"path": str(raw / "transactions.parquet")}}}
    config["labels"].update({"definition": "inactivity", "cutoffs": {"count": 3, "spacing_months": 1}})
    return config


def snapshot_project(root: Path) -> dict[str, object]:
    """A customers-only snapshot: a few static columns, closures in the six months before as_of."""
    rng = np.random.default_rng(11)
    n = SNAPSHOT_CUSTOMERS
    plan = rng.choice(["basic", "plus", "premium"], size=n, p=[0.5, 0.3, 0.2])
    usage = rng.normal(0.0, 1.0, size=n)
    age = rng.integers(18, 80, size=n)
    fee = np.round(rng.gamma(2.0, 15.0, size=n), 2)
    signup = SNAPSHOT_AS_OF - pd.to_timedelta(rng.integers(200, 3000, size=n), unit="D")
    logit = -2.2 - 1.4 * usage + np.where(plan == "basic", 0.6, 0.0)
    closes = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    closed = pd.Series(SNAPSHOT_AS_OF - pd.to_timedelta(rng.integers(1, 180, size=n), unit="D")).where(closes)
    customers = pd.DataFrame({"customer_id": [f"S{i:04d}" for i in range(n)], "signup_date": signup.date,
                              "closed_date": closed.dt.date, "plan": plan, "usage_score": usage.round(3),
                              "age": age, "monthly_fee": fee})
    customers.to_csv(root / "customers.csv", index=False)
    config = base_config()
    config["data"] = {"as_of": str(SNAPSHOT_AS_OF.date()),
                      "tables": {"customers": {"path": str(root / "customers.csv")}}}
    config["features"]["static_features"] = ["plan", "usage_score", "age", "monthly_fee"]
    config["labels"].update({"definition": "closure", "horizon_days": 181, "cutoffs": {"count": 1, "anchor": "as_of"}})
    return config


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """Both projects built, then `churn run` on each, the two runs side by side (each in its own folder and store)."""
    projects = {"retail": retail_project, "snapshot": snapshot_project}
    running: dict[str, tuple[Path, subprocess.Popen[str], float]] = {}
    for name, build in projects.items():
        root = tmp_path_factory.mktemp(name)
        (root / "config.yaml").write_text(yaml.safe_dump(build(root), sort_keys=False), encoding="utf-8")
        process = subprocess.Popen([str(BIN / "churn"), "run", "--config", "config.yaml"], cwd=root,
                                   env=stage_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running[name] = (root, process, time.perf_counter())
    results: dict[str, dict[str, object]] = {}
    for name, (root, process, start) in running.items():
        stdout, stderr = process.communicate(timeout=900)
        results[name] = {"root": root, "returncode": process.returncode, "stdout": stdout, "stderr": stderr,
                         "seconds": time.perf_counter() - start}
    return results


def pages(result: dict[str, object]) -> dict[str, str]:
    """The rendered HTML per notebook, once the run is known to have passed."""
    output = f"{result['stdout']}\n{result['stderr']}"
    assert result["returncode"] == 0, f"churn run exited {result['returncode']}\n{output[-6000:]}"
    assert "Traceback" not in output, output[-6000:]
    html_dir = Path(str(result["root"])) / "reports" / "html"
    found = {path.stem: path.read_text(encoding="utf-8") for path in sorted(html_dir.glob("0*.html"))}
    assert sorted(found) == sorted(MIN_IMAGES), f"rendered: {sorted(found)}"
    assert (html_dir / "index.html").is_file()
    return found


def assert_clean(name: str, html: str) -> None:
    assert STDERR_OUTPUT not in html, f"{name}: an error or warning was printed"
    assert "Traceback" not in html, f"{name}: a cell failed"
    assert "signup_date" not in html and "closed_date" not in html, f"{name} shows raw customer columns"


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["retail", "snapshot"])
def test_every_notebook_renders_on_the_shape(shapes: dict[str, dict[str, object]], shape: str) -> None:
    for name, html in pages(shapes[shape]).items():
        assert_clean(f"{shape}/{name}", html)


@pytest.mark.slow
def test_retail_report_says_what_a_purchase_log_lacks(shapes: dict[str, dict[str, object]]) -> None:
    html = pages(shapes["retail"])
    assert "No complaints in this data" in html["01_data_overview"]
    assert "left out: no transaction in lookback" in html["01_data_overview"], "population table per cutoff"
    assert "no complaints to mine" in html["03_complaint_root_causes"]
    assert "Who was left out of the population" in html["04_retention_list"]
    root = Path(str(shapes["retail"]["root"]))
    assert (root / "reports" / "curves" / "profit_curve.csv").is_file(), "a purchase log has values: a profit curve"


@pytest.mark.slow
def test_snapshot_report_says_what_is_not_available_and_why(shapes: dict[str, dict[str, object]]) -> None:
    html = pages(shapes["snapshot"])
    root = Path(str(shapes["snapshot"]["root"]))
    assert not (root / "reports" / "curves" / "profit_curve.csv").exists(), "no value known: no profit curve"
    assert "No transactions table in this config" in html["01_data_overview"]
    assert "One training cutoff" in html["01_data_overview"]
    assert "No profit curve" in html["02_model_report"]
    assert "no value model was fitted" in html["02_model_report"]
    served = json.loads((root / "reports" / "train_metrics.json").read_text())["selected_churn_model"]
    named = {"lightgbm": "Served churn model: LightGBM",
             "logistic_regression": "Served churn model: logistic regression"}
    assert named[served] in html["02_model_report"]
    assert "refitted on every labelled cutoff" in html["02_model_report"]
    assert "no complaints to mine" in html["03_complaint_root_causes"]
    manifest = json.loads((root / "data" / "outputs" / "manifest.json").read_text())
    assert manifest["plan"]["value_source"] == "none"
    assert "not available: no customer value is known" in html["04_retention_list"]
    assert manifest["plan"].get("why_empty"), "a list without customer value should say why in the manifest"
    assert "Why the list is empty" in html["04_retention_list"] or "About this list" in html["04_retention_list"]

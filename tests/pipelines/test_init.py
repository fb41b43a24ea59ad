"""`churn init`: from a user's files to a commented config that `churn run` accepts.

The command runs as users run it (the installed `churn` in a subprocess), on a small
generated bank and on files derived from it: a purchases-only shop with other column
names, and a customers-only snapshot with a money column written as text and a name column.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.profile import classify_static, guess_columns, value_column_candidates
from pipelines.config import load_config

CHURN = Path(sys.executable).parent / "churn"
START, MONTHS, END = "2023-01-01", 14, "2024-03-01"
TABLE_NAMES = ("customers", "transactions", "complaints", "surveys", "contacts")


def churn(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """The installed `churn` with a wide terminal and no MLflow or config from the environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "CHURN_CONFIG")}
    env["COLUMNS"] = "250"
    done = subprocess.run([str(CHURN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated bank as CSV files in `<root>/bank/`; returns the root (the folder init runs in)."""
    root = tmp_path_factory.mktemp("init")
    done = churn("generate", "--customers", "1500", "--months", str(MONTHS), "--start", START,
                 "--out", "bank", "--format", "csv", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def shop(bank: Path) -> Path:
    """Purchases only: customers without closed_date, transactions only, other column names."""
    customers = pd.read_csv(bank / "bank" / "customers.csv", dtype=str)
    customers = customers.drop(columns=["closed_date"]).rename(
        columns={"customer_id": "CustomerID", "signup_date": "Join Date"})
    customers.to_csv(bank / "shop_customers.csv", index=False)
    tx = pd.read_csv(bank / "bank" / "transactions.csv", dtype=str)
    tx = tx.rename(columns={"customer_id": "CustomerID", "timestamp": "InvoiceDate", "amount": "Revenue"})
    tx[["CustomerID", "InvoiceDate", "Revenue", "channel"]].to_csv(bank / "shop_tx.csv", index=False)
    return bank


@pytest.fixture(scope="module")
def snapshot(bank: Path) -> Path:
    """Customers only: a monthly charge (text in the CSV), a name, an e-mail and a churn flag."""
    customers = pd.read_csv(bank / "bank" / "customers.csv", dtype=str)
    rng = np.random.default_rng(3)
    customers["full_name"] = [f"Person {i} {chr(65 + i % 26)}" for i in range(len(customers))]
    customers["email"] = [f"p{i}@example.com" for i in range(len(customers))]
    customers["monthly_charge"] = [f"{v:.2f}" for v in rng.uniform(20, 120, len(customers))]
    customers["Churn"] = np.where(customers["closed_date"].notna(), "Yes", "No")
    customers.to_csv(bank / "snap_customers.csv", index=False)
    return bank


def init(root: Path, out: str, *args: str) -> subprocess.CompletedProcess[str]:
    return churn("init", *args, "--out", out, cwd=root)


def written(root: Path, out: str) -> tuple[dict, str]:
    text = (root / out).read_text(encoding="utf-8")
    return yaml.safe_load(text), text


# ---------------------------------------------------------------- the three kinds of data


def test_bank_with_every_table_gets_closure_and_the_generated_end_as_as_of(bank: Path) -> None:
    files = [part for name in TABLE_NAMES for part in (f"--{name}", f"bank/{name}.csv")]
    done = init(bank, "configs/bank.yaml", *files)
    assert done.returncode == 0, done.stderr
    cfg = load_config(bank / "configs" / "bank.yaml")
    raw, text = written(bank, "configs/bank.yaml")
    assert cfg.labels.definition == "closure"
    assert set(cfg.data.tables) == set(TABLE_NAMES)
    assert cfg.data.as_of == END
    assert cfg.data.tables["customers"].path == Path("bank/customers.csv")  # as given, relative to the run folder
    assert all("columns" not in entry for entry in raw["data"]["tables"].values())  # names already the contract's
    assert cfg.labels.cutoffs.anchor == "month_start" and 3 <= cfg.labels.cutoffs.count <= 12
    assert set(cfg.features.static_features) == {"segment", "region", "age_band", "products_held",
                                                 "acquisition_channel"}
    assert cfg.features.static_types["products_held"] == "numeric"
    assert cfg.features.static_types["region"] == "categorical"
    # 14 months cannot hold 3 cutoffs after a year of history and before a 90-day window: windows are cut, said why
    assert max(cfg.features.windows_days) < 365 and "too short" in text
    # money in the demo's scale: costs stay near the demo's (same bank, same margin)
    assert cfg.economics.value_margin == 0.05 and 2 < cfg.economics.contact_cost < 12
    assert "ASSUMPTION" in text and "why" not in raw
    out = words(done.stdout)
    assert "labels.definition" in out and "closure" in out and "next: churn run --config configs/bank.yaml" in out


def test_purchases_only_with_other_column_names_gets_inactivity_a_lookback_and_the_mapping(shop: Path) -> None:
    done = init(shop, "configs/shop.yaml", "--customers", "shop_customers.csv", "--transactions", "shop_tx.csv")
    assert done.returncode == 0, done.stderr
    cfg = load_config(shop / "configs" / "shop.yaml")
    _, text = written(shop, "configs/shop.yaml")
    assert cfg.labels.definition == "inactivity"
    lookback = cfg.labels.inactivity_lookback_days
    assert 90 <= lookback <= 730 and (lookback % 30 == 0 or lookback == 730)
    assert cfg.data.tables["customers"].columns == {"customer_id": "CustomerID", "signup_date": "Join Date"}
    assert cfg.data.tables["transactions"].columns == {"customer_id": "CustomerID", "timestamp": "InvoiceDate",
                                                       "amount": "Revenue"}
    assert cfg.economics.value_margin == 0.25
    flat = words(text)
    assert "excluded" in flat and "leaves out" in flat and "90th percentile" in flat


def test_snapshot_gets_closure_anchored_at_as_of_with_the_charge_as_value_and_no_personal_data(snapshot: Path) -> None:
    done = init(snapshot, "configs/snap.yaml", "--customers", "snap_customers.csv")
    assert done.returncode == 0, done.stderr
    cfg = load_config(snapshot / "configs" / "snap.yaml")
    _, text = written(snapshot, "configs/snap.yaml")
    assert cfg.labels.definition == "closure"
    assert cfg.labels.cutoffs.anchor == "as_of" and cfg.labels.cutoffs.count == 1
    assert cfg.labels.customer_value_column == "monthly_charge"
    assert cfg.features.static_types["monthly_charge"] == "numeric"  # text in the CSV, numbers in content
    for left_out in ("full_name", "email", "Churn"):
        assert left_out not in cfg.features.static_features
        assert f"- {left_out}:" in text
    assert "personal data" in text
    assert "full_name" in done.stdout and "email" in done.stdout


def test_without_any_value_the_list_is_ranked_by_risk_and_says_so(bank: Path) -> None:
    done = init(bank, "configs/novalue.yaml", "--customers", "bank/customers.csv", "--complaints",
                "bank/complaints.csv")
    assert done.returncode == 0, done.stderr
    cfg = load_config(bank / "configs" / "novalue.yaml")
    _, text = written(bank, "configs/novalue.yaml")
    assert cfg.labels.definition == "closure" and cfg.labels.cutoffs.anchor == "month_start"
    assert cfg.labels.customer_value_column is None
    assert 0.01 <= cfg.scoring.segments.churn_warning_top_share <= 0.2  # a risk-only list is not empty
    assert "ranked by risk only" in words(text) and "ranked by risk only" in words(done.stdout)


# ---------------------------------------------------------------- refusals


def test_a_required_column_not_found_exits_2_naming_the_column_flag_and_writes_nothing(shop: Path) -> None:
    tx = pd.read_csv(shop / "shop_tx.csv", dtype=str).rename(columns={"InvoiceDate": "When"})
    tx = tx.drop(columns=["Revenue"]).assign(price="2.5", quantity="3")
    tx.to_csv(shop / "odd_tx.csv", index=False)
    done = init(shop, "configs/odd.yaml", "--customers", "shop_customers.csv", "--transactions", "odd_tx.csv")
    assert done.returncode == 2
    message = words(done.stderr)
    assert "--column transactions.timestamp=" in message and "--column transactions.amount=" in message
    assert "CustomerID, When, channel, price, quantity" in message  # the file's columns
    assert "price x quantity cannot be guessed" in message
    assert not (shop / "configs" / "odd.yaml").exists()
    fixed = init(shop, "configs/odd.yaml", "--customers", "shop_customers.csv", "--transactions", "odd_tx.csv",
                 "--column", "transactions.timestamp=When", "--column", "transactions.amount=price")
    assert fixed.returncode == 0, fixed.stderr
    cfg = load_config(shop / "configs" / "odd.yaml")
    assert cfg.data.tables["transactions"].columns == {"customer_id": "CustomerID", "timestamp": "When",
                                                       "amount": "price"}
    assert "--column" in (shop / "configs" / "odd.yaml").read_text(encoding="utf-8")


def test_an_existing_config_is_kept_without_force(shop: Path) -> None:
    target = shop / "configs" / "keep.yaml"
    target.parent.mkdir(exist_ok=True)
    target.write_text("# mine, hand-edited\n", encoding="utf-8")
    args = ("--customers", "shop_customers.csv", "--transactions", "shop_tx.csv")
    done = init(shop, "configs/keep.yaml", *args)
    assert done.returncode == 4
    assert "--force" in words(done.stderr)
    assert target.read_text(encoding="utf-8") == "# mine, hand-edited\n"
    forced = init(shop, "configs/keep.yaml", *args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert load_config(target).labels.definition == "inactivity"


def test_a_closed_flag_is_not_a_closure_date_and_with_customers_only_it_is_the_churn_flag(shop: Path) -> None:
    customers = pd.read_csv(shop / "shop_customers.csv", dtype=str)
    customers["closed"] = np.where(np.arange(len(customers)) % 10 == 0, "yes", "no")
    customers.to_csv(shop / "flag_customers.csv", index=False)
    done = init(shop, "configs/flag.yaml", "--customers", "flag_customers.csv", "--transactions", "shop_tx.csv")
    assert done.returncode == 0, done.stderr
    cfg = load_config(shop / "configs" / "flag.yaml")
    assert cfg.labels.definition == "inactivity" and "closed" not in cfg.features.static_features
    assert cfg.labels.churn_flag is None
    # customers only: nothing but the flag says who churned, so it is the churn flag (labels.churn_flag),
    # the file's own signup dates give the tenure, and the snapshot date is assumed the day after the last signup
    alone = init(shop, "configs/alone.yaml", "--customers", "flag_customers.csv")
    assert alone.returncode == 0, alone.stdout + alone.stderr
    cfg = load_config(shop / "configs" / "alone.yaml")
    assert cfg.labels.churn_flag is not None and cfg.labels.churn_flag.column == "closed"
    assert cfg.labels.churn_flag.tenure_column is None and "closed" not in cfg.features.static_features
    latest = pd.to_datetime(customers["Join Date"]).max().normalize()
    assert pd.Timestamp(cfg.data.as_of) == latest + pd.Timedelta(days=1)
    assert "ASSUMPTION: the day after the latest signup" in words(written(shop, "configs/alone.yaml")[1].replace("#", ""))
    assert cfg.labels.cutoffs.count == 1 and cfg.labels.cutoffs.anchor == "as_of"
    nothing = customers.drop(columns="closed")
    nothing.to_csv(shop / "no_outcome.csv", index=False)
    refused = init(shop, "configs/none.yaml", "--customers", "no_outcome.csv")
    assert refused.returncode == 3 and "nothing says who churned" in words(refused.stderr)
    assert not (shop / "configs" / "none.yaml").exists()


@pytest.fixture(scope="module")
def flagged(bank: Path) -> Path:
    """A snapshot as most teams export it: no dates, a churn flag (1/0) and a tenure in months."""
    customers = pd.read_csv(bank / "bank" / "customers.csv", dtype=str)
    as_of = pd.Timestamp(END)
    signup = pd.to_datetime(customers["signup_date"])
    closed = pd.to_datetime(customers["closed_date"])
    left = closed.notna() & (closed >= as_of - pd.Timedelta(days=90))
    kept = closed.isna() | left  # those who closed before the window are not in a snapshot of it
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({
        "Customer ID": customers["customer_id"], "Tenure (months)": ((as_of - signup).dt.days // 30).astype(int),
        "segment": customers["segment"], "Monthly Charges": [f"{v:.2f}" for v in rng.uniform(10, 90, len(customers))],
        "Exited": np.where(left, 1, 0)})[kept.to_numpy()]
    frame.to_csv(bank / "flagged.csv", index=False)
    return bank


def test_a_snapshot_with_a_flag_and_a_tenure_trains_everyone_and_scores_the_stayers(flagged: Path) -> None:
    done = init(flagged, "configs/flagged.yaml", "--customers", "flagged.csv", "--as-of", END)
    assert done.returncode == 0, done.stdout + done.stderr
    raw, text = written(flagged, "configs/flagged.yaml")
    assert raw["labels"]["churn_flag"] == {"column": "Exited", "tenure_column": "Tenure (months)",
                                           "tenure_unit": "months"}
    assert "signup_date" not in raw["data"]["tables"]["customers"].get("columns", {})
    assert not {"Exited", "Tenure (months)"} & set(raw["features"]["static_features"])
    assert "ASSUMPTION: the window the flag covers" in words(text.replace("#", ""))
    for command in ("validate", "features"):
        step = churn(command, "--config", "configs/flagged.yaml", cwd=flagged)
        assert step.returncode == 0, step.stdout + step.stderr
    cfg = load_config(flagged / "configs" / "flagged.yaml")
    source = pd.read_csv(flagged / "flagged.csv", dtype={"Customer ID": "str"})
    train = pd.read_parquet(flagged / cfg.paths.features_dir / "train.parquet")
    assert len(train) == len(source)  # every customer of the snapshot is trained on, none dropped
    merged = train.merge(source, left_on="customer_id", right_on="Customer ID", validate="one_to_one")
    assert (merged["churned"] == merged["Exited"]).all() and merged["churned"].sum() > 0
    expected = np.maximum(np.floor(merged["Tenure (months)"] * 365.25 / 12 + 0.5), 1)
    assert (merged["tenure_days"] == expected).all()
    assert "days_to_churn" not in train.columns  # who left, not when: no time to churn
    scoring = pd.read_parquet(flagged / cfg.paths.features_dir / "score.parquet")
    assert set(scoring["customer_id"]) == set(source.loc[source["Exited"] == 0, "Customer ID"])


def test_the_horizon_given_with_init_replaces_its_choice_and_a_flag_window_is_then_no_assumption(
        flagged: Path) -> None:
    done = init(flagged, "configs/month.yaml", "--customers", "flagged.csv", "--as-of", END, "--horizon", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    raw, text = written(flagged, "configs/month.yaml")
    assert raw["labels"]["horizon_days"] == 30 and raw["labels"]["cutoffs"] == {"count": 1, "anchor": "as_of",
                                                                                "spacing_months": 1}
    assert "given with --horizon" in words(text.replace("#", ""))
    assert "ASSUMPTION: the window the flag covers" not in words(text.replace("#", ""))
    assert raw["economics"]["lifetime_horizons"] == round(730 / 30)  # still about two years of value
    load_config(flagged / "configs" / "month.yaml")
    events = init(flagged, "configs/events.yaml", "--customers", "bank/customers.csv", "--transactions",
                  "bank/transactions.csv", "--horizon", "60")
    assert events.returncode == 0, events.stdout + events.stderr
    assert written(flagged, "configs/events.yaml")[0]["labels"]["horizon_days"] == 60
    for bad in ("0", "5000"):
        refused = init(flagged, f"configs/bad{bad}.yaml", "--customers", "flagged.csv", "--horizon", bad)
        assert refused.returncode == 2 and "--horizon" in refused.stdout + refused.stderr
        assert not (flagged / "configs" / f"bad{bad}.yaml").exists()


def test_a_churn_flag_with_values_it_cannot_read_or_settings_that_contradict_it_is_refused(flagged: Path) -> None:
    config = flagged / "configs" / "flagged.yaml"
    if not config.exists():
        assert init(flagged, "configs/flagged.yaml", "--customers", "flagged.csv", "--as-of", END).returncode == 0
    source = pd.read_csv(flagged / "flagged.csv", dtype=str)
    source.loc[3, "Exited"] = "Maybe"
    source.to_csv(flagged / "flagged_bad.csv", index=False)
    raw = yaml.safe_load(config.read_text())
    raw["data"]["tables"]["customers"]["path"] = "flagged_bad.csv"
    (flagged / "configs" / "bad_values.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    bad = churn("validate", "--config", "configs/bad_values.yaml", cwd=flagged)
    assert bad.returncode == 3
    message = words(bad.stdout + bad.stderr)
    assert "customers.Exited" in message and "Maybe" in message and "row 4" in message
    raw = yaml.safe_load(config.read_text())
    for change, key in ((lambda r: r["data"].update(as_of=None), "data.as_of"),
                        (lambda r: r["features"].update(engine="duckdb"), "features.engine"),
                        (lambda r: r["features"]["static_features"].append("Exited"), "features.static_features"),
                        (lambda r: r["labels"]["cutoffs"].update(count=3), "labels.cutoffs")):
        variant = yaml.safe_load(yaml.safe_dump(raw))
        change(variant)
        (flagged / "configs" / "variant.yaml").write_text(yaml.safe_dump(variant, sort_keys=False))
        refused = churn("validate", "--config", "configs/variant.yaml", cwd=flagged)
        assert refused.returncode == 2 and key in refused.stdout + refused.stderr, (key, refused.stdout + refused.stderr)
    wrong_unit = init(flagged, "configs/unit.yaml", "--customers", "flagged.csv", "--as-of", END, "--tenure-unit", "decades")
    assert wrong_unit.returncode == 2 and "--tenure-unit" in wrong_unit.stdout + wrong_unit.stderr


# ---------------------------------------------------------------- inspection rules (pure)


def test_column_names_are_matched_ignoring_case_spacing_and_by_synonym() -> None:
    mapping = guess_columns("customers", ["Customer ID", "Opened", "Churn Date", "Region"],
                            ["customer_id", "signup_date", "closed_date"])
    assert mapping == {"customer_id": "Customer ID", "signup_date": "Opened", "closed_date": "Churn Date"}
    mapping = guess_columns("transactions", ["cust_id", "date", "time", "value"],
                            ["customer_id", "timestamp", "amount"])
    assert mapping == {"customer_id": "cust_id", "timestamp": "date", "amount": "value"}
    fixed = guess_columns("transactions", ["cust_id", "date", "booked"], ["customer_id", "timestamp"],
                          {"timestamp": "booked"})
    assert fixed == {"timestamp": "booked", "customer_id": "cust_id"}


def test_static_columns_leave_out_personal_identifier_outcome_and_export_time_data() -> None:
    n = 200
    frame = pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)],
        "Surname": [f"Name{i}" for i in range(n)],
        "household_id": [str(i // 2) for i in range(n)],
        "status": ["closed" if i % 7 == 0 else "active" for i in range(n)],
        "tenure": [str(i % 60) for i in range(n)],
        "birthday_note": ["x"] * n,
        "notes": [f"free text {i}" for i in range(n)],
        "opened_branch_on": ["2024-01-02"] * (n - 1) + ["2023-05-06"],
        "plan": ["basic", "premium"] * (n // 2),
        "Gender": ["f", "m"] * (n // 2),
        "score": [f"{i * 1.5:.1f}" for i in range(n)],
        "monthly_fee": [f"{10 + i % 5}.50" for i in range(n)],
    })
    decided = {c.name: c for c in classify_static(frame, {"customer_id"}, None)}
    assert {name for name, c in decided.items() if c.kept} == {"plan", "score", "monthly_fee"}
    assert decided["score"].kind == "numeric" and decided["plan"].kind == "categorical"
    assert decided["Surname"].kind == "personal data" and decided["birthday_note"].kind == "personal data"
    assert decided["household_id"].kind == "identifier"
    assert decided["Gender"].kind == "protected attribute"
    assert decided["status"].kind == "outcome"
    assert decided["tenure"].kind == "export-time measure"
    assert decided["notes"].kind == "near-unique text"
    assert decided["opened_branch_on"].kind == "date"
    assert value_column_candidates(frame, {"customer_id"})[0][0] == "monthly_fee"


def test_a_level_held_only_by_closed_customers_is_a_post_outcome_column() -> None:
    n = 300
    closed = pd.Series([pd.Timestamp("2024-01-01") if i % 5 == 0 else pd.NaT for i in range(n)])
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)],
                          "segment": ["gone" if i % 5 == 0 else ["a", "b"][i % 2] for i in range(n)],
                          "region": [["n", "s", "e"][i % 3] for i in range(n)]})
    decided = {c.name: c for c in classify_static(frame, {"customer_id"}, closed)}
    assert decided["segment"].kind == "outcome" and decided["region"].kept


def test_where_almost_everyone_churned_an_ordinary_column_is_not_taken_for_the_outcome() -> None:
    """A flag marking 99% as churned (say "no purchase after the offer") makes every level 98% churned by
    chance: the columns stay features; a level nearly empty of the few who stayed is still caught."""
    n = 2000
    rng = np.random.default_rng(3)
    churned = rng.random(n) < 0.99
    closed = pd.Series(np.where(churned, pd.Timestamp("2024-01-01"), pd.NaT))
    stayed_level = np.where(churned, "x", "kept")  # tells stayers apart perfectly: the outcome in disguise
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)],
                          "channel": rng.choice(["web", "phone", "branch"], n), "score": rng.integers(1, 8, n),
                          "plan_code": stayed_level})
    decided = {c.name: c for c in classify_static(frame, {"customer_id"}, closed)}
    assert decided["channel"].kept and decided["score"].kept
    assert decided["plan_code"].kind == "outcome"


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_churn_run_on_the_written_config_makes_a_retention_list(bank: Path) -> None:
    files = [part for name in TABLE_NAMES for part in (f"--{name}", f"bank/{name}.csv")]
    done = init(bank, "configs/e2e.yaml", *files)
    assert done.returncode == 0, done.stderr
    # up to the list (the report stage on every data shape is covered by tests/realdata/test_end_to_end.py)
    run = churn("run", "--config", "configs/e2e.yaml", "--to", "score", cwd=bank, timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    cfg = load_config(bank / "configs" / "e2e.yaml")
    listing = pd.read_csv(bank / cfg.paths.outputs_dir / "retention_list.csv", dtype={"customer_id": "str"})
    assert len(listing) > 0
    assert (bank / "mlflow-e2e.db").exists()  # a store of its own, not the demo's

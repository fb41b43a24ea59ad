"""The score stage end to end: generated data, real feature builder, real LightGBM, real MLflow (sqlite).

One small project (generated data, features, trained and registered models) is built
once for the module; each test scores into its own output folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import models.linear as linear
from features.build import build_scoring_table
from features.catalogue import reason_templates
from models.boosting import ValueModel, load_churn_model
from models.retention import HoldoutSettings, ReasonSettings, SelectionSettings
from pipelines.config import Config, ConfigError, parse_config
from pipelines.io import StageError, file_sha256
from pipelines.score import (COMMIT_MESSAGE, EXCLUDED_FILE, LIST_FILE, MANIFEST_FILE, REASON_METHODS, SCORES_FILE, input_problems, score_customers,
                             retention_list, run)
from pipelines.tables import load_tables
from pipelines.tracking import load_registered_bundle

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = 3000
OUTPUTS = (SCORES_FILE, LIST_FILE, EXCLUDED_FILE, MANIFEST_FILE)
SMALL_TEAMS = {"relationship_manager": 15, "care_team": 40, "digital": 120, "complaint_handling": None}


def with_changes(cfg: Config, outputs: Path, **scoring: object) -> Config:
    """A copy of `cfg` writing to `outputs`, with some scoring settings replaced."""
    return cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"outputs_dir": outputs}),
                                  "scoring": cfg.scoring.model_copy(update=scoring)})


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Generated demo data, its features, and both models trained and registered as champions."""
    from pipelines.features import run as build_features
    from pipelines.generate import run as generate
    from pipelines.train import run as train

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = tmp_path_factory.mktemp("score")
    raw = root / "raw"
    generate(CUSTOMERS, 7, raw, "2023-01-01", 24, "parquet")
    tables = {name: {"path": str(raw / f"{name}.parquet")}
              for name in ("customers", "transactions", "complaints", "surveys", "contacts")
              if (raw / f"{name}.parquet").is_file()}
    cfg = Config.model_validate({
        "data": {"tables": tables},
        "features": {"static_features": ["segment", "region", "age_band"]},
        "labels": {"cutoffs": {"count": 4}},
        "paths": {"features_dir": str(root / "features"), "outputs_dir": str(root / "outputs"),
                  "reports_dir": str(root / "reports")},
        "tracking": {"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_location": str(root / "artifacts"),
                     "experiment": "test-score"},
        "model": {"booster": {"max_rounds": 100}, "value_booster": {"max_rounds": 100}},
        "scoring": {"selection": {"capacity": SMALL_TEAMS}},
    })
    build_features(cfg)
    train(cfg, templates=reason_templates(cfg.features))
    return cfg


@pytest.fixture(scope="module")
def scored(project: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict]:
    """One scoring run with the project settings, asking for two explanations."""
    cfg = with_changes(project, tmp_path_factory.mktemp("scored"), holdout=HoldoutSettings(share=0.0))
    result = run(cfg, explain_customers=["no-such-customer"])
    return cfg, result


def read_outputs(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    out = Path(cfg.paths.outputs_dir)
    listed = pd.read_csv(out / LIST_FILE, dtype={"customer_id": "str"}, keep_default_na=False, na_values=[""])
    return pd.read_parquet(out / SCORES_FILE), listed, json.loads((out / MANIFEST_FILE).read_text())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS}


def test_list_respects_capacity_benefit_rule_and_playbook(scored) -> None:
    cfg, result = scored
    scores, listed, manifest = read_outputs(cfg)
    eligible = build_scoring_table(load_tables(cfg), cfg.features, cfg.labels)
    assert sorted(scores["customer_id"]) == sorted(eligible["customer_id"])
    assert scores["churn_probability"].between(0, 1).all()
    assert np.allclose(scores["value_at_risk"], scores["churn_probability"] * scores["retained_lifetime_value"])
    assert (scores["lifetime_value"] <= scores["retained_lifetime_value"] + 1e-9).all()
    # The list is the selected customers, ranked 1..n, with reasons.
    selected = scores[scores["selected"]].sort_values("rank")
    controls = int((scores["selection_reason"] == "control").sum())  # the randomised holdout (scoring.holdout)
    assert len(listed) == len(selected) > 0 and len(selected) + controls > 25  # a list worth checking the rules on
    assert listed["rank"].tolist() == list(range(1, len(listed) + 1))
    assert listed["customer_id"].tolist() == selected["customer_id"].tolist()
    assert listed["reason_1"].notna().mean() > 0.95
    exact, _ = REASON_METHODS[manifest["models"]["churn"]["algorithm"]]
    assert set(listed["reason_method"]) == {exact}  # every listed customer: the served model's exact reasons
    # Capacity per owner (beyond service obligations) and the benefit rule.
    for owner, limit in SMALL_TEAMS.items():
        mine = selected[(selected["owner"] == owner) & (selected["selection_reason"] != "service_obligation")]
        assert limit is None or len(mine) <= limit
    for_benefit = selected[selected["selection_reason"] == "positive_expected_benefit"]
    assert (for_benefit["expected_benefit"] > 0).all()
    # Everyone left out with a positive benefit was left out for capacity, and ranks below the list.
    waiting = scores[~scores["selected"] & (scores["expected_benefit"] > 0) & ~scores["complaint_first"]]
    assert (waiting["selection_reason"] == "over_capacity").all()
    for owner in waiting["owner"].unique():
        limit = SMALL_TEAMS[owner]
        taken = for_benefit[for_benefit["owner"] == owner]
        assert len(taken) == limit
        assert taken["expected_benefit"].min() >= waiting.loc[waiting["owner"] == owner, "expected_benefit"].max()
    # Segments follow the configured rules.
    rules = cfg.scoring.segments
    value = scores["retained_lifetime_value"]
    high = (value >= value.quantile(rules.high_value_quantile)) & \
        (scores["tenure_days"] >= rules.high_value_min_tenure_days)
    warning = scores["churn_probability"] >= rules.churn_warning_probability
    assert (scores["high_value"] == high).all() and (scores["churn_warning"] == warning).all()
    assert (scores.loc[high & warning, "segment"] == "high_value_at_risk").all()
    assert (scores.loc[~high & ~warning & (scores["tenure_days"] < rules.new_max_tenure_days), "segment"] == "new").all()
    # Deadlines are dates after the scoring date; the manifest matches the files.
    assert (pd.to_datetime(listed["deadline"]) > pd.Timestamp(manifest["as_of"])).all()
    out = Path(cfg.paths.outputs_dir)
    assert manifest["outputs"] == {name: file_sha256(out / name) for name in (SCORES_FILE, LIST_FILE, EXCLUDED_FILE)}
    assert manifest["rows"] == {"eligible_customers": len(scores), "selected": len(listed), "excluded": 0}
    assert manifest["models"]["churn"]["version"] == "1" and manifest["models"]["churn"]["uri"] == \
        "models:/churn-risk@champion"
    assert manifest["inputs"]["tables"]["customers"]["sha256"]
    assert result["explanations"] == [{"customer_id": "no-such-customer", "scored": False,
                                       "note": result["explanations"][0]["note"]}]


def test_overdue_complaints_are_served_first_and_never_sold_to(scored) -> None:
    cfg, _ = scored
    scores, listed, _ = read_outputs(cfg)
    features = build_scoring_table(load_tables(cfg), cfg.features, cfg.labels)
    overdue = features.loc[(features["open_complaints_past_resolution_target"] > 0)
                           | (features["unanswered_complaints_past_response_target"] > 0), "customer_id"]
    assert len(overdue) > 0
    theirs = scores[scores["customer_id"].isin(overdue)]
    assert theirs["complaint_first"].all() and not theirs["sales_offer"].any()
    assert (theirs["action"] == cfg.scoring.playbook.complaint_first.action).all()
    assert theirs["selected"].all() and (theirs["selection_reason"] == "service_obligation").all()
    assert not scores.loc[~scores["customer_id"].isin(overdue), "complaint_first"].any()
    on_list = listed[listed["customer_id"].isin(overdue)]
    assert on_list["rank"].max() == len(overdue)  # obligations head the list
    assert on_list["complaint_tier"].isin(["urgent", "high", "normal", "suggestion"]).all()


def test_rerun_gives_byte_identical_outputs_and_mlflow_keeps_aggregates(scored) -> None:
    cfg, first = scored
    before = snapshot(Path(cfg.paths.outputs_dir))
    second = run(cfg)
    assert snapshot(Path(cfg.paths.outputs_dir)) == before
    assert second["run_id"] != first["run_id"]
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    data = client.get_run(second["run_id"]).data
    assert data.tags["stage"] == "score" and data.tags["churn_model.version"] == "1"
    assert data.tags["value_model.resolved_uri"] == "models:/customer-value/1"
    assert data.metrics["selected"] == second["summary"]["customers_selected"]
    assert "segments.ordinary" in data.metrics and "psi_max" in data.metrics
    artifacts = {a.path for a in client.list_artifacts(second["run_id"])}
    assert artifacts == {MANIFEST_FILE, "drift.csv"}


def test_interrupted_run_leaves_previous_outputs_intact(scored, tmp_path: Path) -> None:
    cfg, _ = scored
    out = Path(cfg.paths.outputs_dir)
    before = snapshot(out)
    changed = with_changes(cfg, out, selection=SelectionSettings(capacity={**SMALL_TEAMS, "digital": 5}))

    def interrupt(message: str) -> None:
        if message == COMMIT_MESSAGE:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(changed, progress=interrupt)
    assert snapshot(out) == before
    # no temporary files left behind: only the outputs and their generations store (current + one generation)
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUTS, ".generations"])
    assert len(list((out / ".generations" / "score").iterdir())) == 2
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    latest = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    assert latest[0].info.status == "FAILED"


def test_killed_process_leaves_previous_outputs_intact(scored, tmp_path: Path) -> None:
    """A real SIGKILL after every output was written to its temporary file, just before the renames."""
    cfg, _ = scored
    out = Path(cfg.paths.outputs_dir)
    before = snapshot(out)
    changed = with_changes(cfg, out, selection=SelectionSettings(capacity={**SMALL_TEAMS, "digital": 5}))
    config_file = tmp_path / "config.json"
    config_file.write_text(changed.model_dump_json())
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from pipelines.config import Config
        from pipelines.score import COMMIT_MESSAGE, run

        def die(message):
            if message == COMMIT_MESSAGE:
                os.kill(os.getpid(), signal.SIGKILL)

        cfg = Config.model_validate_json(Path({str(config_file)!r}).read_text())
        run(cfg, progress=die)
    """)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    process = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert snapshot(out) == before


def test_features_that_do_not_match_the_model_are_refused(scored, tmp_path: Path) -> None:
    cfg, _ = scored
    out = tmp_path / "outputs"
    other_windows = cfg.model_copy(update={
        "features": cfg.features.model_copy(update={"windows_days": (30, 90, 180)}),
        "paths": cfg.paths.model_copy(update={"outputs_dir": out})})
    with pytest.raises(StageError, match=r"do not match the model.*features.windows_days is \[30, 90, 180\] in the "
                                         r"config but the churn-risk model .* was trained with \[30, 90, 180, 365\]"):
        run(other_windows)
    assert not out.exists() or not any(out.iterdir())


def test_wrong_feature_types_are_named(scored) -> None:
    cfg, _ = scored
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    churn = load_churn_model(load_registered_bundle("models:/churn-risk@champion"))
    frame = build_scoring_table(load_tables(cfg), cfg.features, cfg.labels).head(20)
    broken = frame.assign(tenure_days=frame["tenure_days"].astype("str"))
    assert input_problems(broken, churn, []) == [f"tenure_days should be numeric but is {broken['tenure_days'].dtype}"]
    problems = input_problems(frame.drop(columns=["region"]), churn, list(churn.schema.features))
    assert problems == ["missing feature column(s): region"]
    assert input_problems(frame, churn, list(churn.schema.features) + ["not_a_feature"]) == \
        ["missing input(s) of the model's MLflow signature: not_a_feature"]


def test_drift_above_the_limit_is_refused_and_logged(scored, tmp_path: Path) -> None:
    cfg, _ = scored
    out = tmp_path / "outputs"
    strict = with_changes(cfg, out, drift_warn_above=1e-6, drift_refuse_above=1e-6)
    with pytest.raises(StageError, match="drifted too far since training"):
        run(strict)
    assert not out.exists() or not any(out.iterdir())
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    latest = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert latest.info.status == "FAILED" and latest.data.tags["refused"] == "drift"
    assert {a.path for a in client.list_artifacts(latest.info.run_id)} == {"drift.csv"}


def test_explained_customer_gets_exact_reasons_whether_listed_or_not(scored, tmp_path: Path) -> None:
    cfg, _ = scored
    scores, _, _ = read_outputs(cfg)
    outside = scores.loc[~scores["selected"], "customer_id"].iloc[0]
    inside = scores.loc[scores["rank"] == 1, "customer_id"].iloc[0]
    # A list longer than the exact limit: the tail is explained by path attribution.
    result = run(with_changes(cfg, tmp_path / "out", reasons=ReasonSettings(exact_limit=10)), explain_customers=[outside, inside])
    listed = pd.read_csv(tmp_path / "out" / LIST_FILE, dtype={"customer_id": "str"})
    exact, fast = REASON_METHODS[json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())["models"]["churn"]["algorithm"]]
    assert (listed["reason_method"].head(10) == exact).all()
    assert (listed["reason_method"].iloc[10:] == fast).all()
    assert listed["reason_1"].notna().mean() > 0.95
    explained = {e["customer_id"]: e for e in result["explanations"]}
    assert explained[outside]["scored"] and not explained[outside]["selected"]
    assert explained[inside]["rank"] == 1 and explained[inside]["reasons"]
    assert explained[inside]["reasons"][0] == listed.loc[listed["customer_id"] == inside, "reason_1"].iloc[0]


def test_list_cells_cannot_run_as_spreadsheet_formulas() -> None:
    plan = pd.DataFrame({
        "customer_id": ["=HYPERLINK(\"http://x\")", "C2"], "segment": ["ordinary", "new"],
        "churn_probability": [0.2, 0.1], "next_horizon_value_if_retained": [1.0, 2.0],
        "next_horizon_expected_value": [0.8, 1.8], "lifetime_value": [-5.0, 10.0], "retained_lifetime_value": [-5.0, 12.0],
        "value_at_risk": [1.0, 1.0],
        "action": ["@call", "+offer"], "channel": ["phone", "app"], "owner": ["care_team", "digital"],
        "deadline": pd.to_datetime(["2025-01-02", "2025-01-03"]), "expected_benefit": [-3.5, 1.0],
        "selection_reason": ["service_obligation", "positive_expected_benefit"], "complaint_tier": ["urgent", None],
        "selected": [True, True], "rank": pd.array([1, 2], dtype="Int64"),
    })
    reasons = pd.DataFrame({"reason_1": ["-20% activity", "fine"], "reason_2": [None, "=1+1"], "reason_3": [None, None],
                            "reason_method": ["tree_shap", "tree_shap"]})
    listed = retention_list(plan, reasons, 3)
    text = listed.select_dtypes(exclude="number").astype("str")
    assert not text.apply(lambda column: column.str.match(r"^[=+\-@]")).any().any()
    assert listed["customer_id"].iloc[0] == "'=HYPERLINK(\"http://x\")"
    assert listed["reason_1"].iloc[0] == "'-20% activity" and listed["reason_2"].iloc[1] == "'=1+1"
    assert listed["lifetime_value"].iloc[0] == -5.0  # numbers stay numbers


def test_selected_list_captures_far_more_lost_value_than_a_random_list(project, tmp_path: Path) -> None:
    """Score 90 days before the end of the data; who actually closed in the next 90 days, and their value?"""
    tables = load_tables(project)
    end = tables.as_of
    as_of = (end - pd.Timedelta(days=project.labels.horizon_days)).normalize()
    cfg = with_changes(project, tmp_path / "past")
    run(cfg, as_of=as_of)
    scores = pd.read_parquet(tmp_path / "past" / SCORES_FILE)
    customers = tables.customers.set_index("customer_id")
    closed = customers["closed_date"].reindex(scores["customer_id"]).to_numpy()
    churned = (closed > as_of.to_datetime64()) & (closed <= (as_of + pd.Timedelta(days=project.labels.horizon_days))
                                                   .to_datetime64())
    tx = tables.transactions
    past_year = tx[(tx["timestamp"] < as_of) & (tx["timestamp"] >= as_of - pd.Timedelta(days=365))]
    yearly_value = past_year.groupby("customer_id")["amount"].sum().clip(lower=0)
    value = yearly_value.reindex(scores["customer_id"]).fillna(0).to_numpy()
    lost = np.where(churned, value, 0.0)
    selected = scores["selected"].to_numpy()
    captured = lost[selected].sum()
    random_expected = lost.sum() * selected.sum() / len(scores)
    ratio = captured / random_expected
    print(f"selected {selected.sum()} of {len(scores)}; lost value captured {captured:,.0f} vs random "
          f"{random_expected:,.0f}: ratio {ratio:.2f}")
    assert churned.sum() > 20
    assert ratio > 2


def test_any_model_uri_is_accepted_and_recorded(scored, tmp_path: Path) -> None:
    cfg, _ = scored
    _, _, manifest = read_outputs(cfg)
    run_uri = f"runs:/{manifest['models']['churn']['run_id']}/churn-risk"
    run(with_changes(cfg, tmp_path / "out"), churn_model_uri=run_uri, value_model_uri="models:/customer-value/latest")
    models = json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())["models"]
    assert {k: v for k, v in models["churn"].items() if k != "horizons_days"} == {
        "uri": run_uri, "resolved_uri": run_uri, "algorithm": models["churn"]["algorithm"]}
    assert models["churn"]["algorithm"] in ("lightgbm", "logistic_regression", "blend")
    assert models["value"]["version"] == "1" and models["value"]["resolved_uri"] == "models:/customer-value/1"
    # Same models, so the same list as the champion run.
    assert (tmp_path / "out" / LIST_FILE).read_bytes() == (Path(cfg.paths.outputs_dir) / LIST_FILE).read_bytes()
    with pytest.raises(StageError, match="is a customer-value model, not a churn-risk model"):
        run(with_changes(cfg, tmp_path / "wrong"), churn_model_uri="models:/customer-value@champion")
    with pytest.raises(StageError, match="not in the registry"):
        run(with_changes(cfg, tmp_path / "wrong"), churn_model_uri="models:/churn-risk@no-such-alias")


def test_shared_matrix_predictions_equal_the_models_own(scored) -> None:
    cfg, _ = scored
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    churn = load_churn_model(load_registered_bundle("models:/churn-risk@champion"))
    value = ValueModel.load(load_registered_bundle("models:/customer-value@champion"))
    frame = build_scoring_table(load_tables(cfg), cfg.features, cfg.labels).head(500)
    matrix = churn.schema.matrix(frame)
    scored_rows = score_customers(frame, matrix, churn, value, cfg)
    assert np.array_equal(scored_rows["churn_probability"].to_numpy(), churn.predict(frame))
    assert np.array_equal(scored_rows["next_horizon_value_if_retained"].to_numpy(),
                          np.clip(value.predict(frame), 0, None))
    # the expected value is the value if retained, weighed by the chance of staying
    np.testing.assert_allclose(scored_rows["next_horizon_expected_value"].to_numpy(),
                               (1 - churn.predict(frame)) * np.clip(value.predict(frame), 0, None))


def test_uplift_ranking_holds_out_a_seeded_control_and_records_it(project, tmp_path: Path) -> None:
    """The project's contacts have a randomised control group, so `churn train` registered an uplift model."""
    ungated = project.model_copy(update={"uplift": project.uplift.model_copy(update={"min_qini_lower_bound": None})})
    cfg = with_changes(ungated, tmp_path / "uplift", ranking="uplift", holdout=HoldoutSettings(share=0.2, seed=5))
    result = run(cfg)
    scores, listed, manifest = read_outputs(cfg)
    plan = manifest["plan"]
    assert plan["ranking"] == {"requested": "uplift", "used": "uplift", "note": ""}
    assert manifest["models"]["uplift"]["used"] is True
    controls = scores[scores["selection_reason"] == "control"]
    would = len(controls) + int((scores["selected"] & (scores["selection_reason"] != "service_obligation")).sum())
    assert len(controls) == round(0.2 * would) == plan["holdout"]["controls"] and plan["holdout"]["seed"] == 5
    assert not set(controls["customer_id"]) & set(listed["customer_id"])
    assert listed["uplift_class"].notna().all()  # every listed customer has an uplift class
    assert not (scores["selected"] & (scores["uplift_class"] == "sleeping_dog") & scores["sales_offer"]).any()
    paid = scores[scores["selection_reason"] == "positive_expected_benefit"]
    assert np.allclose(paid["expected_benefit"], paid["uplift"] * paid["retained_lifetime_value"] - paid["action_cost"])
    assert set(plan["ranking_comparison"]) == {"value_at_risk", "uplift"}
    data = MlflowClient(tracking_uri=cfg.tracking.tracking_uri).get_run(result["run_id"]).data
    assert data.metrics["holdout.controls"] == len(controls) and data.params["scoring.holdout.share"] == "0.2"
    again = with_changes(ungated, tmp_path / "again", ranking="uplift", holdout=HoldoutSettings(share=0.2, seed=5))
    run(again)
    assert snapshot(Path(again.paths.outputs_dir))[SCORES_FILE] == snapshot(Path(cfg.paths.outputs_dir))[SCORES_FILE]


def test_uplift_ranking_without_held_out_evidence_falls_back_to_value_at_risk_and_says_so(project, tmp_path: Path
                                                                                         ) -> None:
    """`ranking: uplift` is used only when the model's held-out Qini interval clears uplift.min_qini_lower_bound."""
    from models.uplift.learners import UpliftModel
    from pipelines.score import load_uplift_model

    client = MlflowClient(tracking_uri=project.tracking.tracking_uri)
    model, _ = load_uplift_model(client, project.scoring.uplift_model_uri)
    assert isinstance(model, UpliftModel) and set(model.evidence) == {"value", "low", "high"}
    assert model.evidence["low"] <= model.evidence["value"] <= model.evidence["high"]
    for floor in (0.0, 0.5):  # the default, and a bar no held-out Qini clears
        gated = project.model_copy(update={"uplift": project.uplift.model_copy(update={"min_qini_lower_bound": floor})})
        cfg = with_changes(gated, tmp_path / f"gated-{floor}", ranking="uplift", holdout=HoldoutSettings(share=0.0))
        run(cfg)
        scores, _, manifest = read_outputs(cfg)
        ranking = manifest["plan"]["ranking"]
        earned = model.evidence["low"] > floor
        assert ranking["used"] == ("uplift" if earned else "value_at_risk"), (floor, model.evidence)
        if not earned:
            assert "uplift.min_qini_lower_bound" in ranking["note"] and "value at risk" in ranking["note"]
            assert manifest["models"]["uplift"]["not_ranked"].startswith("its held-out Qini")
            paid = scores[scores["selection_reason"] == "positive_expected_benefit"]
            assert len(paid) and np.allclose(paid["expected_benefit"],
                                             paid["value_at_risk"] * paid["success_rate"] - paid["action_cost"])
            assert scores["uplift_class"].notna().all()  # the classes are still shown


def test_effects_are_reported_by_care_segment_with_the_champion_models(project, tmp_path: Path) -> None:
    from pipelines.effects import run as effects

    cfg = project.model_copy(update={"paths": project.paths.model_copy(update={"reports_dir": tmp_path / "reports"})})
    table = effects(cfg)["table"]
    care = table[table["group"] == "care_segment"]
    assert {"all", "care_segment", "action", "segment"} <= set(table["group"])
    assert set(care["level"]) <= {"high_value_at_risk", "churn_warning", "high_value_established", "new", "ordinary"}
    assert care["level"].nunique() >= 2
    churned = care[care["outcome"] == "churned"]
    everyone = table[(table["group"] == "all") & (table["outcome"] == "churned")].iloc[0]
    # every contact is in exactly one care segment
    assert churned["contacted"].sum() == everyone["contacted"] and churned["control"].sum() == everyone["control"]


def test_scores_carry_the_risk_by_horizon_never_falling_as_it_grows(scored) -> None:
    cfg, _ = scored
    scores, listed, manifest = read_outputs(cfg)
    risks = scores[["churn_risk_30d", "churn_risk_60d", "churn_risk_90d"]].to_numpy()
    assert (np.diff(risks, axis=1) >= 0).all()
    np.testing.assert_array_equal(scores["churn_risk_90d"], scores["churn_probability"])
    assert set(scores["likely_to_leave_within"]) <= {"1 month", "2 months", "3 months"}
    assert {"churn_risk_30d", "likely_to_leave_within"} <= set(listed.columns)
    assert listed["likely_to_leave_within"].notna().all()


def test_batch_size_does_not_change_any_output(scored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring in many small batches (the last one short) writes the very bytes of one batch.

    A logistic-regression part is evaluated in blocks of `DESIGN_BLOCK_ROWS` rows and batches are
    rounded up to whole blocks; the block is made small here so this small bank needs many.
    """
    cfg, _ = scored
    scores = read_outputs(cfg)[0]  # every model is batched: churn, horizons, value and uplift
    assert scores["churn_risk_30d"].notna().all() and scores["uplift"].notna().all() and len(scores) > 97 * 10
    monkeypatch.setattr(linear, "DESIGN_BLOCK_ROWS", 97)
    whole, small = with_changes(cfg, tmp_path / "whole", batch_rows=10**6), with_changes(cfg, tmp_path / "small", batch_rows=5)
    run(whole)
    run(small)
    _, _, whole_manifest = read_outputs(whole)
    _, _, small_manifest = read_outputs(small)
    churn_is_lightgbm = whole_manifest["models"]["churn"]["algorithm"] == "lightgbm"
    assert whole_manifest["batching"]["batches"] == 1
    assert small_manifest["batching"] == {"batch_rows": 5 if churn_is_lightgbm else 97,
                                          "batches": -(-len(scores) // (5 if churn_is_lightgbm else 97))}
    for name in (SCORES_FILE, LIST_FILE, EXCLUDED_FILE):
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert small_manifest["drift"] == whole_manifest["drift"] and small_manifest["plan"] == whole_manifest["plan"]
    with pytest.raises(ConfigError, match="scoring.batch_rows: Input should be greater than or equal to 1"):
        parse_config({"data": cfg.data.model_dump(mode="json"), "scoring": {"batch_rows": 0}}, "a config")


def test_duckdb_engine_scores_from_the_files_as_the_pandas_engine(scored, tmp_path: Path) -> None:
    """`features.engine: duckdb` builds the scoring rows from the files (after `churn validate`), for a
    model trained on the pandas engine's features: the same customers, scores and list."""
    from pipelines.validate import run as validate

    cfg, _ = scored
    duck = with_changes(cfg, tmp_path / "duck")
    duck = duck.model_copy(update={"features": duck.features.model_copy(update={"engine": "duckdb"})})
    validate(duck)
    run(duck)
    pandas_scores, pandas_list, pandas_manifest = read_outputs(cfg)
    duck_scores, duck_list, duck_manifest = read_outputs(duck)
    assert (duck_scores["customer_id"].to_numpy() == pandas_scores["customer_id"].to_numpy()).all()
    np.testing.assert_allclose(duck_scores["churn_probability"], pandas_scores["churn_probability"], rtol=1e-9)
    np.testing.assert_allclose(duck_scores["next_horizon_value_if_retained"], pandas_scores["next_horizon_value_if_retained"],
                               rtol=1e-6)
    assert list(duck_list["customer_id"]) == list(pandas_list["customer_id"])
    assert duck_manifest["rows"] == pandas_manifest["rows"]
    # the overdue-complaint rule sees only the open complaints the engine reads, not the loaded table
    pd.testing.assert_series_equal(duck_scores["complaint_tier"], pandas_scores["complaint_tier"])
    assert pandas_scores["complaint_tier"].notna().sum() > 0


def test_duckdb_scoring_rows_in_small_pieces_give_the_bytes_of_one_piece(scored, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """On DuckDB the scoring rows come from the engine in pieces of `scoring.batch_rows` rows, are
    spooled to a file and read back batch by batch (the stage never holds them all): pieces of a few
    rows write the very bytes of one piece, the reasons of an explained customer too, and the spool
    is removed afterwards."""
    from pipelines.validate import run as validate

    cfg, _ = scored
    monkeypatch.setattr(linear, "DESIGN_BLOCK_ROWS", 97)  # a logistic part's batches are whole blocks
    spill = tmp_path / "spill"

    def on_duckdb(folder: str, batch_rows: int) -> Config:
        changed = with_changes(cfg, tmp_path / folder, batch_rows=batch_rows)
        duckdb = changed.features.duckdb.model_copy(update={"temp_directory": str(spill)})
        return changed.model_copy(update={"features": changed.features.model_copy(
            update={"engine": "duckdb", "duckdb": duckdb})})

    whole, small = on_duckdb("whole", 10**6), on_duckdb("small", 7)
    validate(whole)
    scores = read_outputs(cfg)[0]
    customer = str(scores["customer_id"].iloc[len(scores) // 2])
    heard: list[str] = []
    first = run(whole, explain_customers=[customer])
    second = run(small, progress=heard.append, explain_customers=[customer])
    assert any("read back from" in message and str(spill) in message for message in heard)
    churn_is_lightgbm = read_outputs(whole)[2]["models"]["churn"]["algorithm"] == "lightgbm"
    size = 7 if churn_is_lightgbm else 97
    assert read_outputs(small)[2]["batching"] == {"batch_rows": size, "batches": -(-len(scores) // size)}
    for name in (SCORES_FILE, LIST_FILE, EXCLUDED_FILE):
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert first["explanations"] == second["explanations"] and first["explanations"][0]["scored"]
    assert not list(spill.glob("churn-care-score-*"))


def test_compiled_prediction_scores_as_lightgbm_and_reruns_byte_identical(scored, tmp_path: Path) -> None:
    """`scoring.compiled_prediction.min_rows: 0` runs every booster compiled (lleaves): the scores are
    LightGBM's within 1e-9, the list the same customers, and a second run, whose compiled models now come
    from the cache, writes the very bytes of the first."""
    from models.retention import CompiledPredictionSettings

    cfg, _ = scored
    settings = CompiledPredictionSettings(min_rows=0, cache_dir=str(tmp_path / "cache"))
    first, second = (with_changes(cfg, tmp_path / name, compiled_prediction=settings) for name in ("first", "second"))
    said: list[str] = []
    run(first)
    run(second, progress=said.append)
    assert any("from the cache" in message for message in said), said
    for name in (SCORES_FILE, LIST_FILE, EXCLUDED_FILE):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name
    plain_scores, plain_list, plain_manifest = read_outputs(cfg)
    scores, listed, manifest = read_outputs(first)
    assert manifest["compiled_prediction"] == read_outputs(second)[2]["compiled_prediction"]
    assert manifest["compiled_prediction"]["used"] and manifest["compiled_prediction"]["not_compiled"] == {}
    assert manifest["compiled_prediction"]["boosters"] >= 4  # churn, its shorter horizons, value, uplift learners
    assert plain_manifest["compiled_prediction"]["used"] is False  # the default: below min_rows on this bank
    assert "below scoring.compiled_prediction.min_rows" in plain_manifest["compiled_prediction"]["why"]
    for column in ("churn_probability", "churn_risk_30d", "next_horizon_value_if_retained", "uplift"):
        np.testing.assert_allclose(scores[column], plain_scores[column], rtol=1e-9, atol=1e-12, err_msg=column)
    assert list(listed["customer_id"]) == list(plain_list["customer_id"])

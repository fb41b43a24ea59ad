"""The score stage: a ranked retention list with care segments, actions and reasons.

Loads the champion churn-risk and customer-value models from the MLflow registry (or
any model URI), builds the scoring snapshot with the same feature code as training,
refuses inputs the models were not trained on (missing columns, wrong types, optionally
too much drift), scores every eligible customer (all models, lifetime value and the drift
counts over batches of `scoring.batch_rows` rows, so memory beyond the feature rows does not
grow with the bank; the input tables are freed first; on DuckDB or Spark the feature rows
themselves come in pieces, spooled to a temporary file and read back batch by batch:
`pipelines/scoring_rows.py`), applies the care playbook
(`models/retention.py`), explains every listed customer (only those, and any asked for by
id), and writes its four files together (`pipelines.io.StageOutputs`): into a new generation
folder, switched in with one atomic rename, so a reader or a killed run sees the previous
outputs or the new ones, never a mix. A second `churn score` on the same output folder stops
at once (exit code 4). Models trained with other feature or label settings than the config's
are refused, naming the key.
The files hold no timestamps or run ids, so the same inputs give byte-identical outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from features.build import (cutoffs_between, earliest_event, feature_inputs, prepare_taking, scoring_table_of,
                            tables_as_of)
from features.contract import Tables
from features.snapshot import flag_window_start
from features.static import customer_value_per_horizon
from models.boosting import ChurnModel, ValueModel, load_churn_model
from models.drift import DriftCounts
from models.evaluation import lifetime_value
from models.explain import reason_codes
from models.time_to_churn import HORIZONS_FOLDER, HorizonRiskModels, leaving_within, risk_column
from models.blend import BlendChurnModel
import models.linear as linear
from models.linear import LinearChurnModel
from models.retention import (effective_ranking, empty_list_explanation, incremental_benefit, knows_uplift,
                              overdue_complaint_tiers, plan_summary, retention_plan)
from models.uplift.learners import UpliftModel
from models.uplift.training import ranking_gate
from pipelines.compiled import compiled_models
from pipelines.config import Config
from pipelines.fingerprint import input_fingerprint, settings_difference
from pipelines.io import StageError, StageOutputs, excel_safe, to_safe_csv
from pipelines.outputs import stage_paths
from pipelines.relational import RelationalSource, resolve_engine, scratch_root
from pipelines.scoring_rows import InMemoryRows, ScoringRows, SpooledRows
from pipelines.tables import held_rows, load_tables, release_memory, scoring_read_from
from pipelines.tracking import flatten_params, load_registered_bundle, tracked_run

log = logging.getLogger("pipelines.score")

SCORES_FILE = "scores.parquet"
LIST_FILE = "retention_list.csv"
EXCLUDED_FILE = "excluded.csv"
MANIFEST_FILE = "manifest.json"
COMMIT_MESSAGE = "outputs written to temporary files; committing"
"""Progress message sent just before the outputs are switched in."""
OUTPUT_FILES = (SCORES_FILE, LIST_FILE, EXCLUDED_FILE, MANIFEST_FILE)

SCORE_COLUMNS: tuple[str, ...] = (
    "customer_id", "churn_probability", "next_horizon_value_if_retained", "next_horizon_expected_value",
    "lifetime_value", "retained_lifetime_value", "value_at_risk", "tenure_days",
    "segment", "high_value", "churn_warning", "new_customer", "complaint_first", "complaint_tier",
    "action", "channel", "owner", "touches_per_month", "deadline", "action_cost", "success_rate",
    "sales_offer", "expected_benefit", "selected", "selection_reason", "rank", "uplift", "uplift_class",
)
REASON_METHODS: dict[str, tuple[str, str]] = {
    "lightgbm": ("tree_shap", "path_attribution"),
    "logistic_regression": ("linear_terms", "linear_terms"),
    "blend": ("tree_shap+linear_terms", "path_attribution+linear_terms"),
}
"""How a listed customer's reasons were computed (exact, then fast beyond the exact limit), per served model."""
MONEY_DECIMALS = 2
PROBABILITY_DECIMALS = 4


# ---------------------------------------------------------------- models


def resolve_model(client: MlflowClient, uri: str) -> dict[str, object]:
    """Which exact model version a URI points to now, and a URI pinned to that version.

    `models:/name@alias`, `models:/name/version` and `models:/name/latest` are looked up in
    the registry; other URIs (`runs:/...`, logged-model ids, paths) are recorded as given.
    """
    rest = uri[len("models:/"):] if uri.startswith("models:/") else ""
    if not rest or ("@" not in rest and "/" not in rest):  # runs:/, paths, logged-model ids
        return {"uri": uri, "resolved_uri": uri}
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, number = rest.rsplit("/", 1)
            if number == "latest":
                versions = client.search_model_versions(f"name='{name}'")
                if not versions:
                    raise ValueError(f"no version of {name}")
                number = str(max(int(v.version) for v in versions))
            version = client.get_model_version(name, number)
    except (MlflowException, ValueError) as error:
        raise StageError(f"model {uri} is not in the registry ({str(error).splitlines()[0]}); run "
                         "`churn train` first or pass another model URI") from None
    return {"uri": uri, "name": name, "version": str(version.version), "run_id": version.run_id,
            "resolved_uri": f"models:/{name}/{version.version}"}


def load_model(uri: str, kind: str, client: MlflowClient
               ) -> tuple[ChurnModel | LinearChurnModel | BlendChurnModel | ValueModel, dict[str, object], list[str],
                          HorizonRiskModels | None]:
    """The model bundle behind `uri`, what it resolved to, the input names of its MLflow signature and
    (churn risk) the risk models of the shorter horizons saved with it (None without them)."""
    info = resolve_model(client, uri)
    try:
        bundle = load_registered_bundle(str(info["resolved_uri"]))
    except MlflowException as error:
        raise StageError(f"cannot download model {uri}: {str(error).splitlines()[0]}") from None
    found = (bundle / "kind.txt").read_text().strip() if (bundle / "kind.txt").is_file() else "unknown"
    if found != kind:
        raise StageError(f"{uri} is a {found} model, not a {kind} model: check the model URI")
    model = load_churn_model(bundle) if kind == "churn-risk" else ValueModel.load(bundle)
    info["algorithm"] = getattr(model, "algorithm", "lightgbm")
    signature_inputs: list[str] = []
    mlmodel = bundle.parent.parent / "MLmodel"
    if mlmodel.is_file():
        signature = mlflow.models.Model.load(str(mlmodel)).signature
        if signature is not None and signature.inputs is not None:
            signature_inputs = list(signature.inputs.input_names())
    horizons = HorizonRiskModels.load(bundle / HORIZONS_FOLDER) if kind == "churn-risk" else None
    if horizons is not None:
        info["horizons_days"] = [*sorted(horizons.models), horizons.full_days]
    return model, info, signature_inputs, horizons


def input_problems(frame: pd.DataFrame, model: ChurnModel | LinearChurnModel | BlendChurnModel | ValueModel,
                   signature_inputs: list[str]) -> list[str]:
    """Why the scoring table cannot go into this model: its schema's checks plus its MLflow signature."""
    problems = model.schema.problems(frame)
    missing = [name for name in signature_inputs if name not in frame.columns]
    if missing and not any(p.startswith("missing feature column") for p in problems):
        problems.append(f"missing input(s) of the model's MLflow signature: {', '.join(missing[:10])}")
    return problems


# ---------------------------------------------------------------- scoring and reasons


def score_customers(frame: pd.DataFrame, matrix: pd.DataFrame, churn: ChurnModel | LinearChurnModel | BlendChurnModel,
                    value: ValueModel | np.ndarray | None, cfg: Config) -> pd.DataFrame:
    """Churn probability, next-horizon value (if retained, and expected), lifetime value and value at risk.

    `matrix` is `churn.schema.matrix(frame)`; the value model reuses it when its schema is the
    same. `value` is the value model, or each row's known value per horizon (a customers
    column, snapshot data), or None when no value is known (money columns are then empty).
    """
    probability = churn.predict_matrix(matrix)
    if isinstance(value, ValueModel):
        value_matrix = matrix if value.schema == churn.schema else value.schema.matrix(frame)
        threads = value.booster.params.get("num_threads", 2)
        if_retained = np.clip(value.booster.predict(value_matrix, num_threads=threads), 0, None)
    elif value is None:
        if_retained = np.full(len(frame), np.nan)
    else:
        if_retained = np.clip(np.asarray(value, dtype=float), 0, None)
    lifetime = lifetime_value(if_retained, probability, cfg.economics, cfg.labels.horizon_days)
    # What the customer is worth if they stay: the money a lost customer takes away.
    retained = lifetime_value(if_retained, np.zeros_like(probability), cfg.economics, cfg.labels.horizon_days)
    return pd.DataFrame({
        "customer_id": frame["customer_id"].astype("str").to_numpy(),
        "churn_probability": probability,
        "next_horizon_value_if_retained": if_retained,
        "next_horizon_expected_value": (1.0 - probability) * if_retained,
        "lifetime_value": lifetime,
        "retained_lifetime_value": retained,
        "value_at_risk": probability * retained,
        "tenure_days": frame["tenure_days"].to_numpy(dtype=float) if "tenure_days" in frame else np.nan,
    }, index=frame.index)


def batch_size(churn: ChurnModel | LinearChurnModel | BlendChurnModel, batch_rows: int) -> int:
    """Rows per batch: `scoring.batch_rows`, rounded up to a multiple of the rows a logistic-regression
    part is evaluated in (`models.linear.DESIGN_BLOCK_ROWS`), whose matrix products then see the same
    row blocks as on the whole table (their last bits depend on the block, not on the row alone)."""
    if isinstance(churn, (LinearChurnModel, BlendChurnModel)):
        return -(-batch_rows // linear.DESIGN_BLOCK_ROWS) * linear.DESIGN_BLOCK_ROWS
    return batch_rows


def score_in_batches(table: ScoringRows, churn: ChurnModel | LinearChurnModel | BlendChurnModel,
                     value: ValueModel | Callable[[pd.Series], np.ndarray] | None, horizons: HorizonRiskModels | None,
                     uplift: UpliftModel | None, cfg: Config, batch_rows: int,
                     timings: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Every row's scores (`score_customers`, shorter-horizon risks, uplift) and the drift of its
    features, computed `batch_rows` rows at a time.

    `table`: the scoring rows (`pipelines.scoring_rows`: in memory, or spooled to a file and read back
    batch by batch). `value`: the value model, or a function of a
    batch's customer ids giving their known values per horizon (snapshot data), or None. Each batch's
    model matrix is built once and shared by every model with the same schema, so memory is one batch's
    rows and matrices plus the per-row results; every figure is per row (LightGBM, calibration,
    lifetime value), so the results do not depend on the batch size. Returns the scores (indexed by
    row position), the PSI per feature and the batching used (rows per batch, batches); adds the
    seconds of each part to `timings`.
    """
    size = batch_size(churn, batch_rows)
    counts = DriftCounts(churn.reference)
    parts: list[pd.DataFrame] = []
    spent = dict.fromkeys(("read", "matrix", "drift", "churn_value_lifetime", "horizons", "uplift"), 0.0)
    batches = iter(table.batches(size))
    while True:
        clock = time.perf_counter()
        rows = next(batches, None)
        spent["read"] += time.perf_counter() - clock
        if rows is None:
            break
        clock = time.perf_counter()
        matrix = churn.schema.matrix(rows)
        spent["matrix"] += time.perf_counter() - clock
        clock = time.perf_counter()
        counts.add(matrix)
        spent["drift"] += time.perf_counter() - clock
        clock = time.perf_counter()
        known = value if value is None or isinstance(value, ValueModel) else value(rows["customer_id"])
        part = score_customers(rows, matrix, churn, known, cfg)
        spent["churn_value_lifetime"] += time.perf_counter() - clock
        clock = time.perf_counter()
        if horizons is not None:  # risk within each shorter horizon, never above the longer ones'
            risks = horizons.predict_matrix(matrix, part["churn_probability"].to_numpy())
            for days, risk in risks.items():
                part[risk_column(days)] = risk
            part["likely_to_leave_within"] = leaving_within(risks)
        spent["horizons"] += time.perf_counter() - clock
        clock = time.perf_counter()
        if uplift is not None:
            part["uplift"] = uplift.predict_matrix(matrix if uplift.schema == churn.schema
                                                   else uplift.schema.matrix(rows))
        spent["uplift"] += time.perf_counter() - clock
        parts.append(part)
        del matrix, rows
    if not parts:
        raise ValueError("no rows to score")
    scored = pd.concat(parts) if len(parts) > 1 else parts[0]
    if "uplift" not in scored:
        scored["uplift"] = np.nan
    timings.update({f"predict.{name}": seconds for name, seconds in spent.items()})
    return scored, counts.stability(), {"batch_rows": size, "batches": len(parts)}


def explain_rows(rows: pd.DataFrame, churn: ChurnModel | LinearChurnModel | BlendChurnModel, templates: dict[str, str],
                 per_customer: int, exact_limit: int | None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Reasons for `rows` (in the given order): exact contributions (TreeSHAP for LightGBM) for the
    first `exact_limit`, the model's fast attribution after (path attribution for LightGBM).

    Returns reason_1..k, driver_1..k and reason_method per row, and the measured speed.
    """
    exact_count = len(rows) if exact_limit is None else min(exact_limit, len(rows))
    parts: list[pd.DataFrame] = []
    timing: dict[str, float] = {"exact_customers": float(exact_count), "path_customers": float(len(rows) - exact_count)}
    exact_method, fast_method = REASON_METHODS[getattr(churn, "algorithm", "lightgbm")]
    if exact_count:
        exact = rows.iloc[:exact_count]
        start = time.perf_counter()
        contributions = churn.contributions(exact)
        timing["exact_seconds"] = time.perf_counter() - start
        parts.append(reason_codes(exact, contributions, templates, per_customer).assign(reason_method=exact_method))
    if exact_count < len(rows):
        rest = rows.iloc[exact_count:]
        start = time.perf_counter()
        contributions = churn.fast_contributions(churn.schema.matrix(rest))
        timing["path_seconds"] = time.perf_counter() - start
        parts.append(reason_codes(rest, contributions, templates, per_customer).assign(reason_method=fast_method))
    if not parts:
        columns = [f"{kind}_{i + 1}" for kind in ("reason", "driver") for i in range(per_customer)]
        return pd.DataFrame(columns=[*columns, "reason_method"], index=rows.index, dtype="str"), timing
    return pd.concat(parts), timing


def drift_summary(drift: pd.DataFrame, warn_above: float) -> dict[str, object]:
    """Max and mean PSI, and the features above the warning level (for the manifest and MLflow)."""
    psi = drift["psi"].to_numpy(dtype=float)
    above = drift[drift["psi"] > warn_above]
    return {"features": int(len(drift)), "max_psi": float(psi.max()) if len(psi) else 0.0,
            "mean_psi": float(psi.mean()) if len(psi) else 0.0, "warn_above": warn_above,
            "features_above_warning": {r.feature: round(float(r.psi), 6) for r in above.itertuples()}}


# ---------------------------------------------------------------- output tables


def scores_table(plan: pd.DataFrame) -> pd.DataFrame:
    """Every eligible customer with scores and decisions, sorted by customer id."""
    timing = [c for c in plan.columns if c.startswith("churn_risk_") or c == "likely_to_leave_within"]
    return plan[[*SCORE_COLUMNS, *timing]].sort_values("customer_id", kind="stable", ignore_index=True)


def retention_list(plan: pd.DataFrame, reasons: pd.DataFrame, per_customer: int) -> pd.DataFrame:
    """The selected customers in rank order, with rounded figures and reasons as text; Excel-safe."""
    chosen = plan[plan["selected"]].sort_values("rank", kind="stable")
    listed = pd.DataFrame({
        "rank": chosen["rank"].astype("int64").to_numpy(),
        "customer_id": chosen["customer_id"].to_numpy(),
        "segment": chosen["segment"].to_numpy(),
        "churn_probability": chosen["churn_probability"].round(PROBABILITY_DECIMALS).to_numpy(),
        "next_horizon_value_if_retained": chosen["next_horizon_value_if_retained"].round(MONEY_DECIMALS).to_numpy(),
        "next_horizon_expected_value": chosen["next_horizon_expected_value"].round(MONEY_DECIMALS).to_numpy(),
        "lifetime_value": chosen["lifetime_value"].round(MONEY_DECIMALS).to_numpy(),
        "retained_lifetime_value": chosen["retained_lifetime_value"].round(MONEY_DECIMALS).to_numpy(),
        "value_at_risk": chosen["value_at_risk"].round(MONEY_DECIMALS).to_numpy(),
        "action": chosen["action"].to_numpy(),
        "channel": chosen["channel"].to_numpy(),
        "owner": chosen["owner"].to_numpy(),
        "deadline": chosen["deadline"].dt.strftime("%Y-%m-%d").to_numpy(),
        "expected_benefit": chosen["expected_benefit"].round(MONEY_DECIMALS).to_numpy(),
        "selection_reason": chosen["selection_reason"].to_numpy(),
        "complaint_tier": chosen["complaint_tier"].to_numpy(),
        "uplift": (chosen["uplift"].astype("float64") if "uplift" in chosen
                   else pd.Series(np.nan, index=chosen.index)).round(PROBABILITY_DECIMALS).to_numpy(),
        "uplift_class": chosen["uplift_class"].to_numpy() if "uplift_class" in chosen else None,
    })
    if "likely_to_leave_within" in chosen:  # time to churn: "1 month" reads "likely to leave within 1 month"
        listed.insert(4, "likely_to_leave_within", chosen["likely_to_leave_within"].to_numpy())
        shortest = min((c for c in chosen.columns if c.startswith("churn_risk_")), key=lambda c: int(c[11:-1]))
        listed.insert(4, shortest, chosen[shortest].round(PROBABILITY_DECIMALS).to_numpy())
    texts = reasons.reindex(chosen.index)
    for i in range(per_customer):
        listed[f"reason_{i + 1}"] = texts[f"reason_{i + 1}"].to_numpy()
    listed["reason_method"] = texts["reason_method"].to_numpy()
    text_columns = [c for c in listed.columns if listed[c].dtype == object]
    listed = listed.astype({c: "str" for c in text_columns})
    return excel_safe(listed)


# ---------------------------------------------------------------- the stage


def run(cfg: Config, as_of: str | pd.Timestamp | None = None, churn_model_uri: str | None = None,
        value_model_uri: str | None = None, progress: Callable[[str], None] | None = None,
        explain_customers: Iterable[str] = (), templates: dict[str, str] | None = None) -> dict[str, object]:
    """Score every eligible customer, pick whom to contact and why; write scores, list and manifest.

    `explain_customers` are customer ids whose reasons are wanted whether listed or not
    (returned under `explanations`, exact TreeSHAP). Raises StageError, writing nothing,
    when a model is missing or does not fit the features, or drift is above the limit.
    """
    say = progress or (lambda message: None)
    scoring = cfg.scoring
    per_customer = cfg.model.reasons_per_customer
    if templates is None:
        from features.catalogue import reason_templates
        templates = reason_templates(cfg.features)
    churn_uri = churn_model_uri or scoring.churn_model_uri
    value_uri = value_model_uri or scoring.value_model_uri
    wanted = [str(c) for c in explain_customers]
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    out = Path(cfg.paths.outputs_dir)
    outputs = StageOutputs("score", stage_paths(cfg, "score"), say)
    with outputs, tracked_run(cfg, stage="score") as active, contextlib.ExitStack() as stack:
        client = MlflowClient()
        value_source = customer_value_source(cfg)
        say(f"loading models {churn_uri}" + (f" and {value_uri}" if value_source == "model" else ""))
        churn, churn_info, churn_signature, horizons = load_model(churn_uri, "churn-risk", client)
        value_model: ValueModel | None = None
        value_signature: list[str] = []
        value_info: dict[str, object] = {"source": value_source}
        if value_source == "model":
            loaded, value_info, value_signature, _ = load_model(value_uri, "customer-value", client)
            value_model = loaded  # type: ignore[assignment]
            value_info["source"] = "model"
        for prefix, info in (("churn_model", churn_info), ("value_model", value_info)):
            mlflow.set_tags({f"{prefix}.{k}": str(v) for k, v in info.items()})
        for kind, uri, info in (("churn-risk", churn_uri, churn_info), ("customer-value", value_uri, value_info)):
            if kind == "churn-risk" or value_model is not None:
                check_model_settings(client, kind, uri, info, cfg)
        uplift_model, uplift_info = load_uplift_model(client, scoring.uplift_model_uri)
        mlflow.set_tags({f"uplift_model.{k}": str(v) for k, v in uplift_info.items()})
        if uplift_model is not None:
            check_model_settings(client, "contact-uplift", scoring.uplift_model_uri, uplift_info, cfg)
        lap("load_models")

        fingerprint = input_fingerprint(cfg)  # before the inputs are read, as the features stage takes it
        source: RelationalSource | None = None
        first_event = None
        transactions_read: dict[str, object] | None = None
        # One cutoff: the transactions its features look back to in full, the earlier ones as each customer's
        # latest date (a churn-flag snapshot scores at its window's start, not at the end: every row)
        read_from = None if cfg.labels.churn_flag is not None else functools.partial(
            scoring_read_from, as_of=as_of, cfg=cfg)
        # `features.engine: auto` made concrete, by the rows this stage would hold in pandas
        engine_cfg = resolve_engine(cfg, say, functools.partial(held_rows, transactions_from=read_from))
        if engine_cfg.features.engine == "pandas":
            tables = load_tables(cfg, transactions_from=read_from, columns=feature_inputs(cfg.features, cfg.labels))
            transactions_read = recent_read_summary(tables)
            if transactions_read is not None:
                say(f"transactions: {transactions_read['rows_read']:,} rows dated from {transactions_read['from']} on "
                    f"read, the longest look-back of the features at the cutoff; the {transactions_read['rows_before']:,} "
                    "earlier rows only as each customer's latest date (`churn validate` checks every row)")
        else:  # the events stay in their files; the stage loads the customers, and the open complaints below
            source = RelationalSource(engine_cfg, say, frozenset({"customers"}), fingerprint)
            tables, first_event = source.tables, source.first_event
        data_end = tables_as_of(tables)
        moment = pd.Timestamp(as_of) if as_of is not None else data_end
        list_day = moment  # the day the list's deadlines and holdout count from
        if cfg.labels.churn_flag is not None:  # features at the moment the snapshot describes, the list on its date
            tables, moment = flag_snapshot_scoring(tables, cfg, as_of, say)
            list_day = data_end
        if moment > data_end:
            raise StageError(f"as_of {moment.date()} is after the end of the data ({data_end.date()}); "
                             "features would miss events")
        mlflow.set_tag("as_of", str(moment))
        say(f"building the scoring snapshot as of {moment.date()}")
        left_out: list[pd.DataFrame] = []
        not_in_population: dict[str, int] = {}

        def excluded_sink(part: pd.DataFrame, counts: dict[str, int]) -> None:
            left_out.append(part)
            not_in_population.update(counts)

        size = batch_size(churn, scoring.batch_rows)
        # What the rest of the stage needs from the input tables, taken first, so that the tables can be freed
        # as their arrays are prepared (the pandas engine keeps those arrays, not the frames).
        history = history_note(tables, cfg, first_event)
        complaints = tables.complaints if source is None else source.open_complaints(moment)  # only open ones count
        tiers = overdue_complaint_tiers(complaints, moment, cfg.features.complaint_targets,
                                        scoring.selection.complaint_trigger)
        del complaints
        known_value = None  # snapshot data: each batch's values from a customers column (keeps that table only)
        if value_source == "customers_column":
            known_value = functools.partial(known_values, tables.customers, cfg=cfg)
        owner = [tables]  # the only reference, which `prepare_taking` takes: each table goes once prepared
        del tables
        prepared = prepare_taking(owner, cfg.features, cfg.labels.value_column) if source is None else None
        del owner
        release_memory()  # their buffers back to the system now (1M bank: ~1.5 GB)
        table: ScoringRows = (InMemoryRows(scoring_table_of(prepared, moment, cfg.features, cfg.labels,
                                                            on_excluded=excluded_sink)) if prepared is not None
                              else SpooledRows(source.scoring_pieces(excluded_sink, moment, size),  # type: ignore[union-attr]
                                               scratch_root(engine_cfg.features.duckdb.temp_directory)))
        del prepared, source
        stack.callback(table.close)
        frame = table.head  # the columns and their types, no rows: what the checks below look at
        excluded = excluded_rows(left_out[0] if left_out else None)
        lap("features")
        if excluded is not None and len(excluded):
            say(f"{len(excluded):,} customers left out: no transaction in the {cfg.labels.inactivity_lookback_days} "
                "days before the scoring date (labels.inactivity_lookback_days); listed in "
                f"{Path(cfg.paths.outputs_dir) / EXCLUDED_FILE}")
        if not len(table):
            raise StageError(f"no eligible customers at {moment.date()}: nothing to score "
                             f"(not in the population: {not_in_population})")
        models = [(churn_uri, churn, churn_signature)]
        if value_model is not None:
            models.append((value_uri, value_model, value_signature))
        problems = {uri: input_problems(frame, model, signature) for uri, model, signature in models}
        problems = {uri: found for uri, found in problems.items() if found}
        if problems:
            lines = "; ".join(f"{uri}: {', '.join(found)}" for uri, found in problems.items())
            mlflow.set_tag("refused", "features do not match the model")
            raise StageError(f"the scoring features do not match the model(s), nothing was written: {lines}. "
                             "Retrain with the current feature settings (`churn features`, `churn train`) or "
                             "score with a model trained on these features")

        if uplift_model is not None:
            found = uplift_model.schema.problems(frame)
            if found:
                uplift_info["not_used"] = f"the scoring features do not fit it: {', '.join(found)}"
                say(f"uplift model not used: {uplift_info['not_used']}")
                uplift_model = None
        lap("checks")

        scored_what = ("churn risk" + (" and customer value" if value_model is not None else "")
                       + (" and the uplift of a contact" if uplift_model is not None else ""))
        say(f"{len(table):,} eligible customers; scoring {scored_what} and checking drift "
            f"against the training reference, {size:,} rows at a time (scoring.batch_rows)"
            + (f", read back from {table.path}" if isinstance(table, SpooledRows) else ""))
        fast, compiled_info = compiled_models(
            {"churn": churn, "value": value_model, "horizons": horizons, "uplift": uplift_model}, len(table),
            scoring.compiled_prediction.min_rows, scoring.compiled_prediction.cache_dir, say)
        lap("compile")
        start = time.perf_counter()
        value = fast["value"] if value_model is not None else known_value
        scored, drift, batching = score_in_batches(table, fast["churn"], value, fast["horizons"], fast["uplift"], cfg,
                                                   scoring.batch_rows, timings)
        timings["prediction_customers_per_second"] = len(table) / max(time.perf_counter() - start, 1e-9)
        summary_drift = drift_summary(drift, scoring.drift_warn_above)
        summary_drift["note"] = history
        mlflow.log_text(to_safe_csv(drift) or "", "drift.csv")
        mlflow.log_metrics({"psi_max": summary_drift["max_psi"], "psi_mean": summary_drift["mean_psi"],
                            "features_psi_above_warning": float(len(summary_drift["features_above_warning"]))})
        drifted = summary_drift["features_above_warning"]
        if drifted:  # one line, the worst first; every PSI is in drift.csv
            worst = sorted(drifted.items(), key=lambda item: -item[1])  # type: ignore[union-attr]
            log.warning("%d feature(s) drifted since training (PSI > %.2f), worst: %s", len(worst),
                        scoring.drift_warn_above, ", ".join(f"{name} {psi:.2f}" for name, psi in worst[:3]))
        if scoring.drift_refuse_above is not None and summary_drift["max_psi"] > scoring.drift_refuse_above:
            worst = drift.iloc[0]
            mlflow.set_tag("refused", "drift")
            raise StageError(f"feature {worst['feature']} drifted too far since training (PSI {worst['psi']:.3f} > "
                             f"scoring.drift_refuse_above {scoring.drift_refuse_above}); nothing was written. "
                             "Retrain the model on recent data or check the input tables")
        lap("predict")
        holdout_seed = scoring.holdout.seed if scoring.holdout.seed is not None else cfg.seed
        ranking = effective_ranking(scored, scoring.ranking)
        if ranking == "uplift" and uplift_model is not None:
            unproven = ranking_gate(uplift_model.evidence, cfg.uplift.min_qini_lower_bound)
            if unproven:
                uplift_info["not_ranked"] = unproven
                ranking = "value_at_risk"
        plan, thresholds = retention_plan(scored, tiers, scoring, cfg.features.complaint_targets, list_day,
                                          ranking=ranking, uplift_threshold=cfg.uplift.class_threshold,
                                          holdout_seed=holdout_seed)
        summary = plan_summary(plan, scoring.selection.capacity)
        summary["ranking"] = {"requested": scoring.ranking, "used": ranking,
                              "note": ranking_note(scoring.ranking, ranking, uplift_info)}
        summary["holdout"] = {"share": scoring.holdout.share, "seed": holdout_seed,
                              "controls": int((plan["selection_reason"] == "control").sum()),
                              "rule": "seeded hash of customer id and list date among those the list would contact "
                                      "(service obligations never held out)"}
        if knows_uplift(scored):
            summary["ranking_comparison"] = compare_rankings(scored, tiers, scoring, cfg, list_day)
        if summary["ranking"]["note"]:
            say(str(summary["ranking"]["note"]))
        summary["value_source"] = value_source
        summary["not_in_population"] = not_in_population
        note = empty_list_explanation(plan, scoring, value_source, ranking)
        if note:
            summary["why_empty"] = note
            say(f"about this list: {note}")
        lap("plan")

        say(f"{summary['customers_selected']:,} customers selected; computing their reasons")
        order = plan.loc[plan["selected"], "rank"].sort_values(kind="stable").index
        reasons, reason_timing = explain_rows(table.take(order), churn, templates, per_customer,
                                              scoring.reasons.exact_limit)
        lap("reasons")
        explanations = explain_requested(wanted, table, plan, churn, templates, per_customer)

        scores = scores_table(plan)
        listed = retention_list(plan, reasons, per_customer)
        manifest: dict[str, object] = {
            "stage": "score",
            "as_of": str(moment),
            **({"listed_on": str(list_day), "as_of_rule": "labels.churn_flag: features at the start of the flag's "
                "window, the moment the snapshot describes; deadlines from the snapshot date"}
               if list_day != moment else {}),
            "models": {"churn": churn_info, "value": value_info, "uplift": uplift_info},
            "inputs": fingerprint,
            **({"transactions_read": transactions_read} if transactions_read is not None else {}),
            "rows": {"eligible_customers": len(scores), "selected": len(listed),
                     "excluded": 0 if excluded is None else len(excluded)},
            "batching": batching,
            "compiled_prediction": compiled_info,
            "drift": summary_drift,
            "segment_thresholds": thresholds,
            "plan": summary,
            "reasons": {"per_customer": per_customer, "exact_limit": scoring.reasons.exact_limit,
                        **{method: int((listed["reason_method"] == method).sum())
                           for method in sorted({m for pair in REASON_METHODS.values() for m in pair})}},
            "settings": scoring.model_dump(mode="json"),
            "economics": cfg.economics.model_dump(mode="json"),
            "horizon_days": cfg.labels.horizon_days,
        }
        with outputs.commit() as files:  # all four files switch in together when the block ends
            scores.to_parquet(files[SCORES_FILE], index=False, engine="pyarrow", compression="zstd")
            to_safe_csv(listed, files[LIST_FILE])
            excluded_out = excluded if excluded is not None else excluded_rows(None)
            to_safe_csv(excluded_out, files[EXCLUDED_FILE])
            manifest["outputs"] = {name: outputs.sha256(name) for name in (SCORES_FILE, LIST_FILE, EXCLUDED_FILE)}
            tmp_manifest = files[MANIFEST_FILE]
            tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_plain) + "\n",
                                    encoding="utf-8")
            lap("write")
            mlflow.log_params({k: v[:500] for k, v in flatten_params(scoring, "scoring.").items()})
            mlflow.log_metrics(run_metrics(summary, reason_timing, timings))
            mlflow.log_dict(json.loads(tmp_manifest.read_text()), MANIFEST_FILE)
            say(COMMIT_MESSAGE)
        lap("log")
    say(f"wrote {out / SCORES_FILE}, {out / LIST_FILE}, {out / EXCLUDED_FILE} and {out / MANIFEST_FILE}")
    return {"run_id": active.info.run_id, "as_of": str(moment), "models": {"churn": churn_info, "value": value_info},
            "rows": manifest["rows"],
            "summary": summary, "drift": summary_drift, "timings": {**timings, **reason_timing},
            "explanations": explanations,
            "paths": {name: str(out / name) for name in OUTPUT_FILES}}


def load_uplift_model(client: MlflowClient, uri: str) -> tuple[UpliftModel | None, dict[str, object]]:
    """The contact-uplift model behind `uri`, or None (and why) when there is none to use."""
    try:
        info = resolve_model(client, uri)
        bundle = load_registered_bundle(str(info["resolved_uri"]))
    except (StageError, MlflowException) as error:
        return None, {"uri": uri, "used": False,
                      "why_not": f"no uplift model ({str(error).splitlines()[0][:300]}); `churn train` registers one "
                                 "when the contacts table has a randomised control group"}
    kind = (bundle / "kind.txt").read_text().strip() if (bundle / "kind.txt").is_file() else "unknown"
    if kind != "contact-uplift":
        raise StageError(f"{uri} is a {kind} model, not a contact-uplift model: check scoring.uplift_model_uri")
    model = UpliftModel.load(bundle)
    return model, {**info, "used": True, "learner": model.learner}


def ranking_note(requested: str, used: str, uplift_info: dict[str, object]) -> str:
    """Why the ranking used is not the one asked for ("" when it is)."""
    if requested == used:
        return ""
    why = (uplift_info.get("not_used") or uplift_info.get("why_not")
           or (f"the uplift model is not trusted to rank: {uplift_info['not_ranked']}" if uplift_info.get("not_ranked")
               else "no uplift is known"))
    return (f"scoring.ranking is uplift but {why}: the list is ranked by value at risk instead "
            "(churn risk x retained lifetime value x success rate - cost)")


def compare_rankings(scored: pd.DataFrame, tiers: pd.Series, scoring: object, cfg: Config,
                     moment: pd.Timestamp) -> dict[str, dict[str, float]]:
    """Both rankings' lists side by side (before the holdout): size, value at risk reached and the
    predicted incremental value (uplift x retained lifetime value - cost) of each, and their overlap."""
    out: dict[str, dict[str, float]] = {}
    chosen: dict[str, set[str]] = {}
    for ranking in ("value_at_risk", "uplift"):
        plan, _ = retention_plan(scored, tiers, scoring, cfg.features.complaint_targets, moment,  # type: ignore[arg-type]
                                 ranking=ranking, uplift_threshold=cfg.uplift.class_threshold)
        picked = plan["selected"].to_numpy(dtype=bool)
        incremental = incremental_benefit(plan["uplift"].to_numpy(), plan["retained_lifetime_value"].to_numpy(),
                                          plan["action_cost"].to_numpy())
        chosen[ranking] = set(plan.loc[picked, "customer_id"].astype("str"))
        out[ranking] = {"selected": int(picked.sum()),
                        "value_at_risk_selected": float(np.nansum(plan["value_at_risk"].to_numpy(dtype=float)[picked])),
                        "predicted_incremental_value_selected": float(np.nansum(incremental[picked])),
                        "predicted_uplift_selected": float(np.nansum(plan["uplift"].to_numpy(dtype=float)[picked]))}
    overlap = len(chosen["value_at_risk"] & chosen["uplift"])
    for ranking in out:
        out[ranking]["overlap_with_other_list"] = overlap
    return out


def check_model_settings(client: MlflowClient, kind: str, uri: str, info: dict[str, object], cfg: Config) -> None:
    """Refuse a model trained with other `features` or `labels` settings than the config's, naming the key
    (`settings_difference`: the training run's MLflow params against the config)."""
    run_id = info.get("run_id")
    if run_id is None and uri.startswith("runs:/"):
        run_id = uri[len("runs:/"):].split("/", 1)[0]
    difference = settings_difference(client, str(run_id) if run_id else None, cfg)
    if difference is None:
        return
    key, value, then = difference
    version = f" (version {info['version']})" if info.get("version") else ""
    mlflow.set_tag("refused", f"settings differ: {key}")
    raise StageError(
        f"the settings do not match the model(s), nothing was written: {key} is {value} in the config but "
        f"the {kind} model {uri}{version} was trained with {then}. Run `churn features` and `churn train` "
        "with this config first, or score with a model trained with these settings (--model / --value-model)")


def history_note(tables: object, cfg: Config, first_event: pd.Timestamp | None = None) -> str:
    """Why some drift is expected by construction: a history shorter than the longest feature window.

    At the first training cutoffs such a history cannot hold a full window, so features that
    look back over it (365-day counts, months active, days since the first event, tenure on
    data that starts at the first purchase) are lower in training than at scoring time.
    """
    start = earliest_event(tables, first_event)  # type: ignore[arg-type]
    cutoffs = cutoffs_between(start, tables_as_of(tables), cfg.labels)  # type: ignore[arg-type]
    if not cutoffs:
        return ""
    history = (cutoffs[0] - start).days
    longest = cfg.features.longest_window
    if history >= longest:
        return ""
    return (f"the history before the first training cutoff is {history} days, shorter than the longest feature "
            f"window ({longest} days): long-window, months-active, days-since and tenure features drift by "
            "construction as the history grows; PSI on them is not evidence of a changed population")


def recent_read_summary(tables: Tables) -> dict[str, object] | None:
    """What the stage read of the transactions when it read the recent ones only (None: every row)."""
    earlier = tables.earlier_transactions
    if earlier is None or tables.transactions is None:
        return None
    return {"from": str(earlier.since.date()), "rows_read": len(tables.transactions), "rows_before": earlier.rows,
            "rule": "the features at the cutoff look back at most this far (features.windows_days, "
                    "features.btyd_history_days, labels.inactivity_lookback_days); before it only each "
                    "customer's latest transaction counts"}


def customer_value_source(cfg: Config) -> str:
    """Where a customer's value comes from: the value model (transactions), a customers column
    (`labels.customer_value_column`, snapshot data) or nowhere (the list is ranked by risk alone)."""
    if "transactions" in cfg.data.tables:
        return "model"
    if cfg.labels.customer_value_column is not None:
        return "customers_column"
    return "none"


def known_values(customers: pd.DataFrame, ids: pd.Series, cfg: Config) -> np.ndarray:
    """Each scored customer's known value per horizon from `labels.customer_value_column`."""
    return customer_value_per_horizon(customers, str(cfg.labels.customer_value_column), ids, cfg.labels.horizon_days)


def flag_snapshot_scoring(tables: Tables, cfg: Config, as_of: str | pd.Timestamp | None,
                          say: Callable[[str], None]) -> tuple[Tables, pd.Timestamp]:
    """A churn-flag snapshot's scoring moment and customers: the start of the flag's window, the one moment its
    columns describe (so tenure_days and every column mean what they meant in training), and the customers
    the flag says stayed (features/snapshot.py)."""
    assert tables.as_of is not None and cfg.labels.churn_flag is not None
    start = flag_window_start(tables.as_of, cfg.labels.horizon_days)
    if as_of is not None and pd.Timestamp(as_of) != start:
        raise StageError(f"--as-of {pd.Timestamp(as_of).date()}: a snapshot with a churn flag (labels.churn_flag) "
                         f"describes its customers at one moment, {start.date()} (data.as_of - labels.horizon_days), "
                         "and is scored there; leave --as-of out")
    customers = tables.customers
    stayed = customers["closed_date"].isna().to_numpy(dtype=bool)
    say(f"labels.churn_flag: scoring the {int(stayed.sum()):,} customers the flag says stayed, as of {start.date()} "
        f"(the start of the flag's window, the moment the snapshot describes); the {int((~stayed).sum()):,} "
        "who left are not scored")
    return dataclasses.replace(tables, customers=customers[stayed].reset_index(drop=True)), start


def excluded_rows(part: pd.DataFrame | None) -> pd.DataFrame:
    """Customers a population rule left out at the scoring date: id, reason, the key that controls it."""
    if part is None:
        return pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "reason": pd.Series([], dtype="str"),
                             "setting": pd.Series([], dtype="str")})
    return pd.DataFrame({"customer_id": part["customer_id"].astype("str").to_numpy(),
                         "reason": part["reason"].astype("str").to_numpy(),
                         "setting": part["setting"].astype("str").to_numpy()}).sort_values(
        "customer_id", kind="stable", ignore_index=True)


def explain_requested(wanted: list[str], table: ScoringRows, plan: pd.DataFrame, churn: ChurnModel,
                      templates: dict[str, str], per_customer: int) -> list[dict[str, object]]:
    """Exact reasons, score and decision for each requested customer id (a note if not scored).
    `plan` is indexed by the rows' positions in `table`."""
    if not wanted:
        return []
    ids = plan["customer_id"].astype("str")
    found = ids[ids.isin(wanted)]
    reasons, _ = explain_rows(table.take(found.index), churn, templates, per_customer, None)
    by_id = {cid: position for position, cid in zip(found.index, found)}
    results: list[dict[str, object]] = []
    for cid in wanted:
        if cid not in by_id:
            results.append({"customer_id": cid, "scored": False,
                            "note": "not an eligible customer at the scoring date (unknown, closed or not yet signed up)"})
            continue
        row = by_id[cid]
        entry: dict[str, object] = {"customer_id": cid, "scored": True}
        for column in ("churn_probability", "lifetime_value", "value_at_risk", "segment", "action", "owner",
                       "expected_benefit", "selected", "selection_reason"):
            entry[column] = _plain(plan.at[row, column])
        entry["rank"] = None if pd.isna(plan.at[row, "rank"]) else int(plan.at[row, "rank"])
        entry["reasons"] = [reasons.at[row, f"reason_{i + 1}"] for i in range(per_customer)
                            if isinstance(reasons.at[row, f"reason_{i + 1}"], str)]
        results.append(entry)
    return results


def run_metrics(summary: dict[str, object], reason_timing: dict[str, float], timings: dict[str, float]) -> dict[str, float]:
    """Aggregates for the MLflow run: counts per segment, action and owner, benefit, speed."""
    metrics: dict[str, float] = {
        "customers_scored": float(summary["customers_scored"]),  # type: ignore[arg-type]
        "selected": float(summary["customers_selected"]),  # type: ignore[arg-type]
        "complaint_first": float(summary["complaint_first"]),  # type: ignore[arg-type]
    }
    holdout = summary.get("holdout")
    if isinstance(holdout, dict):
        metrics["holdout.controls"] = float(holdout["controls"])
        metrics["holdout.share"] = float(holdout["share"])
    for ranking, figures in (summary.get("ranking_comparison") or {}).items():  # type: ignore[union-attr]
        for key, number in figures.items():
            metrics[f"ranking.{ranking}.{key}"] = float(number)
    if summary["total_expected_benefit_selected"] is not None:  # None: no customer value known
        metrics["total_expected_benefit"] = float(summary["total_expected_benefit_selected"])  # type: ignore[arg-type]
    for key in ("segments", "selected_by_segment", "selected_by_action", "selection_reasons",
                "uplift_classes", "selected_by_uplift_class"):
        for name, count in summary.get(key, {}).items():  # type: ignore[union-attr]
            metrics[f"{key}.{name}"] = float(count)
    for name, use in summary["owners"].items():  # type: ignore[union-attr]
        metrics[f"owner.{name}.selected"] = float(use["selected"])
    if reason_timing.get("exact_seconds"):
        metrics["reasons.tree_shap_customers_per_second"] = reason_timing["exact_customers"] / reason_timing["exact_seconds"]
    if reason_timing.get("path_seconds"):
        metrics["reasons.path_customers_per_second"] = reason_timing["path_customers"] / reason_timing["path_seconds"]
    metrics.update({f"seconds.{k}": v for k, v in timings.items() if k != "prediction_customers_per_second"})
    metrics["prediction_customers_per_second"] = timings.get("prediction_customers_per_second", 0.0)
    return metrics


def _plain(value: object) -> object:
    """numpy and pandas scalars as plain JSON values."""
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value

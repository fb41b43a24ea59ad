"""`churn effects`: what past retention contacts did, contacted vs randomised control.

Reads the uplift rows `churn features` wrote (`{paths.features_dir}/uplift.parquet`: each
customer contacted or kept as control just after a month-start cutoff, with the churn label
of that cutoff) and the transactions and surveys tables, and compares contacted and control
customers over the label window on churn, value kept, satisfaction and repurchase, overall,
per care segment (as `churn score` assigns it, from the champion models), per action and per
customer segment (`models/uplift/effects.py`): difference, 95% interval,
p-value and the sample size a future test needs to detect it. Writes, together,
`reports/effects.csv`, `reports/effects.json` and `reports/effects.png`, and logs them to MLflow.
Without a control group it says so and writes only the JSON with the reason.
On generated data the generator's own average contact effect (from `evaluation.truth_dir`)
is reported beside the estimate, with whether the interval holds it.

Engines (`features.engine`, `auto` resolved as `churn features` resolves it): repurchase and satisfaction
over each row's window are one relational query (features/relational/outcomes.py). With `pandas` every
table is loaded and validated as before, and the query runs on an in-memory DuckDB over the loaded
transactions and surveys. With `duckdb` or `spark` (after a passing `churn validate` of these files) only
the customers and contacts are loaded into pandas; the engine reads the transactions and surveys files
itself, so a bank whose events do not fit in memory is measured too. Both write the same files, byte
for byte (tests/pipelines/test_effects.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import Tables
from features.ids import is_in
from features.relational.outcomes import contact_rows, window_outcome_table
from models.uplift.data import control_group_problem
from models.uplift.effects import campaign_effects, with_outcomes
from pipelines.config import Config
from pipelines.io import StageError, StageOutputs, to_safe_csv
from pipelines.outputs import stage_paths
from pipelines.relational import MONEY, RelationalSource, connect_from, resolve_engine
from pipelines.tables import held_rows, load_tables
from pipelines.tracking import tracked_run
from pipelines.uplift import read_uplift_table, true_uplift

if TYPE_CHECKING:
    import ibis.expr.types as ir
    from ibis.backends import BaseBackend

EFFECTS_CSV = "effects.csv"
EFFECTS_JSON = "effects.json"
EFFECTS_PNG = "effects.png"


def effects_figure(table: pd.DataFrame) -> plt.Figure:
    """Churn prevented (control - contacted rate) with its 95% interval, overall, per segment and action."""
    churn = table[table["outcome"] == "churned"].dropna(subset=["effect"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * max(len(churn), 4) + 1.2))
    basis = churn["control_group"] if "control_group" in churn else pd.Series("", index=churn.index)
    labels = [("all contacts" if g == "all" else f"{g}: {lvl}") + (" (vs shared control)" if b == "shared" else "")
              for g, lvl, b in zip(churn["group"], churn["level"], basis)]
    y = np.arange(len(churn))[::-1]
    ax.errorbar(churn["effect"] * 100, y, xerr=[(churn["effect"] - churn["low"]) * 100,
                                               (churn["high"] - churn["effect"]) * 100], fmt="o", capsize=3)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(y, labels)
    ax.set_xlabel("Churn prevented by the contact (percentage points, 95% interval)")
    ax.set_title("Past contacts vs randomised control: churn within the horizon")
    fig.tight_layout()
    return fig


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Compare contacted and control customers; write the table, summary and chart; log to MLflow."""
    say = progress or (lambda message: None)
    reports = Path(cfg.paths.reports_dir)
    outputs = StageOutputs("effects", stage_paths(cfg, "effects"), say)
    with outputs, tracked_run(cfg, stage="effects") as active:
        rows = read_uplift_table(cfg)
        if rows is None:
            raise StageError(f"{Path(cfg.paths.features_dir) / 'uplift.parquet'} does not exist: run "
                             "`churn features --config ...` first")
        inputs = open_effect_inputs(cfg, rows, say)
        mlflow.set_tag("effects.engine", inputs.engine)  # not in the files: they are the same on every engine
        tables = inputs.tables
        why = control_group_problem(tables.contacts) if rows.empty else None
        if rows.empty:
            why = why or "no contact record falls in a treatment window with a complete label window"
            say(f"no campaign effect can be measured: {why}")
            mlflow.set_tag("effects", f"none: {why}"[:500])
            summary: dict[str, object] = {"status": "none", "why": why}
            with outputs.commit() as files:
                files[EFFECTS_JSON].write_text(pd.Series(summary).to_json(indent=2) + "\n", encoding="utf-8")
                to_safe_csv(pd.DataFrame(), files[EFFECTS_CSV])
                plt.close(_empty_figure(why, files[EFFECTS_PNG]))
            return {"run_id": active.info.run_id, "summary": summary, "table": pd.DataFrame()}
        say(f"{len(rows):,} past contact decisions ({int((rows['treatment'] == 0).sum()):,} randomised control) "
            f"at {rows['cutoff'].nunique()} cutoffs; measuring outcomes over the {cfg.labels.horizon_days}-day window "
            f"({'in-memory DuckDB' if inputs.engine == 'pandas' else inputs.engine})")
        measured = with_outcomes(rows, window_outcomes(inputs, rows, cfg.labels.horizon_days))
        care, care_note = past_care_segments(rows, tables, cfg)
        say(care_note)
        if care is not None:
            measured["care_segment"] = care
        table = campaign_effects(measured, ("care_segment", "action", "segment"))
        overall = table[(table["group"] == "all") & (table["outcome"] == "churned")].iloc[0]
        summary = {"status": "measured", "rows": int(len(rows)), "control_rows": int((rows["treatment"] == 0).sum()),
                   "outcomes": sorted(set(table["outcome"])),
                   "cutoffs": int(rows["cutoff"].nunique()), "horizon_days": cfg.labels.horizon_days,
                   "churn_prevented": {k: _plain(overall[k]) for k in ("effect", "low", "high", "p_value",
                                                                        "needed_contacted_per_test")},
                   "care_segments": care_note,
                   "satisfaction_answers": int(np.isfinite(measured.get("satisfaction", pd.Series(dtype=float))
                                                           .to_numpy(dtype=float)).sum()),
                   "definitions": {"churned": "effect = control rate - contacted rate (churn prevented)",
                                   "value_kept": "value in the label window (labels.value_column), contacted - control",
                                   "satisfaction": "mean CSAT of answers in the label window, contacted - control",
                                   "repurchase": "share with a positive transaction in the window, contacted - control",
                                   "needed_contacted_per_test": "contacted customers a future test needs (controls "
                                   "in the observed ratio) to detect the observed effect, 80% power, 5% two-sided"}}
        if cfg.evaluation.truth_dir:
            truth = true_uplift(rows, Path(cfg.evaluation.truth_dir), cfg.labels.horizon_days)
            if truth is not None:
                treated = rows["treatment"].to_numpy() == 1
                true_mean = float(np.nanmean(truth[treated]))
                summary["generator_average_effect"] = {
                    "value": true_mean, "within_interval": bool(overall["low"] <= true_mean <= overall["high"]),
                    "note": "the generator's true churn prevented per contacted customer (an approximation from its "
                            "monthly hazard and contact effect); a check of the estimate, available on generated data only"}
        ci = summary["churn_prevented"]
        say(f"churn prevented per contact: {ci['effect']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"  # type: ignore[index]
            + (f"; the generator's own: {summary['generator_average_effect']['value']:.4f}"  # type: ignore[index]
               if "generator_average_effect" in summary else ""))
        with outputs.commit() as files:
            to_safe_csv(table, files[EFFECTS_CSV])
            files[EFFECTS_JSON].write_text(pd.Series(summary).to_json(indent=2) + "\n", encoding="utf-8")
            fig = effects_figure(table)
            fig.savefig(files[EFFECTS_PNG], format="png")
            plt.close(fig)
            metrics = {f"effects.{r.group}.{r.level}.{r.outcome}.{k}": float(getattr(r, k))
                       for r in table.itertuples() for k in ("effect", "low", "high")
                       if getattr(r, k) is not None and np.isfinite(getattr(r, k))}
            mlflow.log_metrics({k.replace(" ", "_"): v for k, v in metrics.items()})
            mlflow.log_artifact(str(files[EFFECTS_CSV]))
            mlflow.log_artifact(str(files[EFFECTS_JSON]))
            mlflow.log_artifact(str(files[EFFECTS_PNG]))
    say(f"wrote {reports / EFFECTS_CSV}, {reports / EFFECTS_JSON} and {reports / EFFECTS_PNG}")
    return {"run_id": active.info.run_id, "summary": summary, "table": table}


@dataclass(frozen=True)
class EffectInputs:
    """What the stage reads: the customers and contacts in pandas (`tables`; with the pandas engine every
    table), and the transactions and surveys as tables of the engine `con`, which measures the outcomes."""

    tables: Tables
    con: BaseBackend
    transactions: ir.Table | None
    surveys: ir.Table | None
    engine: str
    """The engine the tables were read with: pandas, duckdb or spark."""


EFFECT_TABLES = frozenset({"customers", "contacts", "transactions", "surveys"})
"""The tables `churn effects` reads: the complaints are never used (their dates still set the end of the data)."""
EFFECT_EVENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "transactions": ("customer_id", "timestamp", "amount"), "surveys": ("customer_id", "answered_at", "csat")}
"""The event columns the window outcomes read (`event_table_in_memory`); the customers and contacts whole."""


def open_effect_inputs(cfg: Config, rows: pd.DataFrame, say: Callable[[str], None]) -> EffectInputs:
    """The stage's inputs on the engine `features.engine` resolves to (`resolve_engine`), saying which.

    pandas: the tables it uses loaded and validated (`load_tables`: `EFFECT_TABLES`, of the events only
    `EFFECT_EVENT_COLUMNS`, so not the complaints' texts); the transactions and surveys of the
    uplift rows' customers handed to an in-memory DuckDB (`features.duckdb` settings) typed as the
    engine reads the files, so that the one outcome query serves both. duckdb or spark: only the
    customers and contacts loaded (`RelationalSource`, which also requires a passing `churn validate`
    of these very files); the engine reads the event files itself, never loading them into pandas.
    """
    engine_cfg = resolve_engine(cfg, say, lambda c: held_rows(c, EFFECT_TABLES))
    engine = engine_cfg.features.engine
    events = " and ".join(name for name in ("transactions", "surveys") if name in cfg.data.tables)
    if engine == "pandas":
        tables = load_tables(cfg, EFFECT_TABLES, columns=EFFECT_EVENT_COLUMNS)
        ids = rows["customer_id"] if "customer_id" in rows else pd.Series([], dtype="str")
        say(f"effects on pandas: {', '.join(sorted(EFFECT_TABLES & set(cfg.data.tables)))} loaded into pandas "
            "(of the events only the columns the outcomes use)"
            + (f"; the window outcomes measured by an in-memory DuckDB over the loaded {events}" if events else ""))
        return EffectInputs(tables, connect_from(cfg.features.duckdb),
                            event_table_in_memory(tables.transactions, "timestamp", ("amount",), ids),
                            event_table_in_memory(tables.surveys, "answered_at", ("csat",), ids), engine)
    loaded = frozenset({"customers", "contacts"})
    source = RelationalSource(engine_cfg, say, loaded)
    say(f"effects on {engine}: only {' and '.join(sorted(loaded & set(cfg.data.tables)))} loaded into pandas"
        + (f"; the window outcomes measured by {engine} from the {events} files" if events else ""))
    return EffectInputs(source.tables, source.inputs.con, source.inputs.tables.transactions,
                        source.inputs.tables.surveys, engine)


def event_table_in_memory(frame: pd.DataFrame | None, time: str, columns: tuple[str, ...],
                          ids: pd.Series) -> ir.Table | None:
    """A loaded event table's rows of the customers `ids` as an in-memory Ibis table, typed as
    pipelines/relational.py reads the files (ids text, times timestamp in microseconds, `amount` DECIMAL,
    other numbers double, NaN as empty); only the columns present of `columns`. None without the table."""
    import ibis

    if frame is None:
        return None
    keep = frame[is_in(frame["customer_id"], ids.unique())]
    present = [c for c in columns if c in keep.columns]
    arrays = {"customer_id": pa.array(keep["customer_id"].astype("str").to_numpy(), pa.string()),
              time: pa.array(keep[time].to_numpy(dtype="datetime64[us]"), pa.timestamp("us"), from_pandas=True),
              **{c: pa.array(keep[c].to_numpy(dtype=float), pa.float64(), from_pandas=True) for c in present}}
    table = ibis.memtable(pa.table(arrays))
    return table.mutate(amount=table.amount.cast(MONEY)) if "amount" in present else table


def window_outcomes(inputs: EffectInputs, rows: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """Repurchase and satisfaction over each row's label window (features/relational/outcomes.py), one
    row per row of `rows` in order, computed by the inputs' engine; only the measurable ones."""
    query = window_outcome_table(contact_rows(rows), inputs.transactions, inputs.surveys, horizon_days)
    found = inputs.con.to_pyarrow(query).to_pandas()
    if not np.array_equal(found["position"].to_numpy(), np.arange(len(rows))):
        raise StageError(f"internal check failed: the {inputs.engine} outcome query returned {len(found):,} rows "
                         f"for {len(rows):,} past contacts; nothing was written")
    return found.drop(columns="position")


def past_care_segments(rows: pd.DataFrame, tables: Tables, cfg: Config) -> tuple[np.ndarray | None, str]:
    """Each past contact's care segment at its cutoff, as `churn score` assigns it, and a sentence saying how.

    The champion churn-risk and value models (`scoring.churn_model_uri`, `scoring.value_model_uri`) score
    the row's point-in-time features (all from before the contact), then `care_segments` applies
    `scoring.segments`, its value quantile taken over that cutoff's contact rows (not the whole
    population the list sees). A function of pre-contact features only, so contacted and control stay
    comparable within each segment. The value is the value model's or, on snapshot data (no transactions,
    `labels.customer_value_column`), that column of `tables.customers` as `churn score` reads it
    (`known_values`: the snapshot's value, the only one known, not a value at the cutoff). None (and why)
    when no champion model can be used.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from models.boosting import ValueModel
    from models.retention import care_segments
    from pipelines.score import customer_value_source, known_values, load_model, score_customers

    client = MlflowClient()
    try:
        churn, _, _, _ = load_model(cfg.scoring.churn_model_uri, "churn-risk", client)
        source = customer_value_source(cfg)
        value: ValueModel | np.ndarray | None = None
        if source == "model":
            value = load_model(cfg.scoring.value_model_uri, "customer-value", client)[0]  # type: ignore[assignment]
        elif source == "customers_column" and tables.customers is not None:  # snapshot data: a customers column
            value = known_values(tables.customers, rows["customer_id"], cfg)
    except (StageError, MlflowException) as error:
        return None, (f"no effects by care segment: {str(error).splitlines()[0][:300]} (run `churn train` first; "
                      "the care segment needs the champion churn-risk model)")
    models = [churn] + ([value] if isinstance(value, ValueModel) else [])
    problems = [p for model in models for p in model.schema.problems(rows)]
    if problems:
        return None, f"no effects by care segment: the contact rows do not fit the champion models ({problems[0]})"
    scored = score_customers(rows, churn.schema.matrix(rows), churn, value, cfg)
    segment = np.empty(len(rows), dtype=object)
    for _, at in rows.groupby("cutoff", sort=True).indices.items():
        part = scored.iloc[at]
        found, _ = care_segments(part["churn_probability"].to_numpy(), part["retained_lifetime_value"].to_numpy(),
                                 part["tenure_days"].to_numpy(dtype=float), cfg.scoring.segments)
        segment[at] = found["segment"].astype("str").to_numpy()
    return segment, ("care segments of past contacts: the champion models score each contact's features at its cutoff, "
                     "scoring.segments applied per cutoff (value quantile over that cutoff's contact rows)")


def _empty_figure(why: str, path: Path) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, "No campaign effect: " + why[:90], ha="center", va="center", wrap=True)
    fig.savefig(path, format="png")
    return fig


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    return value.item() if hasattr(value, "item") else value

"""The `churn` command: one subcommand per pipeline stage.

Every subcommand that reads data validates the config first (errors name the key),
then the inputs (errors name table, column, rows, examples and the fix), and exits
non-zero without writing anything when either is wrong.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from features.settings import SettingsProblem
from features.validation import ValidationFailed
from pipelines.config import Config, ConfigError, load_config
from pipelines.io import StageError

# MLflow draws a "Downloading artifacts" bar per model it registers (14 lines in a scheduled job's log for
# nothing a reader can use); the user's own setting wins.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

EXIT_CONFIG = 2
EXIT_INVALID_INPUT = 3
EXIT_REFUSED = 4
LIST_HEAD_ROWS = 10
"""Rows of the retention list `churn score` prints (the whole list is in the CSV file)."""

app = typer.Typer(
    name="churn",
    help=(
        "Churn prediction and retention lists for financial-services customer care.\n\n"
        "Example: `churn generate --customers 50000 --out data/raw/demo` (demo data), then "
        "`churn run --config configs/default.yaml` (every stage from validate to report), "
        "or one stage at a time: `churn score --config configs/default.yaml`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="YAML config file, e.g. configs/default.yaml.",
                 show_default=True),
]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib", "numexpr", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for chatty in ("traitlets", "nbclient", "nbconvert"):  # notebook plumbing: only real errors
        logging.getLogger(chatty).setLevel(logging.ERROR)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    """Churn prediction and retention lists for financial-services customer care."""
    _setup_logging(verbose)


def progress_printer() -> Callable[[str], None]:
    """A callback stages use to report progress, with elapsed seconds."""
    start = time.perf_counter()

    def report(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - start:7.1f}s[/dim] {message}")

    return report


def load_or_exit(path: Path) -> Config:
    """Validated config, or a message naming the bad key and exit code 2.

    The path is also put in CHURN_CONFIG, which the report's notebooks read.
    """
    os.environ["CHURN_CONFIG"] = str(path.resolve())
    try:
        return load_config(path)
    except ConfigError as error:
        console.print(f"[bold red]config error[/bold red] {error}")
        raise typer.Exit(EXIT_CONFIG) from None


def run_stage(action: Callable[[], object]) -> object:
    """Run a stage; turn bad input into a clear message and a non-zero exit, never a traceback.

    Failures of the machine rather than of the inputs exit 4 with what failed, where, and the
    fix: a full disk or a folder that cannot be written (OSError, naming the path), and an
    MLflow store that is read-only, locked, damaged or unreachable (naming the tracking URI).
    """
    try:
        return action()
    except ValidationFailed as failure:
        written = (f"wrote the failed validation report {escape(failure.report)} (\"valid\": false); "
                   "nothing else was written." if failure.report else "nothing was written.")
        console.print(f"[bold red]input validation failed[/bold red]: {len(failure.problems)} problem(s); "
                      f"{written}", soft_wrap=True)
        for problem in failure.problems:
            console.print(f"  [red]-[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID_INPUT) from None
    except ConfigError as error:
        console.print(f"[bold red]config error[/bold red] {error}")
        raise typer.Exit(EXIT_CONFIG) from None
    except SettingsProblem as problem:  # a setting that does not fit the data, found when reading it
        console.print(f"[bold red]config error[/bold red] {escape(str(problem))}; nothing was written", soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except StageError as error:
        console.print(f"[bold red]stopped[/bold red]: {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(EXIT_REFUSED) from None
    except Exception as error:
        problem = environment_problem(error)
        if problem is None:
            raise
        console.print(f"[bold red]stopped[/bold red]: {escape(problem)}", soft_wrap=True)
        raise typer.Exit(EXIT_REFUSED) from None


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
_WRONG_KIND = (errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOTEMPTY)


def environment_problem(error: BaseException) -> str | None:
    """What to tell the user about a failure of the disk or of the MLflow store; None for anything else."""
    chain = _causes(error)
    if any(type(e).__module__.split(".")[0] in ("mlflow", "sqlalchemy", "sqlite3", "requests", "urllib3")
           for e in chain):
        return tracking_problem(chain)
    if isinstance(error, OSError):
        return os_problem(error)
    return None


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def os_problem(error: OSError) -> str:
    """A file-system failure: what happened, to which path, and what to do."""
    where = error.filename or "an output folder"
    code = errno.errorcode.get(error.errno or 0, "")
    what = os.strerror(error.errno) if error.errno else (error.strerror or str(error))
    if error.errno in _DISK_FULL:
        fix = ("free space on that disk, or point the config's `paths` (features_dir, outputs_dir, reports_dir) "
               "at a disk with room; the previous outputs were kept")
    elif error.errno in _NOT_WRITABLE:
        fix = ("that folder cannot be written by this user: make it writable, or point the config's `paths` "
               "(or tracking.artifact_location) at a folder you can write; the previous outputs were kept")
    elif error.errno in _WRONG_KIND:
        fix = "a file stands where a folder is expected, or the other way round: move it, or change the path in the config"
    else:
        fix = "check that path and the config's `paths`"
    return f"cannot use {where}: {what}" + (f" ({code})" if code else "") + f". {fix}"


def _tracking_uri() -> str:
    mlflow = sys.modules.get("mlflow")
    try:
        uri = mlflow.get_tracking_uri() if mlflow is not None else os.environ.get("MLFLOW_TRACKING_URI", "?")
    except Exception:  # noqa: BLE001 - only for the message
        uri = os.environ.get("MLFLOW_TRACKING_URI", "?")
    return re.sub(r"//[^/@]*@", "//***@", str(uri))  # no password in the message


def tracking_problem(chain: list[BaseException]) -> str:
    """An MLflow store failure: which store, what is wrong with it, and the fix."""
    uri = _tracking_uri()
    text = " ".join(str(e) for e in chain)
    detail = next((line.strip() for e in reversed(chain) for line in str(e).splitlines() if line.strip()), "")[:300]
    switch = "or point tracking.tracking_uri (MLFLOW_TRACKING_URI wins over it) at another store"
    if re.search(r"file is not a database|malformed|not a valid|no such table|Can't locate revision", text):
        return (f"the MLflow store {uri} is damaged or not an MLflow database ({detail}): restore it from a backup, "
                f"{switch}, e.g. a new sqlite:///mlflow-new.db")
    if re.search(r"readonly database|read-only|Read-only file system|Permission denied|unable to open database",
                 text, re.IGNORECASE):
        return (f"the MLflow store {uri} cannot be written ({detail}): make the database file and its folder "
                f"writable by this user, {switch}")
    if "database is locked" in text:
        return (f"the MLflow store {uri} is locked by another process ({detail}): wait for the other run to finish "
                "and run again; a sqlite store takes one writer at a time (several people at once: use an MLflow "
                "server, MLFLOW_TRACKING_URI=http://...)")
    if any(type(e).__name__ in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "MaxRetryError",
                                "NewConnectionError", "ConnectionRefusedError", "Timeout")
           for e in chain) or re.search(r"Max retries exceeded|Connection refused|timed out", text):
        retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "?")
        timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "?")
        return (f"cannot reach the MLflow tracking server {uri} ({detail}); gave up after {retries} retries with "
                f"a {timeout} s timeout per request (MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT). "
                "Start the server or check the address, or unset MLFLOW_TRACKING_URI to use the config's "
                "tracking.tracking_uri")
    return f"MLflow failed with the tracking store {uri}: {detail}. Check that store, {switch}"


@app.command()
def generate(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Take defaults from the config's `demo` section.")] = None,
    customers: Annotated[int | None, typer.Option(help="Number of customers (default 50,000).", min=10)] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; the same seed gives the same files.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder, replaced atomically (default data/raw/demo).")] = None,
    start: Annotated[str | None, typer.Option(help="First month of data, YYYY-MM-DD (default 2023-01-01).")] = None,
    months: Annotated[int | None, typer.Option(help="Months of history to simulate (default 30).", min=4)] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    contact_share: Annotated[float | None, typer.Option(
        help="Share of open customers the bank's retention campaign picks each month (default 0.015).",
        min=0.0, max=1.0)] = None,
    control_share: Annotated[float | None, typer.Option(
        help="Share of the picked customers kept as randomised control, not contacted (default 0.2).",
        min=0.0, max=1.0)] = None,
) -> None:
    """Write a realistic synthetic retail-bank dataset (inputs, plus hidden truth in OUT/_truth).

    Examples: churn generate --customers 50000 --seed 42 --out data/raw/demo;
    churn generate --config configs/default.yaml (sizes from its `demo` section);
    churn generate --contact-share 0.1 --control-share 0.5 --out data/raw/big-campaign (a bank whose
    randomised retention campaign is large enough to learn who a call keeps).
    """
    from pipelines.config import DemoSettings
    from pipelines.generate import run

    demo = load_or_exit(config).demo if config else DemoSettings()
    if fmt not in ("parquet", "csv"):
        console.print("[bold red]--format must be parquet or csv[/bold red]")
        raise typer.Exit(EXIT_CONFIG)
    target = out or demo.out
    counts = run(customers or demo.customers, demo.seed if seed is None else seed, target,
                 start or demo.start, months or demo.months, fmt, progress=progress_printer(),
                 **({"contact_share": contact_share} if contact_share is not None else {}),
                 **({"control_share": control_share} if control_share is not None else {}))
    table = Table(title=f"generated in {target}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    Console().print(table)


@app.command()
def validate(config: ConfigOption = Path("configs/default.yaml")) -> None:
    """Check every input table against the data contract and list all problems at once.

    Writes reports/validation.json when the inputs are valid; exits 3 when they are not.

    Example: churn validate --config configs/default.yaml
    """
    from pipelines.validate import run

    cfg = load_or_exit(config)
    summary = run_stage(lambda: run(cfg, progress=progress_printer()))
    table = Table(title="inputs are valid")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("from")
    table.add_column("to")
    for name, entry in summary["tables"].items():  # type: ignore[index]
        if name == "as_of":
            continue
        table.add_row(name, f"{entry['rows']:,}", entry.get("first", ""), entry.get("last", ""))
    Console().print(table)
    Console().print(f"data as of {summary['as_of']}; report: {summary['report']}")  # type: ignore[index]


@app.command()
def features(config: ConfigOption = Path("configs/default.yaml")) -> None:
    """Build the point-in-time training table (monthly cutoffs, with labels) and the scoring table.

    Writes data/features/train.parquet, data/features/score.parquet and reports/features_summary.json.

    Example: churn features --config configs/default.yaml
    """
    from pipelines.features import run

    cfg = load_or_exit(config)
    summary = run_stage(lambda: run(cfg, progress=progress_printer()))
    train_part = summary["train"]  # type: ignore[index]
    table = Table(title=f"training table: {train_part['rows']:,} rows, {summary['feature_count']} features, "  # type: ignore[index]
                        f"churn = {summary['label_definition']} within {summary['horizon_days']} days")  # type: ignore[index]
    lookback = cfg.labels.definition == "inactivity"  # the only rule that leaves live customers out
    for name in ("cutoff", "customers", "churn rate", *(("left out: no recent transaction",) if lookback else ())):
        table.add_column(name, justify="left" if name == "cutoff" else "right")
    for cutoff in train_part["cutoffs"]:
        left_out = train_part["not_in_population_per_cutoff"][cutoff].get("no_transaction_in_lookback", 0)
        table.add_row(cutoff, f"{train_part['rows_per_cutoff'][cutoff]:,}",
                      f"{train_part['churn_rate_per_cutoff'][cutoff]:.1%}", *((f"{left_out:,}",) if lookback else ()))
    score_part = summary["score"]  # type: ignore[index]
    left_now = score_part["not_in_population"].get("no_transaction_in_lookback", 0)
    table.add_row(f"{score_part['cutoff'][:10]} (scoring)", f"{score_part['rows']:,}", "",
                  *((f"{left_now:,}",) if lookback else ()))
    out = Console()
    out.print(table)
    if left_now or any(v.get("no_transaction_in_lookback", 0) for v in train_part["not_in_population_per_cutoff"].values()):
        out.print(f"customers left out by a rule are listed in {summary['excluded_file']} "  # type: ignore[index]
                  "(reason and the config key that controls it)")
    out.print(f"summary: {cfg.paths.reports_dir}/features_summary.json")


@app.command()
def train(config: ConfigOption = Path("configs/default.yaml")) -> None:
    """Train, evaluate and explain the churn-risk and customer-value models; register them in MLflow.

    The new versions become `champion` only if they beat the current champion on the same
    test data by `model.champion_margin`; otherwise they are registered as `challenger`.

    Example: churn train --config configs/default.yaml
    """
    from pipelines.train import run

    cfg = load_or_exit(config)
    summary = run_stage(lambda: run(cfg, progress=progress_printer()))
    metrics = summary["metrics"]  # type: ignore[index]
    table = Table(title="test-set results (out of time)")
    table.add_column("model")
    table.add_column("ROC-AUC", justify="right")
    table.add_column("PR-AUC", justify="right")
    table.add_column("best profit", justify="right")
    for label, prefix in (("LightGBM (calibrated)", "churn"), ("logistic regression", "baseline_logistic"),
                          ("recency rule", "baseline_recency_rule"), ("BG/NBD (buy till you die)", "baseline_btyd")):
        if f"{prefix}.roc_auc" in metrics:
            profit = metrics.get(f"{prefix}.best_profit")
            table.add_row(label, f"{metrics[f'{prefix}.roc_auc']:.3f}", f"{metrics[f'{prefix}.pr_auc']:.3f}",
                          "-" if profit is None else f"{profit:,.0f}")
    Console().print(table)
    for decision in summary["champion"]:  # type: ignore[index]
        Console().print(f"{decision['model']} v{decision['new_version']}: {decision['alias']} ({decision['reason']})")


def _iso_date(value: str | None) -> str | None:
    """Option callback: a YYYY-MM-DD date or nothing (a bad date exits 2, naming the option)."""
    if value is None:
        return None
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date in the form YYYY-MM-DD") from None
    return value


def _money(value: object) -> str:
    """A money amount for the console: whole units with thousands separators; blank when missing (None,
    NaN, or an empty cell of the list, as a list without customer values has)."""
    try:
        amount = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return f"{amount:,.0f}" if amount == amount else ""


@app.command()
def score(
    config: ConfigOption = Path("configs/default.yaml"),
    as_of: Annotated[str | None, typer.Option(
        "--as-of", callback=_iso_date, metavar="DATE",
        help="Score as of this date, YYYY-MM-DD (default: the end of the data, or data.as_of).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", metavar="URI",
        help="Churn-risk model to use instead of scoring.churn_model_uri, e.g. models:/churn-risk/3 or runs:/ID/churn-risk.")] = None,
    value_model: Annotated[str | None, typer.Option(
        "--value-model", metavar="URI",
        help="Customer-value model to use instead of scoring.value_model_uri, e.g. models:/customer-value@challenger.")] = None,
    customer: Annotated[list[str] | None, typer.Option(
        "--customer", metavar="ID",
        help="Also print the reasons for this customer, listed or not (repeat the option for more).")] = None,
) -> None:
    """Score every customer with the champion models and write the week's retention list.

    Each customer gets a churn risk, a lifetime value and a care segment.
    The care playbook (config section `scoring`) sets action, owner and deadline;
    overdue complaints come first, then the best expected benefit per team capacity.

    Writes data/outputs/ scores.parquet, retention_list.csv and manifest.json.

    Examples: churn score --config configs/default.yaml;
    churn score -c configs/default.yaml --as-of 2025-03-31 --customer C0000123
    """
    import pandas as pd

    from pipelines.score import LIST_FILE, run

    cfg = load_or_exit(config)
    result = run_stage(lambda: run(cfg, as_of=as_of, churn_model_uri=model, value_model_uri=value_model,
                                   progress=progress_printer(), explain_customers=customer or ()))
    summary = result["summary"]  # type: ignore[index]
    paths = result["paths"]  # type: ignore[index]
    out = Console()
    head = pd.read_csv(paths[LIST_FILE], dtype={"customer_id": "str"}, keep_default_na=False, nrows=LIST_HEAD_ROWS)
    table = Table(title=f"retention list as of {str(result['as_of'])[:10]}: "  # type: ignore[index]
                        f"top {len(head)} of {summary['customers_selected']:,} selected "
                        f"({summary['customers_scored']:,} customers scored)")
    for name, justify in (("rank", "right"), ("customer", "left"), ("segment", "left"), ("risk", "right"),
                          ("value at risk", "right"), ("action", "left"), ("first reason", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in head.itertuples(index=False):
        table.add_row(str(row.rank), escape(str(row.customer_id)), escape(str(row.segment)),
                      f"{float(row.churn_probability):.0%}", _money(row.value_at_risk), escape(str(row.action)),
                      escape(str(row.reason_1)))
    out.print(table)
    teams = Table(title="team capacity")
    for name in ("owner", "capacity", "selected", "complaints first", "left out (capacity)"):
        teams.add_column(name, justify="left" if name == "owner" else "right")
    for owner, use in summary["owners"].items():  # type: ignore[union-attr]
        teams.add_row(escape(owner), "no limit" if use["capacity"] is None else f"{use['capacity']:,}",
                      f"{use['selected']:,}", f"{use['service_obligations']:,}",
                      f"{use['over_capacity_not_selected']:,}")
    out.print(teams)
    ranking = summary.get("ranking", {})  # type: ignore[union-attr]
    holdout = summary.get("holdout", {})  # type: ignore[union-attr]
    out.print(f"ranked by {ranking.get('used', 'value_at_risk')}; randomised control kept out of the list: "
              f"{holdout.get('controls', 0):,} (scoring.holdout.share {holdout.get('share', 0)})")
    if ranking.get("note"):
        out.print(f"[yellow]ranking[/yellow]: {escape(str(ranking['note']))}", soft_wrap=True)
    if summary["total_value_at_risk"] is not None:  # None: no customer value known (said just below)
        out.print(f"expected benefit of the list: {_money(summary['total_expected_benefit_selected'])}; "
                  f"value at risk on the list: {_money(summary['total_value_at_risk_selected'])} of "
                  f"{_money(summary['total_value_at_risk'])}")
    if summary.get("why_empty"):  # type: ignore[union-attr]
        out.print(f"[yellow]about this list[/yellow]: {escape(str(summary['why_empty']))}")  # type: ignore[index]
    excluded = result["rows"]["excluded"]  # type: ignore[index]
    if excluded:
        out.print(f"{excluded:,} customers were left out by a population rule "
                  f"(labels.inactivity_lookback_days); who and why: {paths['excluded.csv']}")
    drifted = result["drift"]["features_above_warning"]  # type: ignore[index]
    if drifted:
        worst = sorted(drifted.items(), key=lambda item: -item[1])[:3]
        out.print(f"[yellow]drift[/yellow]: {len(drifted)} feature(s) moved since training (PSI above "
                  f"{result['drift']['warn_above']}); the largest: "  # type: ignore[index]
                  + ", ".join(f"{escape(name)} {psi:.2f}" for name, psi in worst)
                  + ". Above 0.25 the model may mislead: retrain on recent data (`churn features`, `churn train`) "
                  "or check those inputs; every feature's PSI is in the MLflow run (drift.csv)")
        if result["drift"].get("note"):  # type: ignore[index,union-attr]
            out.print(f"  note: {escape(str(result['drift']['note']))}")  # type: ignore[index]
    for entry in result["explanations"]:  # type: ignore[index]
        _print_explanation(out, entry)
    out.print("wrote " + ", ".join(str(p) for p in paths.values()))


def _print_explanation(out: Console, entry: dict[str, object]) -> None:
    """One requested customer: score, decision and reasons in plain words."""
    cid = escape(str(entry["customer_id"]))
    if not entry["scored"]:
        out.print(f"[bold]{cid}[/bold]: {escape(str(entry['note']))}")
        return
    place = (f"rank {entry['rank']} on the list ({entry['selection_reason']})" if entry["selected"]
             else f"not on the list ({entry['selection_reason']})")
    out.print(f"[bold]{cid}[/bold]: {escape(str(entry['segment']))}, churn risk {float(entry['churn_probability']):.0%}, "  # type: ignore[arg-type]
              f"value at risk {_money(entry['value_at_risk'])}; {escape(place)}; action: {escape(str(entry['action']))}")
    reasons = entry["reasons"] or ["(no reason above the reporting threshold)"]
    for number, reason in enumerate(reasons, 1):  # type: ignore[arg-type]
        out.print(f"  {number}. {escape(str(reason))}")


@app.command()
def rules(config: ConfigOption = Path("configs/default.yaml")) -> None:
    """Mine complaint patterns: rules, root-cause chains and rules that end in churn.

    Settings in the config section `rules`. Writes to data/outputs/ the tables
    complaint_rules, complaint_order_pairs, complaint_chains, root_causes and
    churn_rules (CSV), the diagram complaint_chains.png, and the summary
    reports/rules_summary.json. No customer ids or complaint text are written.

    Example: churn rules --config configs/default.yaml
    """
    from pipelines.rules import run

    cfg = load_or_exit(config)
    result = run_stage(lambda: run(cfg, progress=progress_printer()))
    payload = result["summary"]  # type: ignore[index]
    counts = payload["counts"]
    out = Console()
    table = Table(title="complaint patterns")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, label in (("complaints", "complaints"), ("baskets", f"baskets ({cfg.rules.window_days}-day episodes)"),
                       ("rules", "complaint rules"), ("ordered_pairs", "ordered pairs (A before B)"),
                       ("chains", "root-cause chains"), ("root_categories", "root categories"),
                       ("churn_rules", "rules ending in churn"),
                       ("outcome_rules", "rules ending open or past target")):
        table.add_row(label, f"{int(counts.get(key) or 0):,}")
    top_lift = counts.get("top_lift")
    table.add_row("highest lift", f"{top_lift:.2f}" if isinstance(top_lift, float) else "-")
    out.print(table)
    chains = payload["top"]["chains"]
    if chains:
        top = Table(title="top chains (fix the first category first)")
        top.add_column("chain")
        top.add_column("customers in order", justify="right")
        top.add_column("confidence", justify="right")
        for chain in chains:
            top.add_row(escape(str(chain["chain"])), f"{chain['customers_in_order']:,}",
                        f"{chain['ordered_confidence']:.0%}" if chain["ordered_confidence"] is not None else "")
        out.print(top)
    for message in payload["messages"]:
        out.print(f"[yellow]note[/yellow]: {escape(message)}")
    out.print("wrote " + ", ".join(result["paths"].values()))  # type: ignore[index]


@app.command()
def complaints(config: ConfigOption = Path("configs/default.yaml")) -> None:
    """Complaint operations: weekly volume forecast, staffing, satisfaction by unit, heat maps, text.

    Settings in the config section `complaints`. Writes to data/outputs/ the weekly counts,
    the 13-week forecast with intervals and its backtest accuracy (MASE), the staffing plan,
    satisfaction by branch and business line with tests, heat maps and the text quality,
    suggestions and sentiment (CSV/Parquet and PNG), and reports/complaints_summary.json.
    No complaint text is written or logged.

    Example: churn complaints --config configs/default.yaml
    """
    from pipelines.complaints import run

    cfg = load_or_exit(config)
    result = run_stage(lambda: run(cfg, progress=progress_printer()))
    payload = result["summary"]  # type: ignore[index]
    out = Console()
    forecast, staffing, units = payload["forecast"], payload["staffing"], payload["satisfaction"]
    table = Table(title="complaint operations")
    table.add_column("what")
    table.add_column("value", justify="right")
    mase = forecast.get("mase_overall")
    table.add_row("series forecast", f"{forecast.get('series_forecast', 0)} "
                  f"({forecast.get('series_skipped', 0)} skipped)")
    table.add_row("MASE overall (backtested selection; seasonal naive in brackets)",
                  (f"{mase:.3f} ({forecast.get('mase_seasonal_naive_overall'):.3f})" if mase is not None else "-"))
    ratio = forecast.get("mae_ratio_to_seasonal_naive")
    chosen = forecast.get("models_chosen") or {}
    table.add_row("error against seasonal naive, backtested (< 1 beats it)",
                  (f"{ratio:.2f}x" if ratio is not None else "-")
                  + (f" ({', '.join(f'{m} {n}' for m, n in sorted(chosen.items()))} chosen)" if chosen else ""))
    table.add_row("peak agents to schedule per week", str(staffing.get("peak_agents_to_schedule") or "-"))
    table.add_row("units significantly below the rest", str(units["units_significantly_below"]))
    for row in payload["text"]["quality"]:
        table.add_row(f"{row['target']} suggestion macro-F1 (majority baseline)",
                      f"{row['macro_f1']:.3f} ({row['baseline_macro_f1']:.3f})")
    out.print(table)
    for below in units["below"][:10]:
        out.print(f"below average: {escape(below['unit_type'])} {escape(below['unit'])} on "
                  f"{escape(below['score'])} ({below['difference']:+.3f})")
    for message in payload["messages"]:
        out.print(f"[yellow]note[/yellow]: {escape(message)}")
    out.print(f"wrote {len(result['paths'])} files to {cfg.paths.outputs_dir}/ and {cfg.paths.reports_dir}/")  # type: ignore[index]


@app.command()
def effects(config: ConfigOption = Path("configs/default.yaml")) -> None:
    """Measure what past retention contacts did: contacted vs randomised control customers.

    Churn within the horizon, value kept, satisfaction and repurchase, overall, per customer
    segment and per action, each with a 95% interval and the sample size a future test needs
    to detect the observed effect. Needs the uplift rows of `churn features` (contacts with
    treatment = 0 rows); without a control group it says so. With features.engine auto (above
    features.pandas_max_rows), duckdb or spark, the engine reads the transactions and surveys files
    itself (after `churn validate`), so a bank too big for memory is measured too.
    Writes reports/effects.csv, reports/effects.json and reports/effects.png.

    Example: churn effects --config configs/default.yaml
    """
    from pipelines.effects import run

    cfg = load_or_exit(config)
    result = run_stage(lambda: run(cfg, progress=progress_printer()))
    summary = result["summary"]  # type: ignore[index]
    out = Console()
    if summary["status"] != "measured":
        out.print(f"[yellow]no campaign effect measured[/yellow]: {escape(str(summary['why']))}", soft_wrap=True)
        return
    frame = result["table"]  # type: ignore[index]
    table = Table(title=f"past contacts vs randomised control ({summary['rows']:,} decisions, "
                        f"{summary['control_rows']:,} control)")
    for name in ("group", "outcome", "contacted", "control", "effect", "95% interval", "p", "needed per test"):
        table.add_column(name, justify="left" if name in ("group", "outcome") else "right")
    for row in frame.itertuples():  # churn for every group, the other outcomes for all contacts (all in the CSV)
        if row.effect is None or row.effect != row.effect or (row.group != "all" and row.outcome != "churned"):
            continue
        table.add_row(escape(f"{row.group}: {row.level}" if row.group != "all" else "all"), row.outcome,
                      f"{row.contacted:,}", f"{row.control:,}", f"{row.effect:.4f}", f"[{row.low:.4f}, {row.high:.4f}]",
                      f"{row.p_value:.3f}" if row.p_value == row.p_value and row.p_value is not None else "",
                      f"{row.needed_contacted_per_test:,.0f}" if row.needed_contacted_per_test == row.needed_contacted_per_test
                      and row.needed_contacted_per_test is not None else "")
    out.print(table)
    out.print("churn effect = control rate - contacted rate (churn prevented); the others: contacted - control; "
              f"every outcome per segment and action: {cfg.paths.reports_dir}/effects.csv")
    truth = summary.get("generator_average_effect")
    if truth:
        out.print(f"generator's true churn prevented per contact: {truth['value']:.4f} "
                  f"({'inside' if truth['within_interval'] else 'outside'} the interval)")


@app.command()
def backtest(
    config: ConfigOption = Path("configs/default.yaml"),
    start: Annotated[str | None, typer.Option("--from", callback=_iso_date, metavar="DATE",
                                              help="First cutoff (month start on or after it), YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option("--to", callback=_iso_date, metavar="DATE",
                                            help="Last cutoff (month start on or before it), YYYY-MM-DD.")] = None,
) -> None:
    """Replay the retention list at past month starts, with models trained only on data before each.

    Compares the value-at-risk list, the uplift list and a random list of the same size at the
    configured capacity: churners and value at risk reached, and churners and value saved as
    estimated from the bank's randomised contacts (and, on generated data, the true figures).
    Without --from/--to: the latest `backtest.cutoffs` month starts whose horizon has ended.
    Writes reports/backtest.csv, reports/backtest.json and reports/backtest.png.

    Example: churn backtest --config configs/default.yaml --from 2024-07-01 --to 2024-12-01
    """
    from pipelines.backtest import run

    cfg = load_or_exit(config)
    result = run_stage(lambda: run(cfg, start, end, progress=progress_printer()))
    summary = result["summary"]  # type: ignore[index]
    if summary["status"] != "replayed":
        Console().print(f"[yellow]no backtest[/yellow]: {escape(str(summary['why']))}", soft_wrap=True)
        return
    table = Table(title=f"lists replayed at {sum('skipped' not in c for c in summary['cutoffs'])} cutoff(s), totals")
    columns = ["customers", "churners_reached", "value_at_risk_reached", "estimated_churners_saved",
               "estimated_value_saved", "true_churners_saved", "true_value_saved"]
    lists = summary["totals"]  # one column per list, one row per figure: fits an 80-column terminal
    table.add_column("figure (sum over the replays)")
    no_value = summary.get("value_source") == "none"  # no value known: that list ranks by risk alone
    for name in lists:
        table.add_column("by risk (no value known)" if no_value and name == "value_at_risk" else name.replace("_", " "),
                         justify="right")

    def shown(value: float | None) -> str:
        return ("" if value is None else f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer()
                else f"{value:,.1f}")

    for column in columns:
        table.add_row(column.replace("_", " "), *(shown(figures.get(column)) for figures in lists.values()))
    Console().print(table)
    for entry in summary["cutoffs"]:
        if "skipped" in entry:
            Console().print(f"[yellow]skipped[/yellow] {entry['cutoff']}: {escape(str(entry['skipped']))}", soft_wrap=True)


@app.command("run")
def run_all(
    config: ConfigOption = Path("configs/default.yaml"),
    first: Annotated[str | None, typer.Option("--from", help="First stage to run (validate, features, train, score, rules, complaints, effects, backtest, report).")] = None,
    last: Annotated[str | None, typer.Option("--to", help="Last stage to run.")] = None,
) -> None:
    """Run every stage in order without DVC: validate, features, train, score, rules, complaints, effects, backtest, report.

    Example: churn run --config configs/default.yaml --from features --to train
    """
    from pipelines.run import STAGE_NAMES, run, selected_stages

    for value in (first, last):
        if value is not None and value not in STAGE_NAMES:
            console.print(f"[bold red]unknown stage {value!r}[/bold red]; stages: {', '.join(STAGE_NAMES)}")
            raise typer.Exit(EXIT_CONFIG)
    try:
        selected_stages(first, last)
    except ValueError as error:
        console.print(f"[bold red]{error}[/bold red]; stages in order: {', '.join(STAGE_NAMES)}")
        raise typer.Exit(EXIT_CONFIG) from None
    cfg = load_or_exit(config)
    run_stage(lambda: run(cfg, first, last, progress=progress_printer()))
    Console().print(f"pipeline finished; outputs in {cfg.paths.outputs_dir}/ and {cfg.paths.reports_dir}/")


@app.command()
def report(config: ConfigOption = Path("configs/default.yaml")) -> None:
    """Execute the analyst notebooks on the latest outputs and render them to HTML in reports/html/.

    Example: churn report --config configs/default.yaml
    """
    from pipelines.report import run

    cfg = load_or_exit(config)
    summary = run_stage(lambda: run(cfg, progress=progress_printer(), config_path=config))
    Console().print(f"report: {summary['index']}")  # type: ignore[index]


@app.command()
def init(
    customers: Annotated[Path, typer.Option("--customers", metavar="FILE", help="Customers file, CSV or Parquet: one row per customer (required).")],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Config file to write, e.g. configs/mine.yaml.")],
    transactions: Annotated[Path | None, typer.Option(metavar="FILE", help="Transactions file (optional).")] = None,
    complaints: Annotated[Path | None, typer.Option(metavar="FILE", help="Complaints file (optional).")] = None,
    surveys: Annotated[Path | None, typer.Option(metavar="FILE", help="Survey answers file (optional).")] = None,
    contacts: Annotated[Path | None, typer.Option(metavar="FILE", help="Past retention contacts file (optional).")] = None,
    column: Annotated[list[str] | None, typer.Option(
        "--column", metavar="TABLE.CONTRACT=FILECOLUMN",
        help="Use this file column for a contract column, e.g. customers.customer_id=ClientNo (repeat for more); "
             "otherwise columns are found by name.")] = None,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", callback=_iso_date, metavar="DATE",
        help="Date the data is complete up to (exclusive), YYYY-MM-DD (default: inferred from the data).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
    churn_flag: Annotated[str | None, typer.Option(
        "--churn-flag", metavar="COLUMN",
        help="A snapshot without closure dates: the customers column saying who left (e.g. Churn, Exited); "
             "default: found by its name when there are no closure dates and no transactions.")] = None,
    churned_value: Annotated[list[str] | None, typer.Option(
        "--churned-value", metavar="VALUE",
        help="A value of the churn flag that means churned (repeat for more; any other value then means stayed); "
             "default: 1, true, yes, y, t.")] = None,
    tenure: Annotated[str | None, typer.Option(
        "--tenure", metavar="COLUMN",
        help="With a churn flag: the customers column with each customer's tenure (default: named like tenure).")] = None,
    tenure_unit: Annotated[str | None, typer.Option(
        "--tenure-unit", metavar="UNIT",
        help="The tenure's unit: days, weeks, months or years (default: from the column's name, else months).")] = None,
    horizon: Annotated[int | None, typer.Option(
        "--horizon", metavar="DAYS",
        help="labels.horizon_days: churn within this many days (with a churn flag, the window the flag covers "
             "before --as-of); default: chosen from the data (90 for a flag, an assumption).")] = None,
) -> None:
    """Inspect your files and write a commented config for them; then `churn run --config OUT`.

    Finds the contract columns by name, then chooses from the data the churn definition
    (closure or inactivity), as_of, horizon, training cutoffs, static features and the
    money figures, each with the reason in a comment beside it. Exits 2 when a required
    column is not found (naming the --column to add), 4 when OUT exists without --force.

    Example: churn init --customers exports/customers.csv --transactions exports/tx.csv --out configs/mine.yaml
    """
    from pipelines.init import InitProblem, decisions_rows, run

    paths = {"customers": customers, "transactions": transactions, "complaints": complaints,
             "surveys": surveys, "contacts": contacts}
    argv = ["init"] + [part for name, path in paths.items() if path is not None for part in (f"--{name}", str(path))]
    argv += [part for flag in column or [] for part in ("--column", flag)]
    argv += (["--as-of", as_of] if as_of else []) + ["--out", str(out)] + (["--force"] if force else [])
    argv += (["--churn-flag", churn_flag] if churn_flag else []) + [p for v in churned_value or [] for p in ("--churned-value", v)]
    argv += (["--tenure", tenure] if tenure else []) + (["--tenure-unit", tenure_unit] if tenure_unit else [])
    argv += ["--horizon", str(horizon)] if horizon is not None else []
    try:
        result = run_stage(lambda: run({k: v for k, v in paths.items() if v is not None}, column or [], out,
                                       as_of=as_of, force=force, progress=progress_printer(), argv=argv,
                                       churn_flag=churn_flag, churned_values=churned_value or None, tenure=tenure,
                                       tenure_unit=tenure_unit, horizon=horizon))
    except InitProblem as error:
        console.print(f"[bold red]churn init[/bold red]: {escape(str(error))}\nnothing was written.",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    show = Console()
    table = Table(title=f"wrote {escape(str(result['out']))} ({result['customers']:,} customers)")  # type: ignore[index]
    for name in ("setting", "value", "why"):
        table.add_column(name)
    for setting, value, why in decisions_rows(result):  # type: ignore[arg-type]
        table.add_row(escape(setting), escape(value), escape(why))
    show.print(table)
    left_out = result["left_out"]  # type: ignore[index]
    if left_out:
        show.print("not features: " + "; ".join(escape(f"{s.name} ({s.kind})") for s in left_out),
                   highlight=False, soft_wrap=True)
    for warning in result["warnings"]:  # type: ignore[index]
        show.print(f"[yellow]note[/yellow]: {escape(warning)}", highlight=False, soft_wrap=True)
    problems = result["problems"]  # type: ignore[index]
    if problems:
        show.print(f"[yellow]input problems[/yellow]: {len(problems)} problem(s) will stop `churn validate` until "
                   "fixed in the files:", highlight=False)
        for problem in problems[:10]:
            show.print(f"  - {escape(str(problem))}", highlight=False, soft_wrap=True)
    show.print("every choice is explained in the file; check the lines marked ASSUMPTION (your margin and costs)")
    show.print(f"next: {escape(result['next'])}", highlight=False)  # type: ignore[index]

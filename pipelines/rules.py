"""The rules stage: complaint rules, ordered pairs, chains, root causes and churn rules.

Loads the tables, runs the pure analysis (`models.rules.mine_complaint_rules`), writes the
tables as Excel-safe CSV files and a chain diagram to `paths.outputs_dir`, a summary to
`paths.reports_dir/rules_summary.json`, and logs settings, counts and the files to MLflow.
The files are written together (`pipelines.io.StageOutputs`: one generation switched in with
one rename; a second run on the same folder stops at once) and hold no timestamps or run ids,
so the same data and config give byte-identical outputs. No customer id or complaint text is written.
"""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from models.rules import RuleResult, RuleSettings, mine_complaint_rules  # noqa: E402
from pipelines.config import Config  # noqa: E402
from pipelines.io import StageOutputs, excel_safe, write_csv, write_json, write_with  # noqa: E402
from pipelines.outputs import stage_paths  # noqa: E402
from pipelines.tables import load_tables  # noqa: E402
from pipelines.tracking import flatten_params, tracked_run  # noqa: E402

log = logging.getLogger("pipelines.rules")

RULES_FILE = "complaint_rules.csv"
PAIRS_FILE = "complaint_order_pairs.csv"
CHAINS_FILE = "complaint_chains.csv"
ROOTS_FILE = "root_causes.csv"
CHURN_RULES_FILE = "churn_rules.csv"
DIAGRAM_FILE = "complaint_chains.png"
SUMMARY_FILE = "rules_summary.json"
CHAINS_PLOTTED = 8
DECIMALS = 6


def _finite(value: object) -> object:
    """JSON-safe value: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Floats rounded for readable, stable CSV files (p-values keep their tiny magnitudes)."""
    floats = [c for c in frame.select_dtypes("float").columns if not c.startswith(("p_value", "max_link_p_value"))]
    return frame.assign(**{c: frame[c].round(DECIMALS) for c in floats}) if floats else frame


def _label(category: str, width: int = 16) -> str:
    return "\n".join(textwrap.wrap(category.replace("_", " "), width)) or category


def _ordered_columns(nodes: list[str], links: dict[tuple[str, str], float], depth: dict[str, int],
                     columns: int) -> dict[int, list[str]]:
    """Nodes per column, ordered to limit crossing arrows (each node near the mean row of its neighbours)."""
    per_column: dict[int, list[str]] = {c: sorted(n for n in nodes if depth[n] == c) for c in range(columns)}
    neighbours = {n: [b for a, b in links if a == n] + [a for a, b in links if b == n] for n in nodes}
    row = {n: float(i) for members in per_column.values() for i, n in enumerate(members)}
    for _ in range(4):
        for column in [*range(1, columns), *range(columns - 2, -1, -1)]:
            wanted = {n: sum(row[m] for m in neighbours[n]) / len(neighbours[n]) if neighbours[n] else row[n]
                      for n in per_column[column]}
            per_column[column] = sorted(per_column[column], key=lambda n: (wanted[n], n))
            row.update({n: float(i) for i, n in enumerate(per_column[column])})
    return per_column


def chain_figure(result: RuleResult, window_days: int, top: int = CHAINS_PLOTTED) -> Figure:
    """Diagram of the top chains: categories as boxes, arrows A -> B labelled with the ordered confidence.

    Columns are steps (a category sits one column right of the furthest category that
    leads to it), so the root categories to fix first stand on the left.
    """
    chains = result.chains.head(top)
    confidence = {(a, b): c for a, b, c in zip(result.pairs["first_category"], result.pairs["then_category"],
                                                result.pairs["ordered_confidence"])}
    links: dict[tuple[str, str], float] = {}
    for chain in chains["chain"]:
        steps = chain.split(" -> ")
        for a, b in zip(steps, steps[1:]):
            links[(a, b)] = confidence.get((a, b), float("nan"))
    nodes = sorted({n for link in links for n in link})
    depth = {n: 0 for n in nodes}
    for _ in range(len(nodes)):
        for a, b in links:
            depth[b] = max(depth[b], min(depth[a] + 1, len(nodes)))
    columns = max(depth.values(), default=0) + 1
    per_column = _ordered_columns(nodes, links, depth, columns)
    rows = max((len(v) for v in per_column.values()), default=1)

    fig, ax = plt.subplots(figsize=(max(7.0, 3.0 * columns), max(4.0, 1.5 * rows + 1.8)), dpi=110)
    ax.set_axis_off()
    ax.set_title(f"Complaint chains within {window_days}-day episodes (top {len(chains)} of {len(result.chains)})\n"
                 "arrow A \u2192 B: A usually comes first; label: share of A's episodes followed by B",
                 fontsize=10)
    if not links:
        ax.text(0.5, 0.5, "No significant complaint chains found", ha="center", va="center", fontsize=12)
        return fig
    position: dict[str, tuple[float, float]] = {}
    for column, members in per_column.items():
        for i, node in enumerate(members):
            position[node] = (column * 3.0, (len(members) - 1) / 2 - i)
    roots = set(result.roots.loc[result.roots["is_root"].astype(bool), "category"]) if len(result.roots) else set()
    for node, (x, y) in position.items():
        box = FancyBboxPatch((x - 0.95, y - 0.32), 1.9, 0.64, boxstyle="round,pad=0.05",
                             facecolor="#f6d5c9" if node in roots else "#dde8f4", edgecolor="#444444")
        ax.add_patch(box)
        ax.text(x, y, _label(node), ha="center", va="center", fontsize=8.5)
    for (a, b), share in sorted(links.items()):
        (xa, ya), (xb, yb) = position[a], position[b]
        skip = depth[b] - depth[a] > 1
        start, end = (xa + 1.0, ya), (xb - 1.0, yb)
        ax.annotate("", xy=end, xytext=start,
                    arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.3,
                                "connectionstyle": f"arc3,rad={-0.25 if skip else 0.0}"})
        # The label sits near the arrow's tail, so arrows leaving or entering one box keep apart.
        along = 0.3
        label_x = start[0] + along * (end[0] - start[0])
        label_y = start[1] + along * (end[1] - start[1]) + (0.3 if skip else 0.0)
        ax.text(label_x, label_y, f"{share:.0%}" if share == share else "", ha="center", va="center", fontsize=8,
                color="#333333", bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})
    xs = [p[0] for p in position.values()]
    ys = [p[1] for p in position.values()]
    ax.set_xlim(min(xs) - 1.3, max(xs) + 1.3)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 1.2)
    ax.text(min(xs) - 1.25, min(ys) - 0.85,
            "shaded boxes: root categories (no significant complaint comes before them)",
            fontsize=7.5, color="#666666", va="bottom")
    return fig


OUTPUT_FILES = (RULES_FILE, PAIRS_FILE, CHAINS_FILE, ROOTS_FILE, CHURN_RULES_FILE, DIAGRAM_FILE)


def output_paths(cfg: Config) -> dict[str, Path]:
    """Where each output of the stage is read from: the tables and diagram, then the summary."""
    return stage_paths(cfg, "rules")


def write_outputs(result: RuleResult, cfg: Config, settings: RuleSettings,
                  files: dict[str, Path] | None = None) -> dict[str, Path]:
    """The tables and the diagram, each written atomically to `files` (default: their public paths)."""
    files = files or output_paths(cfg)
    tables = {RULES_FILE: result.rules, PAIRS_FILE: result.pairs, CHAINS_FILE: result.chains,
              ROOTS_FILE: result.roots, CHURN_RULES_FILE: result.churn_rules}
    paths = {name: write_csv(excel_safe(_rounded(frame)), files[name]) for name, frame in tables.items()}
    fig = chain_figure(result, settings.window_days)
    paths[DIAGRAM_FILE] = write_with(files[DIAGRAM_FILE], lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return paths


def summary_payload(result: RuleResult, settings: RuleSettings, cfg: Config, as_of: pd.Timestamp | None,
                    paths: dict[str, Path]) -> dict[str, object]:
    """The JSON summary: counts, messages, settings and where the tables are (no customer data)."""
    top = {
        "chains": result.chains.head(5)[["chain", "customers_in_order", "ordered_confidence"]].to_dict("records"),
        "root_causes": result.roots.head(5)[["category", "downstream_complaints", "customers_affected"]]
        .to_dict("records"),
        "churn_rules": result.churn_rules.head(5)[["outcome", "antecedents", "lift", "customers_with_outcome"]]
        .to_dict("records"),
    }
    return {
        "as_of": str(as_of) if as_of is not None else None,
        "counts": {k: _finite(v) for k, v in result.summary.items()},
        "messages": list(result.messages),
        "settings": settings.model_dump(mode="json"),
        "churn_definition": {"definition": cfg.labels.definition, "horizon_days": cfg.labels.horizon_days},
        "top": {k: [{c: _finite(v) for c, v in row.items()} for row in rows] for k, rows in top.items()},
        "files": {name: str(path) for name, path in sorted(paths.items())},
    }


def needs_tables(cfg: Config) -> frozenset[str]:
    """The tables mining reads: transactions only when churn is inactivity (closure reads customers)."""
    return frozenset({"customers", "complaints"} | ({"transactions"} if cfg.labels.definition == "inactivity"
                                                     else set()))


def run(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    """Mine the complaint history, write the tables, the diagram and the summary, log them to MLflow."""
    say = progress or (lambda message: None)
    settings = cfg.rules
    public = output_paths(cfg)
    outputs = StageOutputs("rules", public, say)
    with outputs, outputs.commit() as files:  # every file switches in together when the block ends
        tables = load_tables(cfg, needs_tables(cfg))
        result, payload, run_id = _mine(cfg, settings, tables, say, files, public)
    say(f"{result.summary['baskets']:,} baskets, {len(result.rules)} rules, {len(result.chains)} chains, "
        f"{len(result.churn_rules)} churn/outcome rules; tables in {cfg.paths.outputs_dir}/")
    return {"run_id": run_id, "summary": payload, "paths": {k: str(v) for k, v in public.items()}}


def _mine(cfg: Config, settings: RuleSettings, tables: object, say: Callable[[str], None], files: dict[str, Path],
          public: dict[str, Path]) -> tuple[RuleResult, dict[str, object], str]:
    with tracked_run(cfg, stage="rules") as active:
        mlflow.log_params(flatten_params(settings, "rules."))
        mlflow.log_params({"labels.definition": cfg.labels.definition,
                           "labels.horizon_days": str(cfg.labels.horizon_days)})
        say(f"mining complaint baskets of {settings.window_days} days with {settings.algorithm}")
        result = mine_complaint_rules(tables.complaints, tables.customers, tables.transactions, tables.as_of,
                                      settings, cfg.labels, cfg.features.complaint_targets)
        for message in result.messages:
            log.warning("%s", message)
            say(message)
        write_outputs(result, cfg, settings, files)
        payload = summary_payload(result, settings, cfg, tables.as_of,
                                  {name: public[name] for name in OUTPUT_FILES})
        write_json(payload, files[SUMMARY_FILE])
        metrics = {f"rules.{k}": float(v) for k, v in result.summary.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
        mlflow.log_metrics(metrics)
        for path in files.values():  # the new files, logged before they are switched in
            mlflow.log_artifact(str(path), "rules")
    return result, payload, active.info.run_id

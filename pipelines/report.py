"""The report stage: execute the analyst notebooks on the latest outputs and render them to HTML.

Notebooks live in `notebooks/` as jupytext percent scripts (the reviewable source; the paired
`.ipynb` are made locally by `jupytext --sync` and not committed). Each is executed top to
bottom in a fresh kernel, in the project folder, with `CHURN_CONFIG` naming the config, then
exported to standalone HTML (plots embedded) in `reports/html/`, and the HTML files are
logged to an MLflow run. The pages change together (`pipelines.io.StageOutputs`: one generation
switched in with one rename; a second `churn report` on the same folder stops at once), and the
notebooks read every upstream stage's files from its current generation
(`pipelines.outputs.current_paths`), never two runs' files side by side. The notebooks import the small helpers below (config, latest run of
a stage, registry history) instead of repeating MLflow plumbing. Those helpers are imported in
every notebook kernel, so the notebook machinery (jupytext, nbclient, nbconvert) and MLflow are
imported only where they are used: a kernel starts faster, and a notebook that never asks
MLflow anything does not load it.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import time
import typing
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pipelines.config import Config, load_config
from pipelines.io import StageError, StageOutputs, write_text
from pipelines.outputs import current_paths, stage_paths

if TYPE_CHECKING:
    import mlflow
    import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT_SECONDS = 600
DEFAULT_CONFIG = Path("configs/default.yaml")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


# ---------------------------------------------------------------- helpers the notebooks import


def notebook_config(max_colwidth: int = 50) -> tuple[Config, Path]:
    """The config the notebooks read: `CHURN_CONFIG` (set by `churn report`), else configs/default.yaml.

    Also gives every notebook the same look: table display limits, gridded charts, and no
    deprecation noise from libraries in the rendered report.
    """
    import matplotlib.pyplot as plt

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    pd.set_option("display.max_rows", 40)
    pd.set_option("display.width", 140)
    pd.set_option("display.max_colwidth", max_colwidth)
    plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})
    path = Path(os.environ.get("CHURN_CONFIG") or DEFAULT_CONFIG)
    return load_config(path), path


def latest_run(cfg: Config, stage: str) -> mlflow.entities.Run | None:
    """The most recent finished MLflow run of a pipeline stage (tag `stage`), or None."""
    import mlflow

    from pipelines.tracking import configure_tracking

    experiment_id = configure_tracking(cfg)
    runs = mlflow.search_runs(experiment_ids=[experiment_id], output_format="list", max_results=1,
                              filter_string=f"tags.stage = '{stage}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def registry_history(cfg: Config, name: str, metrics: tuple[str, ...], tags: tuple[str, ...] = ()) -> pd.DataFrame:
    """Every registered version of model `name`: when, from which run, its aliases, some run metrics and run tags.

    A metric or tag the run does not have (an older run, or a store without that run) is None.
    """
    import mlflow

    from pipelines.tracking import configure_tracking

    configure_tracking(cfg)
    client = mlflow.MlflowClient()
    rows: list[dict[str, object]] = []
    versions = client.search_model_versions(f"name='{name}'")
    aliases: dict[str, list[str]] = {}
    if versions:  # search results do not carry aliases in every store: read them from the model
        for alias, number in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(number), []).append(alias)
    for version in versions:
        run = client.get_run(version.run_id) if version.run_id else None
        row: dict[str, object] = {
            "version": int(version.version),
            "registered": pd.Timestamp(version.creation_timestamp, unit="ms").floor("s"),
            "aliases": ", ".join(sorted(aliases.get(str(version.version), []))) or "-",
            "run_id": version.run_id,
        }
        for metric in metrics:
            row[metric] = run.data.metrics.get(metric) if run is not None else None
        for tag in tags:
            row[tag] = run.data.tags.get(tag) if run is not None else None
        rows.append(row)
    columns = ["version", "registered", "aliases", "run_id", *metrics, *tags]
    return pd.DataFrame(rows, columns=columns).sort_values("version", ignore_index=True)


def notebook_sources(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The jupytext percent scripts, in their numbered order."""
    return sorted(p for p in folder.glob("[0-9]*.py"))


KERNEL_START_ATTEMPTS = 3
"""Kernel starts tried per notebook before the stage stops. A kernel can die before it answers: the
notebooks start their kernels side by side, and jupyter_client picks each kernel's ports free before the
kernel binds them, so two starting at once can collide (seen once in `make test`, 2026-12-07)."""


QUIET_NBCLIENT = logging.getLogger("churn.report.nbclient")
"""nbclient's own log, silenced: it says ERROR for a kernel start that the stage then retries; what the
user needs is in the stage's messages and errors."""
QUIET_NBCLIENT.setLevel(logging.CRITICAL + 1)
QUIET_NBCLIENT.propagate = False


def execute_notebook(source: Path, config_path: Path, workdir: Path,
                     kernel_name: str = "python3") -> nbformat.NotebookNode:
    """Run one notebook in a fresh kernel; a failing cell raises StageError naming the notebook.

    The kernel gets `CHURN_CONFIG` in its own environment, so notebooks can run side by side. The kernel
    process's own stderr goes to a temporary file, not the stage's: cell output travels by the kernel
    protocol, and what the process itself writes there is its logging, e.g. ipykernel's traceback when
    its socket closes during shutdown (a race seen in CI), which read as if the stage had failed. It is
    shown only when the kernel dies. A kernel that dies or does not answer before the first cell runs is
    started again, up to `KERNEL_START_ATTEMPTS` times, then StageError with its last words.
    """
    import tempfile

    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    env = {**os.environ, "CHURN_CONFIG": str(config_path.resolve()),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        notebook = jupytext.read(source)
        started: list[bool] = []
        client = NotebookClient(notebook, timeout=CELL_TIMEOUT_SECONDS, kernel_name=kernel_name,
                                resources={"metadata": {"path": str(workdir)}},
                                extra_arguments=["--Application.log_level=ERROR"],  # no kernel start-up chatter
                                on_notebook_start=lambda **_: started.append(True), log=QUIET_NBCLIENT)
        with tempfile.TemporaryFile() as kernel_stderr:
            try:
                client.execute(env=env, stderr=kernel_stderr)
                return notebook
            except CellExecutionError as error:
                cell = ANSI_ESCAPE.sub("", str(error)).split("------------------\n")
                first_line = next((line for line in (cell[1] if len(cell) > 1 else "").splitlines() if line.strip()),
                                  "")
                raise StageError(f"notebook {source.name} failed: "
                                 f"{ANSI_ESCAPE.sub('', f'{error.ename}: {error.evalue}')} in the cell that starts "
                                 f"{first_line.strip()[:120]!r}; open the notebook in Jupyter to see where") from None
            except DeadKernelError:
                raise StageError(f"notebook {source.name}: its kernel died (out of memory?); its last words: "
                                 f"{_last_words(kernel_stderr)!r}; nothing was written") from None
            except RuntimeError as error:  # jupyter_client: the kernel died or was silent before answering
                if started:
                    raise
                # nbclient has stopped that kernel but left its exit-time clean-up registered, which would
                # print a traceback when the process ends
                atexit.unregister(client._cleanup_kernel)
                if attempt < KERNEL_START_ATTEMPTS:
                    continue
                raise StageError(f"notebook {source.name}: its kernel did not start in {KERNEL_START_ATTEMPTS} "
                                 f"attempts ({error}); its last words: {_last_words(kernel_stderr)!r}. Check that "
                                 "`python -m ipykernel` runs in this environment (`make install` sets it up); "
                                 "nothing was written") from None
    raise AssertionError("unreachable")  # every attempt returns, raises or continues


def _last_words(kernel_stderr: typing.IO[bytes]) -> str:
    """The last line the kernel process wrote to its stderr (ANSI colours removed, at most 300 characters)."""
    kernel_stderr.seek(0)
    last = kernel_stderr.read().decode("utf-8", errors="replace").strip().splitlines()[-1:] or ["nothing"]
    return ANSI_ESCAPE.sub("", last[0])[:300]


def render_html(notebook: nbformat.NotebookNode) -> str:
    """Standalone HTML with every plot embedded as an image; code cells hidden for readers."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(notebook)
    return body


def run(cfg: Config, progress: Callable[[str], None] | None = None,
        config_path: Path | None = None) -> dict[str, object]:
    """Execute every notebook and write `reports/html/<notebook>.html`; log them to MLflow.

    Notebooks run side by side (one kernel each, up to the number of CPUs); the first
    failing notebook, in numbered order, stops the stage with its name and error.
    """
    import mlflow

    from pipelines.tracking import tracked_run

    say = progress or (lambda message: None)
    config_path = config_path or Path(os.environ.get("CHURN_CONFIG", "configs/default.yaml"))
    sources = notebook_sources()
    if not sources:
        raise StageError(f"no notebooks found in {NOTEBOOK_DIR}")
    missing = missing_outputs(cfg)
    if missing:
        raise StageError("the report reads the outputs of the earlier stages, and these are missing: "
                         + "; ".join(f"{path} (run `churn {stage}`)" for path, stage in missing)
                         + ". Run them first, e.g. `churn run --config ... --to rules`; nothing was written")
    public = stage_paths(cfg, "report")
    out_dir = public["index.html"].parent
    expected = {f"{source.stem}.html" for source in sources}
    if expected != set(public) - {"index.html"}:
        raise StageError(f"the notebooks in {NOTEBOOK_DIR} ({', '.join(sorted(expected))}) are not the ones "
                         "pipelines/outputs.py lists; nothing was written")
    workdir = Path.cwd()
    written: list[str] = []

    def execute(source: Path) -> nbformat.NotebookNode:
        start = time.perf_counter()
        notebook = execute_notebook(source, config_path, workdir)
        say(f"executed {source.name} ({time.perf_counter() - start:.0f} s)")
        return notebook

    outputs = StageOutputs("report", public, say)
    with outputs, tracked_run(cfg, stage="report"):
        say(f"executing {len(sources)} notebooks: {', '.join(s.name for s in sources)}")
        with ThreadPoolExecutor(max_workers=max(1, min(len(sources), os.cpu_count() or 1))) as pool:
            notebooks = list(pool.map(execute, sources))
        with outputs.commit() as files:  # every page switches in together when the block ends
            for source, notebook in zip(sources, notebooks):
                name = f"{source.stem}.html"
                write_text(render_html(notebook), files[name])
                mlflow.log_artifact(str(files[name]), "report")
                written.append(str(public[name]))
            write_text(index_page([Path(p) for p in written]), files["index.html"])
            mlflow.log_artifact(str(files["index.html"]), "report")
        index = public["index.html"]
    say(f"report written: {out_dir}/ ({len(written)} notebooks)")
    return {"html": written, "index": str(index), "report_dir": str(out_dir)}


def missing_outputs(cfg: Config) -> list[tuple[Path, str]]:
    """The upstream outputs the notebooks read that do not exist, each with the stage that writes it."""
    needed = {"validate": ("validation.json",),
              "features": ("features_summary.json", "train.parquet", "score.parquet"),
              "train": ("train_metrics.json", "example_reasons.csv", "gains.csv"),
              "score": ("scores.parquet", "retention_list.csv", "manifest.json"),
              "rules": ("rules_summary.json", "complaint_rules.csv", "root_causes.csv"),
              "complaints": ("complaints_summary.json", "complaint_forecast_accuracy.csv", "staffing_plan.csv",
                             "satisfaction_by_unit.csv", "complaint_text_quality.csv")}
    missing = []
    for stage, names in needed.items():
        public, current = stage_paths(cfg, stage), current_paths(cfg, stage)
        missing += [(public[name], stage) for name in names if not current[name].is_file()]
    return missing


def index_page(pages: list[Path]) -> str:
    """A small landing page linking the rendered notebooks."""
    items = "\n".join(f'<li><a href="{p.name}">{p.stem.replace("-", " ").replace("_", " ")}</a></li>' for p in pages)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>churn-care report</title></head>"
            f"<body><h1>churn-care report</h1><ul>\n{items}\n</ul></body></html>\n")

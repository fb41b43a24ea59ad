"""The analyst notebooks, executed for real on the small demo project that `dvc repro` built.

The session fixture (tests/conftest.py) ran every stage, the last one `churn report`, which
executes the five notebooks (`pipelines.report.run`) and renders them to HTML. These tests
check the HTML: every notebook is there, ran without an error or a warning, embeds its
charts as PNG images, and shows no complaint text; the HTML is logged to the MLflow run.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import jupytext
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines.io import StageError
from pipelines.report import execute_notebook, notebook_sources
from tests.conftest import Project

ROOT = Path(__file__).resolve().parents[2]

# Charts each notebook draws on the small demo data (placeholders count when a table is empty).
MIN_IMAGES = {
    "01_data_overview": 8,
    "02_model_report": 7,
    "03_complaint_root_causes": 5,
    "04_retention_list": 5,
    "05_complaint_operations": 5,
}
EMBEDDED_PNG = re.compile(r'<img[^>]*\ssrc="data:image/png;base64,[A-Za-z0-9+/=]{200,}"')
STDERR_OUTPUT = 'data-mime-type="application/vnd.jupyter.stderr"'


def rendered(project: Project) -> dict[str, str]:
    """The HTML of each notebook, by notebook name; fails with the repro output if the stage failed."""
    first = project.first_repro
    assert first.returncode == 0, f"dvc repro failed\n{first.stdout[-4000:]}\n{first.stderr[-6000:]}"
    html_dir = project.root / "reports" / "html"
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(html_dir.glob("0*.html"))}


def test_the_notebooks_are_kept_as_percent_scripts() -> None:
    sources = notebook_sources()
    assert [p.stem for p in sources] == list(MIN_IMAGES)
    for source in sources:
        text = source.read_text(encoding="utf-8")
        assert "format_name: percent" in text and "# %% [markdown]" in text, source.name
        assert "def run(" not in text and "to_parquet(" not in text and "to_csv(" not in text, \
            f"{source.name} should only read outputs, never write them"
        notebook = jupytext.read(source)
        assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# "), source.name


@pytest.mark.slow
def test_every_notebook_renders_with_embedded_charts_and_no_errors(dvc_project: Project) -> None:
    pages = rendered(dvc_project)
    assert sorted(pages) == sorted(MIN_IMAGES)
    for name, html in pages.items():
        images = EMBEDDED_PNG.findall(html)
        assert len(images) >= MIN_IMAGES[name], f"{name}: {len(images)} embedded PNG charts, expected {MIN_IMAGES[name]}"
        assert STDERR_OUTPUT not in html, f"{name}: an error or warning was printed"
        assert "Traceback" not in html, name
        assert "notebook_config()" not in html, f"{name}: code cells are shown to readers"
    index = (dvc_project.root / "reports" / "html" / "index.html").read_text(encoding="utf-8")
    assert all(f'href="{name}.html"' in index for name in MIN_IMAGES)


@pytest.mark.slow
def test_reports_show_no_complaint_text_and_no_personal_columns(dvc_project: Project) -> None:
    pages = rendered(dvc_project)
    complaints = pd.read_parquet(dvc_project.root / "data" / "raw" / "demo" / "complaints.parquet")
    assert "text" in complaints, "the demo data should carry complaint text, so this test can catch a leak"
    texts = {t for t in complaints["text"].dropna().astype("str") if len(t) >= 20}
    assert texts
    for name, html in pages.items():
        leaked = [t for t in texts if t in html]
        assert not leaked, f"{name} shows complaint text: {leaked[:2]}"
        assert "signup_date" not in html and "closed_date" not in html, f"{name} shows raw customer records"


@pytest.mark.slow
def test_report_html_is_logged_to_the_mlflow_run(dvc_project: Project) -> None:
    rendered(dvc_project)
    uri = f"sqlite:///{dvc_project.root / 'mlflow.db'}"
    with sqlite3.connect(dvc_project.root / "mlflow.db") as db:
        assert db.execute("select count(*) from runs").fetchone()[0] >= 4  # train, score, rules and report each log a run
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("churn-care")
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'report' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    assert runs, "no finished report run in MLflow"
    logged = {Path(a.path).name for a in client.list_artifacts(runs[0].info.run_id, "report")}
    assert logged == {f"{name}.html" for name in MIN_IMAGES} | {"index.html"}


def test_a_failing_notebook_stops_the_report_and_names_the_notebook(tmp_path: Path) -> None:
    source = tmp_path / "09_broken.py"
    source.write_text("# %% [markdown]\n# # Broken\n\n# %%\nraise ValueError('no such column: churn_rate')\n",
                      encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("data: {tables: {customers: {path: customers.csv}}}\n", encoding="utf-8")
    with pytest.raises(StageError, match=r"(?s)09_broken\.py failed.*ValueError: no such column") as failure:
        execute_notebook(source, config, tmp_path)
    assert "\x1b[" not in str(failure.value), "colour codes would garble the CLI message"


def test_what_the_kernel_process_writes_to_its_stderr_stays_out_of_the_stage_output(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """ipykernel sometimes logs a traceback on its process stderr while it shuts down (CI saw one); cell
    output travels by the kernel protocol, so the process's own stderr is kept out of the stage's."""
    source = tmp_path / "01_noise.py"
    source.write_text("# %%\nimport sys\nsys.__stderr__.write('Traceback (kernel process noise)\\n')\n"
                      "sys.__stderr__.flush()\nprint('cell output')\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("data: {tables: {customers: {path: c.csv}}}\n", encoding="utf-8")
    notebook = execute_notebook(source, config, tmp_path)
    assert notebook.cells[0].outputs[-1]["text"].strip() == "cell output"
    captured = capfd.readouterr()
    assert "kernel process noise" not in captured.err + captured.out


def test_notebooks_get_the_config_path_in_their_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHURN_CONFIG", raising=False)
    source = tmp_path / "01_env.py"
    source.write_text("# %%\nimport os\nprint(os.environ['CHURN_CONFIG'])\n", encoding="utf-8")
    config = tmp_path / "my config.yaml"
    config.write_text("data: {tables: {customers: {path: c.csv}}}\n", encoding="utf-8")
    notebook = execute_notebook(source, config, tmp_path)
    assert notebook.cells[0].outputs[0]["text"].strip() == str(config.resolve())


def kernel_spec(folder: Path, name: str, script: str) -> None:
    """A Jupyter kernel named `name` under `folder` (put on JUPYTER_PATH) that runs `script` with the
    connection file as its argument."""
    spec = folder / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", script, "{connection_file}"], "display_name": name, "language": "python"}),
        encoding="utf-8")


def test_a_kernel_that_dies_at_start_is_started_again_then_reported(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Real kernels that die before answering: one that dies at its first start only runs the notebook at the
    second; one that always dies stops the report with a clear error naming the notebook and its last words."""
    kernels = tmp_path / "jupyter"
    marker = tmp_path / "first-start-died"
    kernel_spec(kernels, "dies-once", (
        "import os, sys\n"
        f"marker = {str(marker)!r}\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close(); sys.stderr.write('first start: gone\\n'); sys.exit(1)\n"
        "from ipykernel import kernelapp\n"
        "sys.argv = ['ipykernel_launcher', '-f', sys.argv[1]]\n"
        "kernelapp.launch_new_instance()\n"))
    kernel_spec(kernels, "always-dies", "import sys\nsys.stderr.write('no kernel here\\n')\nsys.exit(3)\n")
    monkeypatch.setenv("JUPYTER_PATH", str(kernels))
    source = tmp_path / "01_hello.py"
    source.write_text("# %%\nprint('cell output')\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("data: {tables: {customers: {path: c.csv}}}\n", encoding="utf-8")
    notebook = execute_notebook(source, config, tmp_path, kernel_name="dies-once")
    assert marker.exists() and notebook.cells[0].outputs[-1]["text"].strip() == "cell output"
    with pytest.raises(StageError, match=r"01_hello\.py: its kernel did not start in 3 attempts") as failure:
        execute_notebook(source, config, tmp_path, kernel_name="always-dies")
    assert "no kernel here" in str(failure.value) and "Traceback" not in str(failure.value)
    # and nothing is printed as the process ends (nbclient registers a clean-up of the dead kernel at exit)
    code = ("from pathlib import Path\nfrom pipelines.io import StageError\nfrom pipelines.report import execute_notebook\n"
            f"try:\n    execute_notebook(Path({str(source)!r}), Path({str(config)!r}), Path({str(tmp_path)!r}), "
            "kernel_name='always-dies')\nexcept StageError as error:\n    print('stopped:', error)\n")
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "stopped: notebook 01_hello.py" in ended.stdout
    assert "Traceback" not in ended.stdout + ended.stderr and "ERROR" not in ended.stdout + ended.stderr

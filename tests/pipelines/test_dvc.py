"""The DVC pipeline: dvc.yaml matches the CLI and the config, and `dvc repro` really works.

The end-to-end test uses the session's small copy of the repository (tests/conftest.py):
`dvc repro` from a fresh clone runs every stage; a second run and `dvc status` find nothing
to do; changing one parameter (`rules.min_lift`) reruns only the stages downstream of it;
`dvc metrics show/diff` and `dvc plots show` work on the outputs.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from pipelines.run import STAGE_NAMES
from tests.conftest import ROOT, Project

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
CONFIG = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text(encoding="utf-8"))
STAGES = DVC_YAML["stages"]
ALL_STAGES = ("generate", *STAGE_NAMES)


def ran_stages(output: str) -> list[str]:
    """Stage names DVC says it ran, in order."""
    return re.findall(r"Running stage '([a-z_]+)'", output)


def out_paths(stage: dict[str, object], kinds: tuple[str, ...] = ("outs", "metrics", "plots")) -> list[str]:
    """The paths a stage declares it writes."""
    paths: list[str] = []
    for kind in kinds:
        for entry in stage.get(kind, []):  # type: ignore[union-attr]
            paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def lookup(config: dict[str, object], dotted: str) -> object:
    """The value of a dotted key in the config, or KeyError naming it."""
    value: object = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


# ---------------------------------------------------------------- dvc.yaml against the code and config


def test_dvc_yaml_has_one_stage_per_churn_command_in_pipeline_order() -> None:
    assert tuple(STAGES) == ALL_STAGES
    for name, stage in STAGES.items():
        assert stage["cmd"] == f"churn {name} --config configs/default.yaml", name


def test_every_param_is_a_key_of_the_config_file() -> None:
    for name, stage in STAGES.items():
        params = stage.get("params", [])
        assert params, f"stage {name} declares no params"
        for entry in params:
            assert list(entry) == ["configs/default.yaml"], f"{name}: params must come from configs/default.yaml"
            for key in entry["configs/default.yaml"]:
                lookup(CONFIG, key)


def test_every_stage_declares_real_inputs_and_outputs() -> None:
    produced: dict[str, str] = {}
    for name, stage in STAGES.items():
        assert out_paths(stage), f"stage {name} writes nothing"
        for path in out_paths(stage):
            assert path not in produced, f"{path} is written by {produced[path]} and {name}"
            produced[path] = name
        for dep in stage.get("deps", []):
            code = ROOT / dep
            if dep.split("/")[0] in ("pipelines", "models", "features", "notebooks"):
                assert code.exists(), f"stage {name}: code dependency {dep} does not exist"
    # every data dependency is produced by an earlier stage
    order = list(STAGES)
    for name, stage in STAGES.items():
        for dep in stage.get("deps", []):
            if dep.split("/")[0] in ("data", "reports"):
                producer = next((produced[p] for p in produced if dep == p or dep.startswith(p.rstrip("/") + "/")), None)
                assert producer is not None, f"stage {name}: nothing writes {dep}"
                assert order.index(producer) < order.index(name), f"{name} reads {dep} before {producer} writes it"


def test_metrics_and_plots_are_what_the_stages_write() -> None:
    metrics = [p for stage in STAGES.values() for p in out_paths(stage, ("metrics",))]
    assert "reports/train_metrics.json" in metrics
    assert all(re.fullmatch(r"reports/[a-z_]+\.json", p) for p in metrics), metrics
    train_outs = out_paths(STAGES["train"])
    for plot in DVC_YAML["plots"]:
        (title, spec), = plot.items()
        for path in spec["y"]:
            assert any(path.startswith(out.rstrip("/") + "/") for out in train_outs), f"{title}: {path}"
        template = spec.get("template")
        if template and not (ROOT / ".dvc" / "plots" / f"{template}.json").is_file():
            assert template in ("simple", "linear", "scatter", "bar_horizontal", "bar_horizontal_sorted")


def test_large_data_is_not_cached_and_mlflow_store_is_not_an_output() -> None:
    outputs = {next(iter(e)) if isinstance(e, dict) else e: (e[next(iter(e))] if isinstance(e, dict) else {})
               for stage in STAGES.values() for kind in ("outs", "metrics", "plots") for e in stage.get(kind, [])}
    for path in ("data/raw/demo", "data/features/train.parquet", "data/outputs/scores.parquet"):
        assert outputs[path].get("cache") is False, path
    assert not any("mlflow" in p or "mlartifacts" in p for p in outputs)


def test_stages_that_log_to_mlflow_never_come_from_the_run_cache() -> None:
    """DVC skips its run-cache for a stage with an uncached or persisted (non-metric, non-plot) output."""
    for name in ("train", "score", "rules", "complaints", "report"):
        outs = [e[next(iter(e))] for e in STAGES[name]["outs"] if isinstance(e, dict)]
        assert any(o.get("cache") is False or o.get("persist") for o in outs), name


# ---------------------------------------------------------------- dvc repro end to end


@pytest.mark.slow
def test_dvc_repro_runs_everything_then_nothing_then_only_downstream_of_a_changed_param(dvc_project: Project) -> None:
    first = dvc_project.first_repro
    assert first.returncode == 0, f"dvc repro failed\n{first.stdout[-4000:]}\n{first.stderr[-6000:]}"
    assert ran_stages(first.stdout) == list(ALL_STAGES)
    print(f"first dvc repro: {dvc_project.first_repro_seconds:.0f} s")

    # a second repro and the status find nothing to do
    assert "Data and pipelines are up to date." in dvc_project.dvc("status").stdout
    again = dvc_project.dvc("repro")
    assert ran_stages(again.stdout) == []
    assert "Data and pipelines are up to date." in again.stdout

    # metrics and plots work for comparing retrains
    shown = json.loads(dvc_project.dvc("metrics", "show", "--json").stdout)
    (workspace,) = [revision["data"] for revision in shown.values()]  # only the workspace ("" in DVC 3.6x)
    train_metrics = workspace["reports/train_metrics.json"]["data"]["metrics"]
    assert 0.5 < train_metrics["churn.roc_auc"] <= 1.0
    assert workspace["reports/rules_summary.json"]["data"]["settings"]["min_lift"] == CONFIG["rules"]["min_lift"]
    plots_dir = dvc_project.root / "plots_out"
    dvc_project.dvc("plots", "show", "-o", str(plots_dir))
    page = (plots_dir / "index.html").read_text(encoding="utf-8")
    for title in ("Cumulative gains", "Retention campaign profit", "Reliability (calibration)", "Feature importance"):
        assert title in page
    assert '"model": "lightgbm"' in page  # one line per model in the gains and profit plots
    assert len(list((plots_dir / "static").glob("*roc.png"))) == 1  # the train stage's PNG charts

    # change one rules parameter: only rules (and the report that reads its tables) rerun
    dvc_project.git("add", "dvc.lock")
    dvc_project.git("commit", "-q", "-m", "pipeline outputs")
    new_lift = CONFIG["rules"]["min_lift"] + 0.5
    dvc_project.edit_config("rules", "min_lift", new_lift)
    status = dvc_project.dvc("status").stdout
    assert re.findall(r"^(\w+):", status, flags=re.MULTILINE) == ["rules"], status
    rerun = dvc_project.dvc("repro")
    assert ran_stages(rerun.stdout) == ["rules", "report"]
    for name in ("generate", "validate", "features", "train", "score"):
        assert f"Stage '{name}' didn't change, skipping" in rerun.stdout
    diff = json.loads(dvc_project.dvc("metrics", "diff", "--json").stdout)
    change = diff["reports/rules_summary.json"]["settings.min_lift"]
    assert (change["old"], change["new"]) == (CONFIG["rules"]["min_lift"], new_lift)
    assert "reports/train_metrics.json" not in diff
    assert "Data and pipelines are up to date." in dvc_project.dvc("status").stdout


def test_dvc_plots_template_is_valid_json() -> None:
    template = json.loads((ROOT / ".dvc" / "plots" / "by_model.json").read_text(encoding="utf-8"))
    assert template["encoding"]["color"]["field"] == "model"
    assert template["data"]["values"] == "<DVC_METRIC_DATA>"

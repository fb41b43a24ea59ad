"""Every exit code, with the example the docs give for each failure, run through the real `churn` command.

The examples live in one place, benchmarks/hardening_cases.py (cases with `doc`); the table in
docs/data-contract.md is generated from them and must match, so docs and test cannot drift.
Each example runs in a fresh folder: the small generated CSV bank, or a copy of the project the
session's `dvc repro` built (tests/conftest.py). It must end with the documented exit code,
print the quoted message and name what is wrong, and print no Python traceback.
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks.hardening_cases import EXIT_CODES, documented, exit_code_table, make_bank, run_case
from tests.conftest import Project

ROOT = Path(__file__).resolve().parent.parent
CASES = documented()


def test_the_docs_table_of_exit_codes_is_generated_from_the_examples() -> None:
    text = (ROOT / "docs" / "data-contract.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- exit-codes:start[^>]*-->\n(.*?)<!-- exit-codes:end -->", text, re.S)
    assert found, "docs/data-contract.md lost its exit-codes table markers"
    assert found.group(1) == exit_code_table(), \
        "docs/data-contract.md's exit codes are out of date: paste benchmarks.hardening_cases.exit_code_table()"


def test_every_exit_code_has_an_example_in_the_docs_and_the_readme() -> None:
    assert {case.expect for case in CASES} == set(EXIT_CODES)
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    exits = readme.split("Exit codes:", 1)[1][:3000]
    for code in EXIT_CODES:
        assert re.search(rf"\b{code} ", exits), f"README's exit codes do not mention {code}"
    assert "docs/data-contract.md#exit-codes" in readme


@pytest.fixture(scope="module")
def outcomes(dvc_project: Project, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """Every documented example run once, side by side."""
    first = dvc_project.first_repro
    assert first.returncode == 0, f"dvc repro failed\n{first.stdout[-4000:]}\n{first.stderr[-6000:]}"
    work = tmp_path_factory.mktemp("exit-codes")
    project = work / "project"
    shutil.copytree(dvc_project.root, project, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", ".dvc", "mlartifacts", "plots_out"))
    (project / "mlartifacts").symlink_to(dvc_project.root / "mlartifacts")
    shutil.copy2(project / "configs" / "default.yaml", project / "config.yaml")
    bases = {"bank": make_bank(work / "bank"), "project": project}
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda item: run_case(item[1], work / f"case-{item[0]}", bases), enumerate(CASES)))
    return {str(result["name"]): result for result in results}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_documented_failure_exits_with_its_code_and_message(outcomes: dict[str, dict[str, object]], case) -> None:
    result = outcomes[case.name]
    output = str(result["output"])
    message = " ".join(output.split())
    assert "Traceback" not in output, output
    assert result["exit"] == case.expect, message[-2000:]
    assert result["outcome"] in ("clear error", "handled"), (result["outcome"], result["why"])
    assert case.says in message, f"expected {case.says!r} in: {message[-2000:]}"

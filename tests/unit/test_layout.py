"""The layers of the design hold: import-linter's contracts (pyproject.toml) are kept, they catch
what they are meant to (an upward import, Dagster in the core, an import of the definitions or
of an entry point, an import circle), and no import circle exists, lazy imports included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dagster_project.shell.dvc.code_deps import ImportGraph
from tests.conftest import REPO

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=root, capture_output=True, text=True, env={
            "PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(root),
        },
    )  # fmt: skip


def test_the_contracts_are_kept() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "6 kept, 0 broken" in done.stdout


def test_no_import_circle_lazy_imports_included() -> None:
    graph = ImportGraph()
    assert len(graph.files) > 80  # the whole package was read
    assert graph.cycles() == []


def test_the_import_graph_sees_a_circle_through_a_lazy_import(tmp_path: Path) -> None:
    shutil.copytree(REPO / "dagster_project", tmp_path / "dagster_project")
    with (tmp_path / "dagster_project" / "core" / "hashing.py").open("a") as handle:
        handle.write("\n\ndef later() -> None:\n    import dagster_project.core.paths  # noqa\n")
    cycles = ImportGraph(tmp_path / "dagster_project").cycles()
    assert ["dagster_project.core.hashing", "dagster_project.core.paths"] in cycles


# each contract, broken once (the layers, the shell's order, the definitions and the entry
# points, Dagster in the core, an import circle inside one folder)
VIOLATIONS = [
    ("models/wan.py", "import dagster_project.training.data", "not allowed to import"),
    ("dataset/cache.py", "import dagster_project.evaluation.report", "not allowed to import"),
    ("shell/assets/ingest.py", "import dagster_project.shell.sensors", "not allowed to import"),
    ("shell/ui.py", "import dagster_project.definitions", "dagster_project.shell.ui ->"),
    ("core/launch.py", "import dagster_project.cli.worker", "core.launch ->"),
    ("definitions.py", "import dagster_project.cli.materialize", "dagster_project.definitions ->"),
    ("training/trainer.py", "import dagster_pipes", "dagster_project.training.trainer ->"),
    ("core/shapes.py", "import dagster", "dagster_project.core.shapes -> dagster"),
    ("core/hashing.py", "import dagster_project.core.paths", "No cycles are allowed"),
]


@pytest.mark.parametrize(("module", "line", "broken"), VIOLATIONS)
def test_the_contracts_catch_a_violation(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copytree(REPO / "dagster_project", tmp_path / "dagster_project")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "dagster_project" / module).open("a") as handle:
        handle.write(f"\n\ndef later() -> None:\n    {line}  # noqa\n")  # lazy: caught too
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout[-3000:]

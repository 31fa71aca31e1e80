"""The layers of the design hold: import-linter's contracts (pyproject.toml) are kept, and they
catch what they are meant to: an upward import, and Dagster or Dagster Pipes in the core."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("models/wan.py", "import dagster_project.training.data", "not allowed to import"),
        ("dataset/cache.py", "import dagster_project.evaluation.report", "not allowed to import"),
        ("training/trainer.py", "import dagster_pipes", "dagster_project.training.trainer ->"),
        ("shapes.py", "import dagster", "dagster_project.shapes -> dagster"),
    ],
)
def test_the_contracts_catch_a_violation(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copytree(REPO / "dagster_project", tmp_path / "dagster_project")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "dagster_project" / module).open("a") as handle:
        handle.write(f"\n{line}  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout[-3000:]

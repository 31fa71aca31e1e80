"""The end-to-end tests' shared project: `make demo` once per test session.

Building it (a copy of the repository with the sample data tracked by DVC and the whole
pipeline run by `dvc repro`) costs about a minute, so it is built once for every worker of the
session (a file lock), and each test works in its own copy: `copy_demo` (the DVC project) or
`demo_data` (params.yaml and data/ only, a project without DVC).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from dagster_project.dataset.sample_data import write_sample_dataset
from tests.conftest import REPO

BIN = Path(sys.executable).parent
REPRO_LOG = ".repro.log"  # what the demo's first `dvc repro` printed


def copy_repo(target: Path) -> None:
    """The repo's files as git sees them (tracked + new, not ignored), without data outputs."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    for name in listed:
        if (REPO / name).is_file() and not name.startswith("data/"):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)


def run(command: list[str], cwd: Path) -> str:
    """Run a command in the project `cwd` with the venv first on PATH and the project's own
    Dagster instance; fails the test with its output unless it succeeds."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(cwd / "dagster_home"),
    }
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def build_demo(folder: Path) -> None:
    """What `make demo` does, in `folder`: the sample data, `dvc add`, `dvc repro`."""
    copy_repo(folder)
    run(["git", "init", "-q"], folder)
    write_sample_dataset(folder / "data" / "raw")
    run([str(BIN / "dvc"), "add", "-q", "data/raw"], folder)
    (folder / REPRO_LOG).write_text(run([str(BIN / "dvc"), "repro"], folder))


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The demo project, built once for the whole session (read it; change only copies)."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # pytest-xdist: the workers share their parent folder
        shared = shared.parent
    folder = shared / "demo"
    with FileLock(str(shared / "demo.lock")):
        if not (folder / REPRO_LOG).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build_demo(folder)
    return folder


def copy_demo(demo: Path, target: Path) -> Path:
    """A copy of the demo project (git, DVC and Dagster instance included) at `target`."""
    shutil.copytree(demo, target, symlinks=True, dirs_exist_ok=True)
    return target


def demo_data(demo: Path, target: Path) -> Path:
    """The demo's params.yaml and data/ at `target`: a project the pipeline has run in once,
    without DVC or an instance; returns its params.yaml."""
    shutil.copytree(demo / "data", target / "data", symlinks=True)
    shutil.copy(demo / "params.yaml", target / "params.yaml")
    return target / "params.yaml"

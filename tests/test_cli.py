"""The Dagster CLI path DVC uses: `dagster asset materialize --select` in a project folder."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

DAGSTER = str(Path(sys.executable).parent / "dagster")


def cli(project: Path, select: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(project / ".dagster_home")}
    (project / ".dagster_home").mkdir(exist_ok=True)
    (project / ".dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = [
        DAGSTER,
        "asset",
        "materialize",
        "-m",
        "dagster_project.definitions",
        "--select",
        select,
    ]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)


def test_antlr_runtime_is_the_one_dagster_parses_with() -> None:
    # dvc's hydra/omegaconf would pin 4.9, which breaks `--select` (ord() TypeError)
    assert version("antlr4-python3-runtime") == "4.13.2"


def test_select_materializes_assets_and_checks(project: Path) -> None:
    done = cli(project.parent, "videos,manifest,rejects")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (project.parent / "data" / "manifest.parquet").is_file()
    assert "Asset check 'manifest_contract' on 'manifest' passed" in done.stderr

    over = yaml.safe_load(project.read_text())
    over["train"]["steps"] = 400
    project.write_text(yaml.safe_dump(over))
    blocked = cli(project.parent, "training_plan,trained_model")
    assert blocked.returncode != 0
    assert "exposure_guard" in blocked.stderr and "88.9 times on average" in blocked.stderr
    assert not (project.parent / "data" / "train" / "model").exists()

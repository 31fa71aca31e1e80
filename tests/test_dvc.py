"""`dvc repro` in a temporary copy of the repo: everything runs once, then nothing.

Changing a training parameter re-runs training and evaluation only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dagster_project.sample_data import write_sample_dataset
from tests.conftest import REPO

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


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
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DAGSTER_HOME": str(cwd / "dagster_home"),
    }
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def test_dvc_repro_runs_once_then_only_what_changed(tmp_path: Path) -> None:
    copy_repo(tmp_path)
    run(["git", "init", "-q"], tmp_path)
    write_sample_dataset(tmp_path / "data" / "raw")
    run([str(BIN / "dvc"), "add", "-q", "data/raw"], tmp_path)

    first = run([str(BIN / "dvc"), "repro"], tmp_path)
    assert stages_run(first) == ["model", "ingest", "encode", "train", "evaluate", "registry"]
    assert stages_run(run([str(BIN / "dvc"), "repro"], tmp_path)) == []

    shown = run([str(BIN / "dvc"), "metrics", "show", "--json"], tmp_path)
    for name in ("val_loss", "diversity", "nearest_train_similarity_mean", "loss_last"):
        assert f'"{name}"' in shown

    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["lr"] = 0.002
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stages_run(run([str(BIN / "dvc"), "repro"], tmp_path)) == [
        "train",
        "evaluate",
        "registry",
    ]

    plots = run([str(BIN / "dvc"), "plots", "show", "--json"], tmp_path)
    assert "loss.csv" in plots and "evaluations.csv" in plots and "signs.png" in plots
    assert "dvclive/plots/metrics/train/loss.tsv" in plots  # per step, written as training goes

    # an experiment: `dvc exp run -S` changes a param, runs what it touches, and `dvc exp show`
    # lists the run with its params and final metrics (dvclive made no refs of its own before)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], tmp_path)
    assert run(["git", "for-each-ref", "refs/exps"], tmp_path).strip() == ""
    experiment = run([str(BIN / "dvc"), "exp", "run", "-S", "train.lr=0.003"], tmp_path)
    assert stages_run(experiment) == ["train", "evaluate", "registry"]
    table = json.loads(run([str(BIN / "dvc"), "exp", "show", "--json"], tmp_path))
    runs = [e for commit in table for e in (commit.get("experiments") or [])]
    assert len(runs) == 1
    [revision] = runs[0]["revs"]
    data = revision["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["lr"] == 0.003
    metrics = {k: v for f in data["metrics"].values() for k, v in f["data"].items()}
    assert {"val_loss", "loss_last"} <= set(metrics)

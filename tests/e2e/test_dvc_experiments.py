"""An experiment: `dvc exp run -S` changes a param, runs what it touches, and `dvc exp show`
lists the run with its params and final metrics (dvclive made no refs of its own before)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, copy_demo, run
from tests.e2e.test_dvc import stages_run

pytestmark = pytest.mark.slow


def test_an_experiment_runs_what_its_param_touches(demo_project: Path, tmp_path: Path) -> None:
    project = copy_demo(demo_project, tmp_path)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], project)
    assert run(["git", "for-each-ref", "refs/exps"], project).strip() == ""
    experiment = run([str(BIN / "dvc"), "exp", "run", "-S", "train.lr=0.003"], project)
    assert stages_run(experiment) == ["params", "train", "evaluate", "registry"]
    table = json.loads(run([str(BIN / "dvc"), "exp", "show", "--json"], project))
    runs = [e for commit in table for e in (commit.get("experiments") or [])]
    assert len(runs) == 1
    [revision] = runs[0]["revs"]
    data = revision["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["lr"] == 0.003
    metrics = {k: v for f in data["metrics"].values() for k, v in f["data"].items()}
    assert {"val_loss", "loss_last"} <= set(metrics)

"""`dvc repro` in a copy of the repo (the session's demo project): everything runs once, then
nothing; changing a training parameter re-runs training, evaluation and registration only (as
an experiment too), and editing code re-runs exactly the stages that run it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import BIN, REPRO_LOG, copy_demo, run

pytestmark = pytest.mark.slow

ALL = ["params", "model", "ingest", "encode", "train", "evaluate", "registry"]


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def test_dvc_repro_runs_once_then_only_what_changed(demo_project: Path, tmp_path: Path) -> None:
    assert stages_run((demo_project / REPRO_LOG).read_text()) == ALL
    project = copy_demo(demo_project, tmp_path)
    assert stages_run(run([str(BIN / "dvc"), "repro"], project)) == []

    shown = run([str(BIN / "dvc"), "metrics", "show", "--json"], project)
    for name in ("val_loss", "diversity", "nearest_train_similarity_mean", "loss_last"):
        assert f'"{name}"' in shown

    # a train.* change: params.yaml is checked again, then training, evaluation, registration
    params = project / "params.yaml"
    original = params.read_text()
    values = yaml.safe_load(original)
    values["train"]["lr"] = 0.002
    params.write_text(yaml.safe_dump(values, sort_keys=False))
    assert changed_stages(project) == {"params", "train"}  # evaluation etc. follow train's outs
    params.write_text(original)

    # ... run as an experiment: `dvc exp run -S` changes the param, runs what it touches, and
    # `dvc exp show` lists the run with its params and final metrics (dvclive made no refs of
    # its own before)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], project)
    assert run(["git", "for-each-ref", "refs/exps"], project).strip() == ""
    experiment = run([str(BIN / "dvc"), "exp", "run", "-S", "train.lr=0.002"], project)
    assert stages_run(experiment) == ["params", "train", "evaluate", "registry"]
    table = json.loads(run([str(BIN / "dvc"), "exp", "show", "--json"], project))
    runs = [e for commit in table for e in (commit.get("experiments") or [])]
    assert len(runs) == 1
    [revision] = runs[0]["revs"]
    data = revision["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["lr"] == 0.002
    metrics = {k: v for f in data["metrics"].values() for k, v in f["data"].items()}
    assert {"val_loss", "loss_last"} <= set(metrics)

    plots = run([str(BIN / "dvc"), "plots", "show", "--json"], project)
    assert "loss.csv" in plots and "evaluations.csv" in plots and "signs.png" in plots
    assert "dvclive/plots/metrics/train/loss.tsv" in plots  # per step, written as training goes


def changed_stages(project: Path) -> set[str]:
    """The stages `dvc status` says must run again."""
    return set(json.loads(run([str(BIN / "dvc"), "status", "--json"], project)))


# a file edited -> the stages that run it: directly, through imports (lazy ones too: the probe
# asset imports near-duplicate matching inside its function), or through the worker the
# training asset launches (timing.py)
EDITS = {
    "dagster_project/core/params.py": set(ALL),
    "dagster_project/core/paths.py": set(ALL),
    "dagster_project/shell/assets/train.py": {"train"},
    "dagster_project/registry/lineage.py": {"train", "registry"},  # warm starts read it
    "dagster_project/training/timing.py": {"train"},
    "dagster_project/dataset/near_duplicates.py": {"ingest"},
    "dagster_project/evaluation/report.py": {"evaluate"},
}


def test_a_code_change_reruns_exactly_the_stages_that_run_it(
    demo_project: Path, tmp_path: Path
) -> None:
    project = copy_demo(demo_project, tmp_path)
    assert changed_stages(project) == set()
    for module, stages in EDITS.items():
        source = project / module
        original = source.read_text()
        source.write_text(original + "# an edit\n")
        assert changed_stages(project) == stages, module
        source.write_text(original)
    assert changed_stages(project) == set()
    # bytecode Python writes beside the code (a stage importing a module no stage imported
    # before) is not a change, in a folder that is a dep (models) or beside a file that is
    for folder in {project / "dagster_project/models", *((project / m).parent for m in EDITS)}:
        (folder / "__pycache__").mkdir(exist_ok=True)
        (folder / "__pycache__" / "new.cpython-311.pyc").write_bytes(b"bytecode")
    assert changed_stages(project) == set()

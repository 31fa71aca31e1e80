"""Crash safety through the real paths, as a careless user breaks things: a `dvc repro` killed
with -9 blocks nothing (its run is released and the next one resumes it exactly), and an
invalid params.yaml costs no output, even under a bare `dvc repro`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.e2e.conftest import BIN, copy_demo, run

pytestmark = pytest.mark.slow


def set_params(project: Path, **sections: dict) -> None:
    values = yaml.safe_load((project / "params.yaml").read_text())
    for section, changes in sections.items():
        values[section].update(changes)
    (project / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))


def model_weights(project: Path) -> dict[str, torch.Tensor]:
    files = sorted((project / "data" / "train" / "model").glob("*.safetensors"))
    return {k: v for f in files for k, v in load_file(f).items()}


def test_a_killed_dvc_repro_blocks_nothing_and_resumes_exactly(
    demo_project: Path, tmp_path: Path
) -> None:
    # not the demo's run: trains from step 1, checkpoints every 10; long enough to be killed in
    another_run = {"lr": 0.002, "steps": 40}
    evaluations = {"every": 40}  # the kill and the resume are the point here
    reference = copy_demo(demo_project, tmp_path / "reference")
    set_params(reference, train=another_run, eval=evaluations)
    run([str(BIN / "dvc"), "repro", "train"], reference)

    project = copy_demo(demo_project, tmp_path / "killed")
    set_params(project, train=another_run, eval=evaluations)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "DAGSTER_HOME": str(project / "dagster_home")}  # fmt: skip
    repro = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "train"], cwd=project, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    first = project / "data" / "train" / "checkpoints" / "step-000010"  # the demo kept 20-40
    deadline = time.monotonic() + 300
    while not first.is_dir():
        assert repro.poll() is None, "dvc repro ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(repro.pid, signal.SIGKILL)  # dvc, the stage command and the training worker
    repro.wait()

    # the killed run still holds the training pool's slot: the next run releases it, resumes
    again = subprocess.run(
        [str(BIN / "dvc"), "repro", "train"], cwd=project, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    said = again.stdout + again.stderr
    assert again.returncode == 0, said[-3000:]
    assert "held a pool slot, but its process" in said and "marked failed" in said
    resumed = re.findall(r"resuming from the checkpoint at step (\d+)", said)
    assert len(resumed) == 1, said[-3000:]
    [step] = resumed
    assert 10 <= int(step) < 40  # killed mid-run, resumed there
    expected, got = model_weights(reference), model_weights(project)
    assert expected.keys() == got.keys() and expected
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key


def test_an_invalid_params_yaml_costs_no_output_even_under_bare_dvc_repro(
    demo_project: Path, tmp_path: Path
) -> None:
    project = copy_demo(demo_project, tmp_path)
    outputs = [
        "data/manifest.parquet",
        "data/models/base/transformer",
        "data/train/plan.json",
        "data/train/metrics.json",
        "data/train/model",
        "data/eval/metrics.json",
        "data/eval/report.md",
    ]
    assert all((project / name).exists() for name in outputs)
    set_params(project, train={"steps": -5}, model={"seed": 1})  # every stage would re-run
    failed = subprocess.run(
        [str(BIN / "dvc"), "repro"], cwd=project, capture_output=True, text=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    assert failed.returncode != 0
    assert "train.steps: Input should be greater than 0" in failed.stdout + failed.stderr
    missing = [name for name in outputs if not (project / name).exists()]
    assert missing == []

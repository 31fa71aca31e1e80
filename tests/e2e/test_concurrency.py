"""One training at a time, across processes; overlapping encode steps keep the cache whole.

Both go through `python -m dagster_project.cli.materialize` (what each DVC stage runs) on a real
instance whose dagster.yaml is the repository's: the `training` pool holds a second training
until the first is done, even though neither run passes through a run queue.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from dagster_project.cli.materialize import WATCH_ENV
from dagster_project.core.params import load_params
from tests.conftest import REPO, write_params
from tests.e2e.conftest import demo_data
from tests.materialize import materialize


def instance_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)):
        pass  # its storage is created once, not by two processes at the same moment
    return home


def launch(params: Path, keys: str, home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dagster_project.cli.materialize", keys, "--params", str(params)],
        cwd=params.parent,
        env={**os.environ, "DAGSTER_HOME": str(home), WATCH_ENV: "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def step_windows(home: Path, step: str) -> list[tuple[float, float]]:
    """(start, end) of `step` in every run of the instance."""
    windows = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            times = {
                r.dagster_event.event_type_value: r.timestamp
                for r in instance.all_logs(run.run_id)
                if r.dagster_event and r.step_key == step
            }
            if "STEP_START" in times:
                windows.append((times["STEP_START"], times["STEP_SUCCESS"]))
    return sorted(windows)


@pytest.mark.slow
def test_a_second_training_waits_for_the_first(demo_project: Path, tmp_path: Path) -> None:
    # the demo's base model and caches: only the two trainings run here
    project = demo_data(demo_project, tmp_path / "project")
    home = instance_home(tmp_path)
    runs = []
    for name in ("a", "b"):  # two runs, each its own output folder
        params = write_params(
            project.parent,
            train={"steps": 40, "output_dir": f"data/train_{name}"},
            eval={"every": 40},  # the waiting is the point here, not the evaluations
        )
        runs.append(params.rename(params.with_name(f"params_{name}.yaml")))
    launched = time.time()
    processes = [launch(params, "trained_model", home) for params in runs]
    said = [finish(process) for process in processes]
    (first_start, first_end), (second_start, second_end) = step_windows(home, "trained_model")
    assert first_end - launched > 5  # both were launched while the first trained
    assert second_start >= first_end  # ... and the second started only after it
    # the one that waited said who held the slot, and since when (every 2 s here, 30 s by default)
    waited = [s for s in said if "trained_model waits for pool 'training', held by run" in s]
    assert len(waited) == 1 and "(step trained_model, since 20" in waited[0]
    for name in ("a", "b"):
        assert (project.parent / "data" / f"train_{name}" / "model").is_dir()


@pytest.mark.slow
def test_overlapping_encode_steps_keep_the_cache_whole(project: Path, tmp_path: Path) -> None:
    assert materialize(project, "base_model,videos,manifest,rejects")
    home = instance_home(tmp_path)
    processes = [launch(project, "text_embeddings,video_latents", home) for _ in range(2)]
    for process in processes:
        finish(process)
    windows = step_windows(home, "video_latents")
    assert windows[1][0] < windows[0][1]  # the two encode steps did overlap
    p = load_params(project)
    verify = subprocess.run(
        [sys.executable, "-m", "dagster_project.cli.cache_tool", "verify",
         "--params", str(project)],
        cwd=project.parent, capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout
    assert "0 damaged, 0 leftover temp files" in verify.stdout
    for index in (p.data.text_index, p.data.latent_index):
        assert pl.read_parquet(p.path(index)).height == 14

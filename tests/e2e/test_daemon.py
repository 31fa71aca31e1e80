"""The daemon for real: with the `new_data` sensor on, clips dropped into the raw folder (one of
them written slowly) give exactly one run, launched and finished by the daemon, which encodes
only the new clips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml

from dagster_project.dataset.arrivals import observe
from dagster_project.video.write import write_mp4
from tests.conftest import REPO
from tests.e2e.conftest import demo_data

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def dagster(args: list[str], env: dict, cwd: Path) -> None:
    done = subprocess.run([str(BIN / "dagster"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def new_clip(path: Path, seed: int) -> None:
    """A clip no other clip is a copy of (smooth random colors), with its caption."""
    rng = np.random.default_rng(seed)
    fields = rng.integers(0, 256, (24, 4, 4, 3), dtype=np.uint8)
    write_mp4(np.kron(fields, np.ones((1, 16, 16, 1), dtype=np.uint8)), path, fps=16)
    path.with_suffix(".txt").write_text(f"flickering colored blocks, take {seed}\n")


def sensor_runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [r for r in instance.get_runs() if r.tags.get("dagster/sensor_name") == "new_data"]


def test_dropped_clips_give_one_run_of_only_the_new_clips(
    demo_project: Path, tmp_path: Path
) -> None:
    # the pipeline has run once in the demo project: caches and a model exist
    project = demo_data(demo_project, tmp_path / "project")
    root = project.parent
    values = yaml.safe_load(project.read_text())
    values["automation"].update(sensor_interval_seconds=1, settle_seconds=2.0)
    # the run retrains on the new clips: evaluated at the first and the last step only
    values["eval"].update(every=values["train"]["steps"], samples_per_prompt=2, max_prompts=1)
    project.write_text(yaml.safe_dump(values, sort_keys=False))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "VIDEO_TRAIN_PARAMS": str(project),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    workspace = tmp_path / "workspace.yaml"
    module = {"module_name": "dagster_project.definitions", "working_directory": str(root)}
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": module}]}))

    raw = root / "data" / "raw"
    seen = observe(raw)  # the sensor starts from the folder as the last run saw it
    common = ["-w", str(workspace)]
    dagster(["sensor", "cursor", "new_data", "--set",
             json.dumps({"seen": seen, "baseline": seen}), *common], env, root)  # fmt: skip
    dagster(["sensor", "start", "new_data", *common], env, root)
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", *common], env=env, cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(5)
        assert sensor_runs(home) == []  # nothing new: no run
        new_clip(raw / "train" / "fresh.mp4", seed=1)
        slow = raw / "train" / "slow.mp4"
        new_clip(tmp_path / "slow.mp4", seed=2)
        data = (tmp_path / "slow.mp4").read_bytes()
        slow.with_suffix(".txt").write_text("slowly uploaded colored noise\n")
        with slow.open("wb") as upload:  # a slow upload, in 4 parts
            for part in range(4):
                upload.write(data[part * len(data) // 4 : (part + 1) * len(data) // 4])
                upload.flush()
                time.sleep(1.0)
        # the run starts several processes, each importing torch, diffusers and dagster: 4 to
        # 5 minutes on this 2-core host when Python may not write bytecode (every import compiled)
        deadline = time.time() + 480
        while time.time() < deadline:
            runs = sensor_runs(home)
            if runs and all(r.is_finished for r in runs):
                time.sleep(6)  # a few more ticks: no second run
                break
            time.sleep(2)
        runs = sensor_runs(home)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    assert len(runs) == 1, [r.status for r in runs]
    assert runs[0].status == dg.DagsterRunStatus.SUCCESS
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("video_latents"))
        metadata = event.asset_materialization.metadata
    assert event.run_id == runs[0].run_id
    assert metadata["encoded"].value == 2  # the two new clips, nothing else

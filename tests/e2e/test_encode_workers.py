"""Encoding on several processes: the same entries as one process (equal tensors at equal
thread counts), long clips cut into windows, and a kill -9 mid-encode that leaves no partial
entry and a re-run that encodes only what is missing."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from safetensors.torch import load_file

from dagster_project.core.launch import launch_command
from dagster_project.core.params import load_params
from dagster_project.dataset.cache import cache_files, check_entry
from dagster_project.shell.assets.encode import ENCODE_WORKER
from tests.conftest import write_params
from tests.materialize import materialize

pytestmark = pytest.mark.slow

LONG_CLIPS = {"long_a.mp4": "testsrc", "long_b.mp4": "mandelbrot"}
LONG_FRAMES = 108  # 4.5 s at 24 fps: 72 frames at 16 fps, 4 windows of 17 (chunks)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, sample_raw: Path) -> Path:
    """The sample data plus two 4.5 s clips, probed (manifest) with the base model written."""
    folder = tmp_path_factory.mktemp("encode")
    raw = folder / "data" / "raw"
    shutil.copytree(sample_raw, raw)
    for name, source in LONG_CLIPS.items():
        target = raw / "train" / name
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"{source}=size=96x96:rate=24",
             "-frames:v", str(LONG_FRAMES), "-pix_fmt", "yuv420p", f"file:{target}"],
            check=True,
        )  # fmt: skip
        target.with_suffix(".txt").write_text(f"a long {source} recording")
    params = write_params(folder)
    assert materialize(params, selection="base_model,videos,manifest,rejects").success
    return folder


def params_for(project: Path, name: str, nproc: int) -> Path:
    """The project's params with its own cache folder and `nproc` encoding processes of one
    thread each."""
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["data"]["cache_dir"] = f"data/cache_{name}"
    data["encode"] = {"nproc_per_node": nproc, "num_threads": 1}
    path = project / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def encode(params: Path) -> subprocess.Popen:
    nproc = load_params(params).encode.nproc_per_node
    command = launch_command(ENCODE_WORKER, str(params), nproc)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, cwd=params.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def entries(params: Path) -> dict[str, Path]:
    """The cache's entries by their path inside it; any temporary file of a killed writer is
    left aside (never under an entry's name)."""
    found, _ = cache_files(load_params(params).cache_files.cache_dir)
    return {p.relative_to(p.parents[2]).as_posix(): p for p in found}


def test_two_processes_write_the_entries_of_one(project: Path) -> None:
    manifest = pl.read_parquet(project / "data" / "manifest.parquet")
    windows = dict(zip(manifest["path"], manifest["windows"], strict=True))
    assert {windows[f"train/{name}"] for name in LONG_CLIPS} == {4}
    assert {n for path, n in windows.items() if not path.startswith("train/long_")} == {1}

    one, two = params_for(project, "one", 1), params_for(project, "two", 2)
    finish(encode(one))
    output = finish(encode(two))
    for rank in (0, 1):
        assert re.search(rf"rank {rank} of 2: encoded [1-9]\d* windows", output), output
    single, double = entries(one), entries(two)
    assert len(single) == manifest["windows"].sum()  # one entry per window
    assert single.keys() == double.keys()
    for name, path in single.items():
        a, b = load_file(path), load_file(double[name])
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), name


def test_a_kill_mid_encode_leaves_no_partial_entry_and_the_rerun_finishes_the_rest(
    project: Path,
) -> None:
    params = params_for(project, "killed", 1)
    total = pl.read_parquet(project / "data" / "manifest.parquet")["windows"].sum()
    process = encode(params)
    deadline = time.monotonic() + 300
    while len(entries(params)) < 3:
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = entries(params)
    assert 3 <= len(done) < total, "killed too late"
    assert all(check_entry(path) is None for path in done.values())  # every entry whole

    output = finish(encode(params))
    assert f"encoded {total - len(done)} windows, {len(done)} already cached" in output, output
    assert len(entries(params)) == total

"""The content-addressed cache: exact encoder work for each kind of change; kill -9 safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from dagster_project.cli.cache_tool import main as cache_tool
from dagster_project.core.params import load_params
from dagster_project.dataset.cache import cache_files, check_entry
from tests.materialize import materialize

pytestmark = pytest.mark.slow

ENCODE = "videos,manifest,rejects,text_embeddings,video_latents"


def counts(result: dg.ExecuteInProcessResult) -> dict[str, int]:
    assert result.success

    def value(node: str, key: str) -> int:
        [materialization] = [
            m for m in result.asset_materializations_for_node(node) if key in m.metadata
        ]
        return materialization.metadata[key].value

    return {
        "probed": value("probe", "probed_now"),
        "texts": value("text_embeddings", "encoded"),
        "latents": value("video_latents", "encoded"),
    }


def new_clip(raw: Path, name: str, caption: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc2=size=96x96:rate=24", "-vf", "hue=h=90", "-frames:v", "40",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(raw / name)],
        check=True,
    )  # fmt: skip
    (raw / name).with_suffix(".txt").write_text(caption)


def test_each_change_costs_exactly_its_share(project: Path) -> None:
    raw = project.parent / "data" / "raw"
    assert materialize(project, selection="base_model").success
    assert counts(materialize(project, selection=ENCODE)) == {
        "probed": 14,
        "texts": 14,
        "latents": 14,
    }
    assert counts(materialize(project, selection=ENCODE)) == {"probed": 0, "texts": 0, "latents": 0}

    new_clip(raw, "new_clip.mp4", "a hue-shifted test pattern")
    assert counts(materialize(project, selection=ENCODE)) == {"probed": 1, "texts": 1, "latents": 1}

    (raw / "train" / "life_square.txt").write_text("conway's game of life, seen from above")
    assert counts(materialize(project, selection=ENCODE)) == {"probed": 0, "texts": 1, "latents": 0}

    p = load_params(project)
    before = pl.read_parquet(p.path(p.data.manifest))
    params = yaml.safe_load(project.read_text())
    params["buckets"]["sizes"] = [[17, 64, 64], [17, 48, 96], [17, 80, 48]]  # was 17x48x80
    project.write_text(yaml.safe_dump(params))
    changed = counts(materialize(project, selection=ENCODE))
    after = pl.read_parquet(p.path(p.data.manifest))
    moved = before.join(after, on="sha256").filter(pl.col("bucket") != pl.col("bucket_right"))
    assert 0 < moved.height < 15
    assert changed == {"probed": 0, "texts": 0, "latents": moved.height}


def test_kill_9_leaves_no_partial_entry_and_the_rerun_finishes_the_rest(project: Path) -> None:
    folder = project.parent
    assert materialize(project, selection="base_model,videos,manifest,rejects").success
    cache = folder / "data" / "cache"  # only latents are encoded here
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
               "dagster_project.definitions", "--select", "video_latents"]  # fmt: skip
    env = {**os.environ, "DAGSTER_HOME": str(folder / "dagster_home")}
    (folder / "dagster_home").mkdir()
    writer = subprocess.Popen(
        command, cwd=folder, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(cache_files(cache)[0]) < 3:
        assert writer.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait()

    entries, _ = cache_files(cache)
    assert 3 <= len(entries) < 14, "the writer must be killed mid-way"
    assert [check_entry(e) for e in entries] == [None] * len(entries)
    rerun = materialize(project, selection="video_latents")
    [m] = rerun.asset_materializations_for_node("video_latents")
    assert m.metadata["encoded"].value == 14 - len(entries)
    assert cache_tool(["verify", "--params", str(project)]) == 0


def test_prune_removes_unreferenced_damaged_and_leftover_files(project: Path) -> None:
    assert materialize(project, selection="base_model," + ENCODE).success
    cache = project.parent / "data" / "cache"
    entries, _ = cache_files(cache)
    orphan = cache / "latents" / "ff" / ("f" * 64 + ".safetensors")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(entries[0].read_bytes())
    leftover = entries[1].parent / ".half-written.safetensors.tmp"
    leftover.write_bytes(b"partial")
    damaged = entries[2]
    damaged.write_bytes(damaged.read_bytes()[:100])

    assert cache_tool(["verify", "--params", str(project)]) == 1
    assert cache_tool(["prune", "--params", str(project)]) == 0
    remaining, leftovers = cache_files(cache)
    assert not orphan.exists() and not leftover.exists() and not damaged.exists()
    assert len(remaining) == len(entries) - 1 and not leftovers
    assert cache_tool(["verify", "--params", str(project)]) == 0

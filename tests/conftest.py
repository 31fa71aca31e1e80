"""Shared fixtures: a project folder with the sample data and its own params.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from dagster_project.definitions import build_definitions
from dagster_project.sample_data import write_sample_dataset

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def write_block_clip(path: Path, seed: int, frames: int = 24, side: int = 96) -> Path:
    """A clip of its own content: 4x4 random color blocks (from `seed`) drifting right."""
    import numpy as np

    from dagster_project.video.write import write_mp4

    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    canvas = np.kron(grid, np.ones((side // 2, side // 2, 1), dtype=np.uint8))
    shift = int(rng.integers(1, 3))
    video = np.stack([np.roll(canvas, shift * t, axis=1)[:side, :side] for t in range(frames)])
    write_mp4(video, path, fps=16)
    return path


def write_params(folder: Path, **overrides: dict) -> Path:
    """params.yaml of the repo, with sections overridden, written into `folder`."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section] = {**params.get(section, {}), **values}
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def materialize(params_path: Path, selection: str | None = None) -> dg.ExecuteInProcessResult:
    """Run the project's assets (and their checks) in-process against `params_path`.

    `selection` is a comma-separated list of asset keys, as on the CLI; None runs the
    `pipeline` job (everything but the on-demand exposure sweep).
    """
    defs = build_definitions(str(params_path))
    if selection is None:
        return defs.resolve_job_def("pipeline").execute_in_process(raise_on_error=False)
    job = defs.resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey(k) for k in selection.split(",")]
    return job.execute_in_process(asset_selection=keys, raise_on_error=False)


@pytest.fixture(scope="session")
def sample_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample dataset, generated once per test session."""
    raw = tmp_path_factory.mktemp("sample") / "raw"
    write_sample_dataset(raw)
    return raw


@pytest.fixture
def project(tmp_path: Path, sample_raw: Path) -> Path:
    """A fresh project folder: data/raw holds the sample clips; returns its params.yaml."""
    shutil.copytree(sample_raw, tmp_path / "data" / "raw")
    return write_params(tmp_path)

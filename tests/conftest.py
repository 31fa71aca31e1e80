"""Shared fixtures: a project folder with the sample data and its own params.yaml.

Nothing here loads Dagster: the unit tests (tests/unit/) never pay for it. Tests that run
assets import `tests.materialize`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from dagster_project.dataset.sample_data import write_sample_dataset

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


# The slowest files first (their measured order, docs/benchmarks.md), so that `make test`'s
# workers (pytest-xdist, one file at a time, `--no-loadscope-reorder`) end together; test_dvc
# first: it builds the end-to-end tests' shared demo project while the others run the slow
# tests that do not need it, then those that do (they wait for it on its lock).
SLOWEST_FIRST = [
    "e2e/test_dvc.py",
    "e2e/test_resume.py",
    "e2e/test_pipeline.py",
    "e2e/test_overfitting.py",
    "e2e/test_registry.py",
    "e2e/test_dvc_sync.py",
    "e2e/test_concurrency.py",
    "e2e/test_ui.py",
    "e2e/test_daemon.py",
    "e2e/test_crash_safety.py",
    "e2e/test_encode_workers.py",
    "e2e/test_cache.py",
    "e2e/test_cli.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(SLOWEST_FIRST)}
    tests = Path(__file__).parent

    def position(item: pytest.Item) -> int:
        return rank.get(item.path.relative_to(tests).as_posix(), len(rank))

    items.sort(key=position)  # stable: the rest keep their order

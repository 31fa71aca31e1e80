"""The UI in a real browser (Playwright, Debian's Chromium): every asset in the graph, a
materialization started from the UI succeeds, the report's plots and the sample preview render
in the evaluation asset's metadata."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dagster_project.definitions import build_definitions
from dagster_project.shell.dvc.stages import asset_groups
from dagster_project.shell.ui_tour import IMAGES, served, tour
from tests.conftest import REPO
from tests.e2e.conftest import demo_data

pytestmark = pytest.mark.slow


def test_the_ui_shows_the_graph_runs_a_materialization_and_renders_the_report(
    demo_project: Path, tmp_path: Path
) -> None:
    project = demo_data(demo_project, tmp_path / "project")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with served(project, home) as base:
        assert base.startswith("http://127.0.0.1:")
        groups = asset_groups(build_definitions(str(project)).resolve_asset_graph())
        seen = tour(base, groups, home)
    shown = {key for name, keys in seen.items() if name.startswith("group:") for key in keys}
    assert {"base_model", "videos", "manifest", "trained_model", "evaluation"} <= shown
    assert {"model_registry", "exposure_sweep"} <= shown  # the registry and the on-demand sweep
    assert seen["run"] == "SUCCESS"
    for key in IMAGES:
        assert seen[f"image:{key}"] > 0, key  # decoded and laid out by the browser

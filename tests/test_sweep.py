"""The exposure sweep: on demand only, and on a tiny plan it writes its table, plot and
recommendation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from dagster_project.definitions import build_definitions
from dagster_project.dvc_stages import render
from dagster_project.evaluation.sweep import milestone_steps, recommend
from dagster_project.params import GuardParams, load_params
from tests.conftest import materialize

CACHED = "base_model,videos,manifest,rejects,text_embeddings,video_latents"


def row(step: int, exposures: float, val_loss: float, level: str) -> dict:
    return {"step": step, "exposures": exposures, "val_loss": val_loss, "level": level}


def test_the_recommendation_is_the_best_loss_before_the_onset() -> None:
    rows = [
        row(0, 0.0, 2.0, "healthy"),
        row(10, 5.0, 1.5, "healthy"),
        row(20, 10.0, 1.2, "healthy"),
        row(40, 20.0, 1.3, "healthy"),
        row(50, 25.0, 1.1, "watch"),  # lower, but past the onset
    ]
    advice = recommend(rows, contents=4, step_batch=2, guard=GuardParams(max_exposures=50))
    assert advice["onset_exposures"] == 25.0 and advice["onset_level"] == "watch"
    assert (advice["recommended_steps"], advice["recommended_exposures"]) == (20, 10.0)
    assert advice["guard_limit_over_onset"] == 2.0
    clean = recommend(rows[:4], 4, 2, GuardParams())
    assert clean["onset_exposures"] is None and clean["recommended_steps"] == 20
    assert milestone_steps([5, 10], contents=9, step_batch=2) == [23, 45]


def test_the_sweep_is_on_demand_only(project: Path) -> None:
    defs = build_definitions(str(project))
    pipeline = defs.resolve_job_def("pipeline")
    keys = {node.name for node in pipeline.graph.node_defs}
    assert "trained_model" in " ".join(keys) and "exposure_sweep" not in " ".join(keys)
    assert "sweep" not in render(defs)["stages"]
    assert dg.AssetKey("exposure_sweep") in defs.resolve_asset_graph().get_all_asset_keys()


@pytest.mark.slow
def test_the_sweep_writes_its_curve_and_recommendation(project: Path) -> None:
    settings = yaml.safe_load(project.read_text())
    settings["sweep"] = {"milestones": [2, 4], "subsets": [0.5, 1.0], "output_dir": "data/sweep"}
    settings["eval"].update(samples_per_prompt=2, max_prompts=1, inference_steps=2)
    project.write_text(yaml.safe_dump(settings, sort_keys=False))
    assert materialize(project, CACHED).success
    result = materialize(project, "exposure_sweep")
    assert result.success
    p = load_params(project)
    out = p.sweep_outputs
    table = pl.read_csv(out.table)
    train = pl.read_parquet(p.path(p.data.manifest)).filter(pl.col("split") == "train")
    contents = train["content"].n_unique()
    for fraction in (0.5, 1.0):
        runs = table.filter(pl.col("subset") == fraction)
        expected = milestone_steps([2, 4], math.ceil(fraction * contents), 2)
        assert runs["step"].to_list() == [0, *expected]  # step 0, then each milestone
        assert runs["exposures"][1] >= 2 and runs["exposures"][2] >= 4
    advice = json.loads(out.recommendation.read_text())
    assert advice["contents"] == contents and advice["guard_max_exposures"] == 50
    assert advice["recommended_steps"] in (None, *milestone_steps([2, 4], contents, 2))
    assert advice["train_seconds"] > 0 and advice["steps"] > 0
    assert out.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "# Exposure sweep" in out.report.read_text()
    [materialization] = result.asset_materializations_for_node("exposure_sweep")
    assert "curve" in materialization.metadata

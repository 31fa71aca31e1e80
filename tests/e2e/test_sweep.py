"""The exposure sweep on a tiny plan writes its table, plot and recommendation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
import yaml

from dagster_project.core.params import load_params
from dagster_project.evaluation.sweep import milestone_steps
from tests.materialize import materialize

CACHED = "base_model,videos,manifest,rejects,text_embeddings,video_latents"


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

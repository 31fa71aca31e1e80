"""The split through the pipeline: validation clips never reach training."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from dagster_project.core.params import load_params
from dagster_project.training.data import clip_table
from tests.materialize import materialize


def test_validation_clips_never_reach_training(project: Path) -> None:

    assert materialize(
        project, selection="base_model,videos,manifest,rejects,text_embeddings,video_latents"
    ).success
    p = load_params(project)
    manifest = pl.read_parquet(p.path(p.data.manifest))
    val = set(manifest.filter(pl.col("split") == "val")["sha256"])
    assert val
    assert not val & set(clip_table(p.cache_files, "train")["sha256"])

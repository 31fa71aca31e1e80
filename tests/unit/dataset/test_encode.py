"""Encoding latents: a clip that cannot be decoded is reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def test_a_clip_that_cannot_be_decoded_is_reported_not_fatal(
    sample_raw: Path, tmp_path: Path
) -> None:
    from dagster_project.core.params import ModelParams
    from dagster_project.core.paths import BaseModelFiles
    from dagster_project.core.shapes import Bucket
    from dagster_project.dataset.cache import TensorCache
    from dagster_project.dataset.encode import cache_latents
    from dagster_project.dataset.ingest import discover_videos
    from dagster_project.dataset.manifest import ManifestRules, build_manifest
    from dagster_project.models.wan import WanSpec

    buckets = [Bucket(17, 64, 64), Bucket(17, 48, 80), Bucket(17, 80, 48)]
    videos = discover_videos(sample_raw, [(".", "auto")])
    manifest, _ = build_manifest(videos, sample_raw, ManifestRules(buckets, 16.0, 0.2)).tables()
    # a bucket longer than the clip: ffmpeg runs out of frames mid-clip
    manifest = manifest.with_columns(
        bucket=pl.when(pl.col("path") == "validation/life_tall.mp4").then(pl.lit("65x80x48"))
        .otherwise(pl.col("bucket"))
    )  # fmt: skip
    base = BaseModelFiles(tmp_path / "base")
    WanSpec.write_base_model(ModelParams(), 384, base)
    index, stats = cache_latents(
        manifest, sample_raw, TensorCache(tmp_path, "latents"), WanSpec(base), 16.0
    )
    assert stats.encoded == 13
    [failure] = index.filter(pl.col("error").is_not_null()).to_dicts()
    assert failure["latent_key"] is None
    assert "validation/life_tall.mp4" in failure["error"] and "frames" in failure["error"]

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


def test_a_long_clip_gives_one_entry_per_window(tmp_path: Path) -> None:
    import subprocess

    from dagster_project.core.params import ModelParams
    from dagster_project.core.paths import BaseModelFiles
    from dagster_project.core.shapes import Bucket
    from dagster_project.dataset.cache import TensorCache, load_entry
    from dagster_project.dataset.encode import cache_latents
    from dagster_project.dataset.ingest import discover_videos
    from dagster_project.dataset.manifest import ManifestRules, build_manifest
    from dagster_project.dataset.windows import WindowRule
    from dagster_project.models.wan import WanSpec

    raw = tmp_path / "raw"
    raw.mkdir()
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=24",
         "-frames:v", "84", "-pix_fmt", "yuv420p", f"file:{raw / 'long.mp4'}"],
        check=True,
    )  # fmt: skip
    (raw / "long.txt").write_text("a long test pattern")
    rules = ManifestRules([Bucket(17, 64, 64)], 16.0, 0.0)  # 84 frames at 24 fps: 56 at 16
    manifest, _ = build_manifest(discover_videos(raw, [(".", "auto")]), raw, rules).tables()
    assert manifest["windows"].to_list() == [3]
    base = BaseModelFiles(tmp_path / "base")
    WanSpec.write_base_model(ModelParams(), 384, base)
    vae = WanSpec(base)
    cache = TensorCache(tmp_path, "latents")

    index, stats = cache_latents(manifest, raw, cache, vae, 16.0, WindowRule("chunks", 16))
    assert stats.encoded == 3 and index["window"].to_list() == [0, 17, 34]
    assert index["latent_key"].n_unique() == 3
    # the first window is the clip's head: its entry is the one `head` reads
    head, again = cache_latents(manifest, raw, cache, vae, 16.0, WindowRule("head", 16))
    assert (again.encoded, again.cached) == (0, 1)
    assert head["latent_key"].to_list() == index["latent_key"].to_list()[:1]
    first, second = (load_entry(cache.path(k), k) for k in index["latent_key"].to_list()[:2])
    assert not all(first[name].equal(second[name]) for name in first)  # other frames

"""The sample dataset: what holds on any ffmpeg build (names, frames, sizes, split, buckets).

Encoded bytes, and so each clip's sha256 and file size, differ between ffmpeg builds: nothing
here (or in any other test) depends on them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl

from dagster_project.core.hashing import sha256_file
from dagster_project.core.params import load_params
from dagster_project.dataset.ingest import discover_videos
from dagster_project.dataset.manifest import ManifestRules, build_manifest
from dagster_project.dataset.sample_data import write_sample_dataset
from dagster_project.video.probe import probe_video
from tests.conftest import REPO

# name -> (split folder, width, height, frames), as the generator is asked to render them
EXPECTED = {
    "testsrc2_wide": ("train", 160, 96, 48),
    "testsrc2_tall": ("train", 72, 128, 40),
    "testsrc_square": ("validation", 96, 96, 36),
    "mandelbrot_square": ("train", 96, 96, 48),
    "mandelbrot_wide": ("validation", 160, 96, 44),
    "life_square": ("train", 96, 96, 50),
    "life_tall": ("validation", 72, 128, 44),
    "cellauto_wide": ("train", 128, 72, 46),
    "smptebars_wide": ("train", 128, 72, 36),
    "gradients_square": ("train", 96, 96, 42),
    "rgbtestsrc_wide": ("train", 160, 96, 40),
    "yuvtestsrc_tall": ("train", 72, 128, 48),
    "sierpinski_tall": ("train", 72, 128, 40),
    "color_box_wide": ("train", 128, 72, 50),
}
TWO_PROCESS_BATCH = 4  # test_pipeline's torchrun test: batch 2 x 2 processes, one bucket


def test_sample_dataset_is_the_same_on_any_ffmpeg_build(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    videos = write_sample_dataset(raw)
    assert {v.stem: v.parent.name for v in videos} == {k: e[0] for k, e in EXPECTED.items()}
    # only videos and captions, no temporary files left behind
    files = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file())
    assert files == sorted(
        f"{e[0]}/{k}{ext}" for k, e in EXPECTED.items() for ext in (".mp4", ".txt")
    )

    for video in videos:
        _, width, height, frames = EXPECTED[video.stem]
        info = probe_video(video)
        assert (info.width, info.height, info.frame_count) == (width, height, frames), video
        assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
        caption = video.with_suffix(".txt").read_text(encoding="utf-8")
        assert caption.strip() and len(caption.strip().splitlines()) == 1

    # the split follows the folders, whatever the bytes hash to; every bucket can fill a batch
    p = load_params(REPO / "params.yaml")
    buckets = p.bucket_list
    found = discover_videos(raw, [(".", "auto")])
    manifest, rejects = build_manifest(
        found, raw, ManifestRules.of(p.data, buckets, p.fps)
    ).tables()
    assert rejects.is_empty(), rejects.to_dicts()
    splits = dict(zip(manifest["path"], manifest["split"], strict=True))
    expected_split = {"train": "train", "validation": "val"}
    assert splits == {f"{e[0]}/{k}.mp4": expected_split[e[0]] for k, e in EXPECTED.items()}
    # short clips: one training window each under the default frame_extraction (chunks)
    assert p.data.frame_extraction == "chunks" and set(manifest["windows"]) == {1}
    per_bucket = Counter(manifest.filter(pl.col("split") == "train")["bucket"])
    assert len(per_bucket) == len(buckets), per_bucket
    assert min(per_bucket.values()) >= p.train.batch_size, per_bucket
    assert max(per_bucket.values()) >= TWO_PROCESS_BATCH, per_bucket


def test_same_build_same_bytes(tmp_path: Path) -> None:
    """One ffmpeg build renders the same bytes twice (single thread, bitexact)."""
    first = write_sample_dataset(tmp_path / "a")
    second = write_sample_dataset(tmp_path / "b")
    assert [sha256_file(p) for p in first] == [sha256_file(p) for p in second]

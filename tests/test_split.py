"""The train/validation split is a function of content alone: stable as the dataset grows."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dagster_project.dataset.buckets import Bucket
from dagster_project.dataset.ingest import discover_videos
from dagster_project.dataset.manifest import build_manifest, split_of
from dagster_project.params import load_params
from dagster_project.training.data import clip_table
from tests.conftest import materialize

shas = st.binary(min_size=1, max_size=16).map(lambda b: hashlib.sha256(b).hexdigest())
BUCKETS = [Bucket(17, 64, 64), Bucket(17, 48, 80), Bucket(17, 80, 48)]


@given(st.lists(shas, unique=True), st.lists(shas, unique=True), st.floats(0, 0.99))
def test_adding_videos_never_moves_a_video(
    before: list[str], added: list[str], fraction: float
) -> None:
    def splits(videos: list[str]) -> dict[str, str]:
        return {sha: split_of(sha, f"{sha}.mp4", fraction, frozenset()) for sha in videos}

    old, new = splits(before), splits(before + added)
    assert all(new[sha] == split for sha, split in old.items())


@settings(max_examples=25)
@given(st.integers(0, 2**32), st.sampled_from([0.1, 0.2, 0.5]))
def test_the_fraction_is_honoured(offset: int, fraction: float) -> None:
    videos = [hashlib.sha256(f"{offset}-{i}".encode()).hexdigest() for i in range(2000)]
    val = sum(split_of(sha, "x.mp4", fraction, frozenset()) == "val" for sha in videos)
    assert abs(val / len(videos) - fraction) < 0.05


@given(st.lists(shas, min_size=1, unique=True), st.data())
def test_an_explicit_list_decides_alone(videos: list[str], data: st.DataObject) -> None:
    chosen = data.draw(st.sets(st.sampled_from(videos), min_size=1))
    listed = frozenset(chosen)
    for sha in videos:
        assert split_of(sha, "x.mp4", 0.5, listed) == ("val" if sha in chosen else "train")
    assert split_of(videos[0], "named.mp4", 0.0, frozenset({"named.mp4"})) == "val"


def test_manifest_splits_survive_new_videos(sample_raw: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    half = sorted(sample_raw.glob("*.mp4"))[:7]
    for video in half:
        for file in (video, video.with_suffix(".txt")):
            shutil.copy(
                file, data / file.name if data.exists() else (data.mkdir() or data / file.name)
            )
    first, _, _ = build_manifest(
        discover_videos(data, [(".", "auto")]), data, BUCKETS, 16.0, 0.3, 9, 32
    )
    shutil.copytree(sample_raw, data, dirs_exist_ok=True)
    second, _, _ = build_manifest(
        discover_videos(data, [(".", "auto")]), data, BUCKETS, 16.0, 0.3, 9, 32
    )
    assert second.height == 14
    joined = first.join(second, on="sha256", suffix="_after")
    assert joined.height == 7
    assert (joined["split"] == joined["split_after"]).all()


def test_validation_clips_never_reach_training(project: Path) -> None:

    assert materialize(
        project, selection="base_model,videos,manifest,rejects,text_embeddings,video_latents"
    ).success
    p = load_params(project)
    manifest = pl.read_parquet(p.path(p.data.manifest))
    val = set(manifest.filter(pl.col("split") == "val")["sha256"])
    assert val
    assert not val & set(clip_table(p, "train")["sha256"])


def test_split_problems_name_empty_splits_and_unmatched_entries(sample_raw: Path) -> None:
    from dagster_project.dataset.schema import split_problems

    data = sample_raw
    manifest, _, _ = build_manifest(
        discover_videos(data, [(".", "auto")]), data, BUCKETS, 16.0, 0.2, 9, 32,
        val_files=["life_tall.mp4", "nope.mp4"],
    )  # fmt: skip
    assert manifest.filter(pl.col("split") == "val")["path"].to_list() == ["life_tall.mp4"]
    assert split_problems(manifest, ["life_tall.mp4", "nope.mp4"]) == [
        "data.val_files entries match no clip: nope.mp4"
    ]
    everything_train = manifest.with_columns(split=pl.lit("train"))
    assert split_problems(everything_train, []) == ["no clip in the val split"]

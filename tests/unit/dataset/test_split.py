"""The train/validation split is a function of content alone: stable as the dataset grows."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dagster_project.core.shapes import Bucket
from dagster_project.dataset.ingest import discover_videos
from dagster_project.dataset.manifest import ManifestRules, build_manifest
from dagster_project.dataset.split import split_of
from tests.conftest import write_block_clip

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


def flat_copy(raw: Path, target: Path, count: int | None = None) -> Path:
    """The first `count` sample clips and captions, out of their split folders: split by hash."""
    target.mkdir(parents=True, exist_ok=True)
    for video in sorted(raw.rglob("*.mp4"), key=lambda v: v.name)[:count]:
        for file in (video, video.with_suffix(".txt")):
            shutil.copy(file, target / file.name)
    return target


def test_manifest_splits_survive_new_videos(sample_raw: Path, tmp_path: Path) -> None:
    data = flat_copy(sample_raw, tmp_path / "data", count=7)
    first, _ = build_manifest(
        discover_videos(data, [(".", "auto")]), data, ManifestRules(BUCKETS, 16.0, 0.3)
    ).tables()
    flat_copy(sample_raw, data)
    second, _ = build_manifest(
        discover_videos(data, [(".", "auto")]), data, ManifestRules(BUCKETS, 16.0, 0.3)
    ).tables()
    assert second.height == 14
    joined = first.join(second, on="sha256", suffix="_after")
    assert joined.height == 7
    assert (joined["split"] == joined["split_after"]).all()


def test_split_folders_fix_the_split_and_the_rest_follows_params(
    sample_raw: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(sample_raw, data)
    # outside the split folders, data.val_files decides (clips of their own content)
    for seed, name in enumerate(("extra_a", "extra_b")):
        write_block_clip(data / f"{name}.mp4", seed)
        (data / f"{name}.txt").write_text(f"an extra clip {name}")
    videos = discover_videos(data, [(".", "auto")])
    manifest, rejects = build_manifest(
        videos, data, ManifestRules(BUCKETS, 16.0, 0.0, val_files=("extra_b.mp4",))
    ).tables()
    assert rejects.is_empty(), rejects.to_dicts()
    split = dict(zip(manifest["path"], manifest["split"], strict=True))
    assert {path: split[path] for path in ("extra_a.mp4", "extra_b.mp4")} == {
        "extra_a.mp4": "train",
        "extra_b.mp4": "val",
    }
    # an explicit list does not move the clips whose folder fixes their split
    assert {p: s for p, s in split.items() if p.startswith(("train/", "validation/"))} == {
        p.relative_to(data).as_posix(): "val" if p.parent.name == "validation" else "train"
        for p in data.rglob("*.mp4")
        if p.parent != data
    }


def test_split_folders_with_their_own_metadata(sample_raw: Path, tmp_path: Path) -> None:
    """The Hugging Face layout: train/metadata.csv and validation/metadata.jsonl."""
    data = tmp_path / "data"
    shutil.copytree(sample_raw, data)
    for caption in data.rglob("*.txt"):
        caption.unlink()
    train = sorted(p.name for p in (data / "train").glob("*.mp4"))
    rows = "".join(f'{name},"train clip {name}"\n' for name in train)
    (data / "train" / "metadata.csv").write_text("file_name,caption\n" + rows)
    (data / "validation" / "metadata.jsonl").write_text(
        '{"file_name": "life_tall.mp4", "caption": "green life"}\n'
    )
    videos = discover_videos(data, [(".", "auto")])
    manifest, rejects = build_manifest(videos, data, ManifestRules(BUCKETS, 16.0, 0.5)).tables()
    assert manifest.filter(pl.col("split") == "train").height == len(train)
    [val] = manifest.filter(pl.col("split") == "val").to_dicts()
    assert (val["path"], val["caption"]) == ("validation/life_tall.mp4", "green life")
    missing = rejects.filter(pl.col("reason") == "missing_caption")["path"].to_list()
    assert sorted(missing) == ["validation/mandelbrot_wide.mp4", "validation/testsrc_square.mp4"]


def test_split_problems_name_empty_splits_and_unmatched_entries(
    sample_raw: Path, tmp_path: Path
) -> None:
    from dagster_project.dataset.schema import split_problems

    data = flat_copy(sample_raw, tmp_path / "flat")
    manifest, _ = build_manifest(
        discover_videos(data, [(".", "auto")]),
        data,
        ManifestRules(BUCKETS, 16.0, 0.2, val_files=("life_tall.mp4", "nope.mp4")),
    ).tables()
    assert manifest.filter(pl.col("split") == "val")["path"].to_list() == ["life_tall.mp4"]
    assert split_problems(manifest, ["life_tall.mp4", "nope.mp4"]) == [
        "data.val_files entries match no clip: nope.mp4"
    ]
    everything_train = manifest.with_columns(split=pl.lit("train"))
    assert split_problems(everything_train, []) == ["no clip in the val split"]

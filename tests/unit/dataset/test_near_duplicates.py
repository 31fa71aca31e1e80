"""Near-duplicate clips are one content: found at probing, one split per group, counted once by
the exposure guard; the different patterns of the sample data stay apart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dagster_project.core.params import GuardParams, TrainParams
from dagster_project.core.shapes import Bucket
from dagster_project.dataset.exposure import plan_run
from dagster_project.dataset.ingest import discover_videos
from dagster_project.dataset.manifest import ManifestRules, ManifestStores, build_manifest
from dagster_project.dataset.near_duplicates import clip_similarity, find_links, sketch
from dagster_project.dataset.schema import split_problems
from dagster_project.dataset.split import split_rule, write_memory
from dagster_project.dataset.thumbnail_cache import SIMILARITIES, SKETCHES, ThumbnailStore
from dagster_project.video.probe import probe_video
from dagster_project.video.thumbnails import thumbnails

BUCKETS = [Bucket(17, 64, 64), Bucket(17, 48, 80), Bucket(17, 80, 48)]
SOURCE = "train/life_square.mp4"
COPIES = {  # each a copy the issue names, of the 96x96 life clip
    "reencoded.mp4": ["-c:v", "libx264", "-crf", "36"],
    "cropped.mp4": ["-vf", "crop=iw*0.8:ih*0.84:iw*0.1:ih*0.06"],
    "trimmed.mp4": ["-vf", "trim=start_frame=20,setpts=PTS-STARTPTS"],
    "mirrored.mp4": ["-vf", "hflip"],
    "all_at_once.mp4": [
        "-vf",
        "hflip,crop=iw*0.86:ih*0.9:iw*0.08:0,scale=128:-2,"
        "trim=start_frame=8:end_frame=40,setpts=PTS-STARTPTS",
        "-crf",
        "30",
    ],
}


def ffmpeg(source: Path, target: Path, args: list[str]) -> Path:
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", f"file:{source}", *args, f"file:{target}"],
        check=True,
    )
    target.with_suffix(".txt").write_text(f"a copy of the life clip: {target.stem}")
    return target


def manifest(data: Path, val_files: tuple[str, ...] = (), **stores: Path):
    rules = ManifestRules(BUCKETS, 16.0, 0.2, val_files=val_files)
    videos = discover_videos(data, [(".", "auto")])
    return build_manifest(videos, data, rules, ManifestStores(**stores))


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory, sample_raw: Path) -> Path:
    """The sample data with five copies of one clip under other names, in data/extra/."""
    data = tmp_path_factory.mktemp("copies") / "data"
    shutil.copytree(sample_raw, data)
    (data / "extra").mkdir()
    for name, args in COPIES.items():
        ffmpeg(data / SOURCE, data / "extra" / name, args)
    return data


def test_copies_are_one_content_and_the_patterns_are_not(copies: Path, tmp_path: Path) -> None:
    built = manifest(copies, thumbnail_cache=tmp_path / "thumbs")
    clips = built.clips
    content = dict(zip(clips["path"], clips["content"], strict=True))
    group = {path for path, c in content.items() if c == content[SOURCE]}
    assert group == {SOURCE} | {f"extra/{name}" for name in COPIES}
    others = clips.filter(~pl.col("path").is_in(list(group)))
    assert others["content"].to_list() == others["sha256"].to_list()  # each alone
    assert clips.filter(pl.col("path").is_in(list(group)))["split"].unique().to_list() == ["train"]
    table = built.links
    assert set(table["path"]) | set(table["copy_of"]) == group
    assert table["similarity"].min() >= 0.88
    # thumbnails are decoded once: the second run reads them back
    stores = [tmp_path / "thumbs" / name for name in (SKETCHES, SIMILARITIES)]
    written = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in stores]
    again = manifest(copies, thumbnail_cache=tmp_path / "thumbs")
    assert (built.thumbnails_now, again.thumbnails_now) == (clips.height, 0)
    assert built.matched_now >= len(COPIES) and again.matched_now == 0  # pairs remembered
    assert again.clips.equals(clips)
    # and with nothing new, the stores are not written again (a file replaced has a new inode)
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in stores] == written
    # damaged stores are made again from the thumbnails kept (none decoded), the same groups
    for store_file in stores:
        store_file.write_bytes(b"damaged")
    remade = manifest(copies, thumbnail_cache=tmp_path / "thumbs")
    assert remade.thumbnails_now == 0 and remade.matched_now >= len(COPIES)
    assert remade.clips.equals(clips)
    # the sketches are kept too: read back equal, every clip searched (none searched again)
    store = ThumbnailStore(tmp_path / "thumbs")
    rows = clips.select("sha256", "path", "frame_count", "sample_aspect_ratio").rows()
    kept, searched, decoded = store.prepare([(sha, str(copies / p), n, a) for sha, p, n, a in rows])
    assert (searched, decoded) == (set(clips["sha256"]), 0)
    for (sha, *_), one in zip(rows, kept, strict=True):
        assert np.array_equal(one.descriptor, sketch(store.frames(sha)).descriptor)
        assert one.frames == len(store.frames(sha))


def test_the_guard_counts_a_group_once(copies: Path, tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    manifest(copies).clips.write_parquet(path)
    train = TrainParams(steps=40, batch_size=2)
    plan = plan_run(path, train, GuardParams(max_exposures=1000, warn_exposures=1000))
    clips = pl.read_parquet(path).filter(pl.col("split") == "train")
    assert (plan.videos, plan.clips) == (clips["content"].n_unique(), clips.height)
    assert plan.videos == clips.height - len(COPIES)
    assert sum(plan.per_video) == 40 * 2
    assert f"({clips.height} clips: near-duplicates count once)" in plan.message()


def test_a_new_copy_joins_its_groups_split(copies: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(copies / SOURCE, data / "original.mp4")
    (data / "original.txt").write_text("conway's game of life cells")
    memory = tmp_path / "splits.parquet"
    # an earlier run split the original against its own hash (as a group with other clips
    # would have): it stays there, and its new copy joins it
    [original] = manifest(data).clips.to_dicts()
    earlier = "train" if original["split"] == "val" else "val"
    write_memory(memory, {original["sha256"]: earlier}, split_rule(0.2, []))
    shutil.copy(copies / "extra" / "mirrored.mp4", data / "mirrored.mp4")
    (data / "mirrored.txt").write_text("conway's game of life, mirrored")
    clips = manifest(data, split_memory=memory).clips
    assert clips["split"].to_list() == [earlier, earlier]
    assert clips["content"].n_unique() == 1


def test_a_clip_linking_both_splits_is_rejected(copies: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    source = copies / SOURCE  # 50 frames
    ffmpeg(source, data / "first_half.mp4", ["-vf", "trim=end_frame=26,setpts=PTS-STARTPTS"])
    ffmpeg(source, data / "second_half.mp4", ["-vf", "trim=start_frame=24,setpts=PTS-STARTPTS"])
    halves = manifest(data).clips
    assert halves["content"].n_unique() == 2  # the halves share 2 frames: not copies
    memory = tmp_path / "splits.parquet"
    split = dict(zip(halves["path"], halves["sha256"], strict=True))
    write_memory(
        memory,
        {split["first_half.mp4"]: "train", split["second_half.mp4"]: "val"},
        split_rule(0.2, []),
    )
    shutil.copy(source, data / "whole.mp4")  # a copy of both halves
    (data / "whole.txt").write_text("conway's game of life cells, the whole clip")
    built = manifest(data, split_memory=memory)
    assert built.clips.select("path", "split").rows() == [
        ("first_half.mp4", "train"),
        ("second_half.mp4", "val"),
    ]
    [rejected] = built.rejects.to_dicts()
    assert (rejected["path"], rejected["reason"]) == ("whole.mp4", "near_duplicate_across_splits")
    assert "first_half.mp4: train" in rejected["message"]
    assert "second_half.mp4: val" in rejected["message"]


def test_explicit_val_files_win_with_a_warning(copies: Path) -> None:
    built = manifest(copies, val_files=("extra/cropped.mp4",))
    split = dict(zip(built.clips["path"], built.clips["split"], strict=True))
    assert split["extra/cropped.mp4"] == "val"  # listed
    assert split[SOURCE] == "train"  # its split folder
    [warning] = built.warnings
    assert "extra/cropped.mp4: val" in warning and f"{SOURCE}: train" in warning
    [problem] = [p for p in split_problems(built.clips, []) if "both splits" in p]
    assert "extra/cropped.mp4" in problem


def test_each_clip_is_matched_with_at_most_k_neighbours_and_a_new_one_with_its_own() -> None:
    """Twenty takes of one scene (each a little different: all pass the cheap filters): the
    search matches at most k pairs per clip searched, not every pair."""
    import numpy as np

    from dagster_project.video.thumbnails import THUMBNAIL_SIDE

    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, (12, THUMBNAIL_SIDE, THUMBNAIL_SIDE)).astype(np.int16)
    takes = [
        np.clip(scene + rng.integers(-40, 40, scene.shape), 0, 255).astype(np.uint8)
        for _ in range(21)
    ]
    shas = [f"{i:064x}" for i in range(21)]
    sketches = [sketch(t) for t in takes]
    k, first = 3, 20

    def search(count: int, **known: object) -> dict:
        return find_links(
            shas[:count], sketches[:count], [1.0] * count, 0.88,
            frames=lambda i: takes[i], neighbours=k, **known,
        )[1]  # fmt: skip

    scored = search(first)
    assert first - 1 <= len(scored) <= k * first < first * (first - 1) // 2
    # one clip more: it alone is searched, against its k nearest
    again = search(first + 1, scored=scored, searched=set(shas[:first]))
    new = again.keys() - scored.keys()
    assert 1 <= len(new) <= k and all(shas[first] in pair for pair in new)


def test_a_crop_scores_the_same_whichever_clip_comes_first(copies: Path) -> None:
    """Clips of equal length are matched both ways round: the score of a crop and its source
    does not depend on their order (the order of their paths, in ingestion)."""

    def clip(path: Path) -> tuple[np.ndarray, float]:
        probe = probe_video(path)
        return thumbnails(path, probe.frame_count), probe.width / probe.height

    (source, aspect), (crop, crop_aspect) = (
        clip(copies / SOURCE),
        clip(copies / "extra/cropped.mp4"),
    )
    assert len(source) == len(crop)
    there = clip_similarity(source, crop, aspect, crop_aspect)
    back = clip_similarity(crop, source, crop_aspect, aspect)
    assert there == back >= 0.88

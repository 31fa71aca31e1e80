"""Probe every discovered video into a manifest of usable clips and a rejects table.

A file that cannot be used never stops the run: it becomes one rejects row (path, reason,
message). Accepted clips get their content hash (their identity from here on), a stable
train/validation split and a resolution bucket.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from dagster_project.core.params import DataParams
from dagster_project.core.shapes import Bucket
from dagster_project.dataset.buckets import assign_bucket
from dagster_project.dataset.ingest import confine
from dagster_project.dataset.near_duplicates import content_groups, find_links
from dagster_project.dataset.probe_cache import probe_with_cache
from dagster_project.dataset.split import (
    read_memory,
    split_groups,
    split_of,
    split_rule,
    write_memory,
)
from dagster_project.dataset.thumbnail_cache import ThumbnailStore
from dagster_project.dataset.windows import WindowRule
from dagster_project.video.decode import frames_at_fps
from dagster_project.video.probe import ProbeError

MANIFEST_SCHEMA = {
    "path": pl.String,
    "sha256": pl.String,
    "content": pl.String,  # the near-duplicate group: its smallest sha256
    "caption": pl.String,
    "source": pl.String,
    "split": pl.String,
    "bucket": pl.String,
    "windows": pl.Int64,  # training samples of the clip (dataset/windows.py)
    "width": pl.Int64,
    "height": pl.Int64,
    "sample_aspect_ratio": pl.String,
    "frame_count": pl.Int64,
    "fps": pl.Float64,
    "variable_fps": pl.Boolean,
    "duration": pl.Float64,
    "codec": pl.String,
    "pix_fmt": pl.String,
    "bit_depth": pl.Int64,
    "has_audio": pl.Boolean,
    "size_bytes": pl.Int64,
}
REJECTS_SCHEMA = {"path": pl.String, "reason": pl.String, "message": pl.String}
LINKS_SCHEMA = {"path": pl.String, "copy_of": pl.String, "similarity": pl.Float64}


@dataclass
class Manifest:
    """What probing produced: usable clips, rejects, near-duplicate links and warnings."""

    clips: pl.DataFrame
    rejects: pl.DataFrame
    probed_now: int
    links: pl.DataFrame  # path, copy_of, similarity: the linked pairs of near-duplicates
    warnings: list[str] = field(default_factory=list)
    thumbnails_now: int = 0  # clips whose thumbnails were decoded now
    matched_now: int = 0  # candidate pairs matched now (the others were remembered)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase

    def tables(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(clips, rejects)."""
        return self.clips, self.rejects


@dataclass(frozen=True)
class ManifestRules:
    """What makes a clip usable and where it goes: the buckets, the frame rate clips are
    resampled to, and the `data.*` rules (params.yaml)."""

    buckets: list[Bucket]
    fps: float
    val_fraction: float = 0.2
    min_frames: int = 9
    min_side: int = 32
    val_files: tuple[str, ...] = ()  # paths (relative to the data folder) or sha256s
    near_duplicate_threshold: float = DataParams.model_fields["near_duplicate_threshold"].default
    windows: WindowRule = WindowRule()

    @classmethod
    def of(cls, data: DataParams, buckets: list[Bucket], fps: float) -> ManifestRules:
        return cls(
            buckets=buckets,
            fps=fps,
            val_fraction=data.val_fraction,
            min_frames=data.min_frames,
            min_side=data.min_side,
            val_files=tuple(data.val_files),
            near_duplicate_threshold=data.near_duplicate_threshold,
            windows=WindowRule.of(data),
        )


@dataclass(frozen=True)
class ManifestStores:
    """What earlier runs kept, so a re-run redoes only what changed (None: keep nothing)."""

    probe_cache: Path | None = None  # probe results of unchanged files
    thumbnail_cache: Path | None = None  # thumbnails and pair similarities
    split_memory: Path | None = None  # the splits of earlier runs: clips never move


class PhaseClock:
    """Wall seconds per phase: each `lap` closes the phase since the last."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, phase: str) -> float:
        now = time.perf_counter()
        self.laps[phase] = round(now - self.last, 3)
        self.last = now
        return self.laps[phase]


def build_manifest(
    videos: pl.DataFrame,
    data_dir: Path,
    rules: ManifestRules,
    stores: ManifestStores = ManifestStores(),
    say: Callable[[str], None] = lambda line: None,
) -> Manifest:
    """Probe the usable rows of `videos` (from `discover_videos`) in parallel, group
    near-duplicate clips into contents, and split by content group (`dataset.split`).

    Rows already rejected at ingestion pass straight to rejects; files the probe cache knows
    unchanged are not probed again, clips the thumbnail cache knows are not decoded again;
    the split memory keeps the splits of earlier runs, so existing clips never move.
    """
    buckets, fps, min_side, min_frames = rules.buckets, rules.fps, rules.min_side, rules.min_frames
    val_fraction, val_files = rules.val_fraction, rules.val_files
    probe_cache, thumbnail_cache = stores.probe_cache, stores.thumbnail_cache
    split_memory = stores.split_memory
    # confined again here: whatever produced `videos`, nothing outside data_dir reaches ffprobe
    inside = pl.Series(
        [confine(data_dir, os.path.join(data_dir, p)) is not None for p in videos["path"]],
        dtype=pl.Boolean,
    )
    outside = videos.filter(~inside & pl.col("reason").is_null()).with_columns(
        reason=pl.lit("outside_data_folder"),
        message=pl.col("path") + pl.lit(f": outside the data folder {data_dir}"),
    )
    rejects = pl.concat([videos.filter(pl.col("reason").is_not_null()), outside])
    rejects = rejects.select(list(REJECTS_SCHEMA))
    candidates = videos.filter(pl.col("reason").is_null() & inside).sort("path")
    clock = PhaseClock()
    probed = probe_with_cache(
        [os.path.join(data_dir, p) for p in candidates["path"]], probe_cache, say
    )
    clock.lap("probe")
    explicit_val = frozenset(val_files)

    accepted: list[dict] = []
    rejected: list[dict] = []
    explicit: set[str] = set()  # clips whose split is designated (a split folder, val_files)
    seen: dict[str, str] = {}
    assigned: dict[tuple[int, int, int], Bucket | None] = {}
    rows = zip(candidates.iter_rows(named=True), probed.results, probed.sizes, strict=True)
    for row, result, size in rows:
        path = row["path"]
        problem = None
        if isinstance(result, ProbeError):
            problem = result.reason, result.message.replace(str(data_dir / path), path)
        else:
            info, sha = result
            available = frames_at_fps(info.frame_count, info.fps, fps)
            shape = available, info.width, info.height  # clips share a few shapes
            if shape not in assigned:
                assigned[shape] = assign_bucket(*shape, buckets)
            bucket = assigned[shape]
            if min(info.width, info.height) < min_side:
                size = f"{info.width}x{info.height}"
                problem = "too_small", f"{path}: {size} is below data.min_side={min_side}"
            elif available < min_frames:
                problem = (
                    "too_few_frames",
                    (
                        f"{path}: {available} frames at {fps:g} fps, "
                        f"below data.min_frames={min_frames}"
                    ),
                )
            elif bucket is None:
                problem = (
                    "no_bucket",
                    (
                        f"{path}: {available} frames at {fps:g} fps, shorter than every bucket "
                        f"(the shortest needs {min(b.frames for b in buckets)})"
                    ),
                )
            elif sha in seen:
                problem = "duplicate", f"{path}: same content (sha256) as {seen[sha]}"
        if problem:
            rejected.append({"path": path, "reason": problem[0], "message": problem[1]})
            continue
        seen[sha] = path
        if row["split"] is not None or path in explicit_val or sha in explicit_val:
            explicit.add(sha)
        accepted.append(
            {
                **vars(info),  # scalars only (asdict deep-copies them, per clip)
                "path": path,
                "sha256": sha,
                "caption": row["caption"],
                "source": row["source"],
                "split": split_of(sha, path, val_fraction, explicit_val, row["split"]),
                "bucket": bucket.name,
                "windows": len(rules.windows.starts(available, bucket.frames)),
                "size_bytes": size,
            }
        )

    # near-duplicates: one content group, one split
    store = ThumbnailStore(thumbnail_cache)
    sketches, searched, thumbnails_now = store.prepare(
        [(c["sha256"], os.path.join(data_dir, c["path"]), c["frame_count"],
          c["sample_aspect_ratio"]) for c in accepted],
        say,
    )  # fmt: skip
    clock.lap("thumbnails")
    shas = [c["sha256"] for c in accepted]
    names = {c["sha256"]: c["path"] for c in accepted}
    aspects = [c["width"] / c["height"] for c in accepted]  # as displayed
    remembered = store.similarities()
    links, scored = find_links(
        shas,
        sketches,
        aspects,
        rules.near_duplicate_threshold,
        frames=lambda i: store.frames(shas[i]),
        scored=remembered,
        searched=searched,
        say=say,
    )
    store.save_similarities(scored)
    store.save_sketches(shas, sketches)
    clock.lap("near_duplicates")
    rule = split_rule(val_fraction, list(val_files))
    grouped = split_groups(
        content_groups(shas, links),
        own={c["sha256"]: c["split"] for c in accepted},
        explicit=explicit,
        memory=read_memory(split_memory, rule),
        names=names,
    )
    for sha, message in grouped.rejected.items():
        rejected.append(
            {"path": names[sha], "reason": "near_duplicate_across_splits", "message": message}
        )
    accepted = [c for c in accepted if c["sha256"] not in grouped.rejected]
    content = content_groups([c["sha256"] for c in accepted], links)  # without the rejected
    for clip in accepted:
        clip["split"] = grouped.splits[clip["sha256"]]
        clip["content"] = content[clip["sha256"]]
    write_memory(split_memory, grouped.splits, rule)

    manifest = pl.DataFrame(accepted, schema=MANIFEST_SCHEMA)
    rejects = pl.concat([rejects, pl.DataFrame(rejected, schema=REJECTS_SCHEMA)]).sort("path")
    link_rows = [
        (names[a], names[b], round(similarity, 4))
        for a, b, similarity in links
        if a in content and b in content
    ]
    return Manifest(
        clips=manifest,
        rejects=rejects,
        probed_now=probed.probed_now,
        links=pl.DataFrame(link_rows, schema=LINKS_SCHEMA, orient="row"),
        warnings=grouped.warnings,
        thumbnails_now=thumbnails_now,
        matched_now=len(scored.keys() - remembered.keys()),
        seconds={**clock.laps, "rest": clock.lap("rest")},
    )


def near_duplicate_table(clips: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """The clips of content groups with more than one clip (for the UI): the group, the
    clip, its split, and the clip it is most alike with its similarity."""
    either_way = pl.concat(
        [links, links.select(path="copy_of", copy_of="path", similarity="similarity")]
    )
    closest = either_way.sort("similarity", descending=True).group_by("path").first()
    return (
        clips.filter(pl.len().over("content") > 1)
        .select(group=pl.col("content").str.slice(0, 12), path="path", split="split")
        .join(closest, on="path", how="left")
        .sort("group", "path")
    )

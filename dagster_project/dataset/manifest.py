"""Probe every discovered video into a manifest of usable clips and a rejects table.

A file that cannot be used never stops the run: it becomes one rejects row (path, reason,
message). Accepted clips get their content hash (their identity from here on), a stable
train/validation split and a resolution bucket.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import polars as pl

from dagster_project.dataset.buckets import Bucket, assign_bucket
from dagster_project.video.decode import frames_at_fps
from dagster_project.video.probe import ProbeError, VideoInfo, probe_video, sha256_file

MANIFEST_SCHEMA = {
    "path": pl.String,
    "sha256": pl.String,
    "caption": pl.String,
    "split": pl.String,
    "bucket": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "frame_count": pl.Int64,
    "fps": pl.Float64,
    "duration": pl.Float64,
    "codec": pl.String,
    "pix_fmt": pl.String,
    "has_audio": pl.Boolean,
    "size_bytes": pl.Int64,
}
REJECTS_SCHEMA = {"path": pl.String, "reason": pl.String, "message": pl.String}


def split_of(sha256: str, val_fraction: float) -> str:
    """Split by content hash: the same bytes always land in the same split."""
    return "val" if int(sha256[:8], 16) / 0x1_0000_0000 < val_fraction else "train"


def _probe(path: Path) -> tuple[VideoInfo, str] | ProbeError:
    try:
        return probe_video(path), sha256_file(path)
    except ProbeError as exc:
        return exc
    except OSError as exc:
        return ProbeError("unreadable", f"{path}: {exc.strerror or exc}")


def build_manifest(
    videos: pl.DataFrame,
    raw_dir: Path,
    buckets: list[Bucket],
    fps: float,
    val_fraction: float,
    min_frames: int,
    min_side: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Probe `videos` (from `discover_videos`) in parallel; return (manifest, rejects)."""
    paths = [raw_dir / p for p in videos["path"]]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        probed = list(pool.map(_probe, paths))

    accepted: list[dict] = []
    rejects: list[dict] = []
    seen: dict[str, str] = {}
    for row, result in zip(videos.iter_rows(named=True), probed, strict=True):
        path = row["path"]

        def reject(reason: str, message: str, path: str = path) -> None:
            rejects.append({"path": path, "reason": reason, "message": message})

        if isinstance(result, ProbeError):
            reject(result.reason, result.message)
            continue
        info, sha = result
        available = frames_at_fps(info.frame_count, info.fps, fps)
        bucket = assign_bucket(available, info.width, info.height, buckets)
        if row["caption"] is None:
            reject("missing_caption", f"{path}: no caption (expected a non-empty sidecar .txt)")
        elif min(info.width, info.height) < min_side:
            reject(
                "too_small",
                f"{path}: {info.width}x{info.height} is below data.min_side={min_side}",
            )
        elif available < min_frames:
            reject(
                "too_few_frames",
                f"{path}: {available} frames at {fps:g} fps, below data.min_frames={min_frames}",
            )
        elif bucket is None:
            shortest = min(b.frames for b in buckets)
            reject(
                "no_bucket",
                f"{path}: {available} frames at {fps:g} fps, shorter than every bucket "
                f"(shortest needs {shortest})",
            )
        elif sha in seen:
            reject("duplicate", f"{path}: same content as {seen[sha]}")
        else:
            seen[sha] = path
            accepted.append(
                {
                    **asdict(info),
                    "path": path,
                    "sha256": sha,
                    "caption": row["caption"],
                    "split": split_of(sha, val_fraction),
                    "bucket": bucket.name,
                    "size_bytes": row["size_bytes"],
                }
            )
    manifest = pl.DataFrame(accepted, schema=MANIFEST_SCHEMA)
    return manifest, pl.DataFrame(rejects, schema=REJECTS_SCHEMA)

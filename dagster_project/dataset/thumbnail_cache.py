"""Remember near-duplicate matching between runs: each clip's thumbnails by content (sha256),
so a re-run decodes only new clips, and the similarity of every pair matched, so it matches
only pairs with a new clip. One `.npy` file per clip and `similarities.parquet`, written
atomically; the folder keeps exactly the current clips' entries."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from dagster_project.core.atomic import atomic_path, write_parquet
from dagster_project.dataset.near_duplicates import MATCHER
from dagster_project.video.thumbnails import THUMBNAIL_SIDE, thumbnails

SIMILARITIES = "similarities.parquet"


def _name(sha: str) -> str:
    """A clip's thumbnails file: other thumbnail sizes are other files."""
    return f"{sha}-{THUMBNAIL_SIDE}.npy"


def _load_or_make(
    folder: Path | None, sha: str, path: Path, frame_count: int, sample_aspect_ratio: str
) -> tuple[np.ndarray | None, bool]:
    cached = folder / _name(sha) if folder is not None else None
    if cached is not None and cached.is_file():
        try:
            return np.load(cached, allow_pickle=False), False
        except (OSError, ValueError):  # damaged: decoded again below
            pass
    try:
        frames = thumbnails(path, frame_count, sample_aspect_ratio)
    except RuntimeError:
        return None, True  # undecodable: matched with nothing; encoding will report it
    if cached is not None:
        with atomic_path(cached) as tmp, tmp.open("wb") as handle:
            np.save(handle, frames, allow_pickle=False)
    return frames, True


def clip_thumbnails(
    clips: list[tuple[str, Path, int, str]], folder: Path | None
) -> tuple[list[np.ndarray | None], int]:
    """Thumbnails of `clips` (sha256, path, frame count, sample aspect ratio), in order, from
    `folder` or decoded now (in parallel); returns them and how many were decoded now."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) * 2) as pool:
        done = list(pool.map(lambda clip: _load_or_make(folder, *clip), clips))
    if folder is not None:
        keep = {_name(sha) for sha, *_ in clips}
        for stale in folder.glob("*.npy"):
            if stale.name not in keep:
                stale.unlink(missing_ok=True)
    return [frames for frames, _ in done], sum(made for _, made in done)


def read_similarities(folder: Path | None) -> dict[tuple[str, str], float]:
    """The similarities of pairs matched by earlier runs with the current matcher."""
    path = folder / SIMILARITIES if folder is not None else None
    if path is None or not path.is_file():
        return {}
    kept = pl.read_parquet(path).filter(pl.col("matcher") == MATCHER)
    return {(a, b): s for a, b, s in kept.select("a", "b", "similarity").iter_rows()}


def write_similarities(folder: Path | None, scored: dict[tuple[str, str], float]) -> None:
    """Keep `scored` (this run's candidate pairs) for the next run."""
    if folder is not None:
        rows = [(a, b, s, MATCHER) for (a, b), s in sorted(scored.items())]
        schema = {"a": pl.String, "b": pl.String, "similarity": pl.Float64, "matcher": pl.String}
        write_parquet(pl.DataFrame(rows, schema=schema, orient="row"), folder / SIMILARITIES)

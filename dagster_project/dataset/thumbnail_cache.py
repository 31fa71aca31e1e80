"""Remember clips' thumbnails between runs, by content (sha256): a re-run decodes only new
clips for near-duplicate matching. One `.npy` file per clip, written atomically; the folder
keeps exactly the current clips' files."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dagster_project.atomic import atomic_path
from dagster_project.video.thumbnails import thumbnails


def _load_or_make(
    folder: Path | None, sha: str, path: Path, frame_count: int, sample_aspect_ratio: str
) -> tuple[np.ndarray | None, bool]:
    cached = folder / f"{sha}.npy" if folder is not None else None
    if cached is not None and cached.is_file():
        return np.load(cached, allow_pickle=False), False
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
        keep = {f"{sha}.npy" for sha, *_ in clips}
        for stale in folder.glob("*.npy"):
            if stale.name not in keep:
                stale.unlink(missing_ok=True)
    return [frames for frames, _ in done], sum(made for _, made in done)

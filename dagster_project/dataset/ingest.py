"""Find videos and their sidecar captions under the raw data folder."""

from __future__ import annotations

from pathlib import Path

import polars as pl

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})

VIDEOS_SCHEMA = {"path": pl.String, "caption": pl.String, "size_bytes": pl.Int64}


def read_caption(path: Path) -> str | None:
    """The caption in `path`: UTF-8 (BOM allowed), whitespace stripped; None when absent/blank.

    A multi-line caption file is one caption: its lines are joined with single spaces.
    """
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8-sig")
    caption = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return caption or None


def discover_videos(raw_dir: Path) -> pl.DataFrame:
    """One row per video file under raw_dir: path (relative, POSIX), caption (or null), size."""
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"data.raw_dir: no such folder: {raw_dir}")
    rows = []
    for video in sorted(raw_dir.rglob("*")):
        if video.suffix.lower() not in VIDEO_SUFFIXES or not video.is_file():
            continue
        rows.append(
            {
                "path": video.relative_to(raw_dir).as_posix(),
                "caption": read_caption(video.with_suffix(".txt")),
                "size_bytes": video.stat().st_size,
            }
        )
    return pl.DataFrame(rows, schema=VIDEOS_SCHEMA)

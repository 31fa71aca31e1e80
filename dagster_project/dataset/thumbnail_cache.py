"""Remember near-duplicate matching between runs, by content (sha256): each clip's thumbnails
(one `.npy` per clip), its sketch and whether it was searched (`sketches.parquet`), and the
similarity of every pair matched (`similarities.parquet`). A re-run decodes only new clips,
searches only them, and reads a remembered clip's thumbnails only when a new clip is matched
with it. Files are written atomically; the folder keeps exactly the current clips' entries.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from dagster_project.core.atomic import atomic_path, write_parquet
from dagster_project.core.progress import Progress
from dagster_project.dataset.near_duplicates import MATCHER, SKETCH, Sketch, sketch
from dagster_project.video.thumbnails import THUMBNAIL_SIDE, thumbnails

SIMILARITIES = "similarities.parquet"
SKETCHES = "sketches.parquet"
Clip = tuple[str, Path, int, str]  # sha256, path, frame count, sample aspect ratio


def _name(sha: str) -> str:
    """A clip's thumbnails file: other thumbnail sizes are other files."""
    return f"{sha}-{THUMBNAIL_SIDE}.npy"


class ThumbnailStore:
    """Thumbnails, sketches, similarities and the searched clips in `folder` (None: kept in
    memory for one run)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.memory: dict[str, np.ndarray] = {}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def _load(self, sha: str) -> np.ndarray | None:
        if self.folder is None:
            return self.memory.get(sha)
        try:
            return np.load(self.folder / _name(sha), allow_pickle=False)
        except (OSError, ValueError):  # missing or damaged: decoded again
            return None

    def _save(self, sha: str, frames: np.ndarray) -> None:
        if self.folder is None:
            self.memory[sha] = frames
            return
        with atomic_path(self.folder / _name(sha)) as tmp, tmp.open("wb") as handle:
            np.save(handle, frames, allow_pickle=False)

    def frames(self, sha: str) -> np.ndarray:
        """A prepared clip's thumbnails."""
        frames = self._load(sha)
        if frames is None:
            raise FileNotFoundError(f"no thumbnails of {sha} (prepare the clips first)")
        return frames

    def _sketches(self) -> dict[str, tuple[Sketch, bool]]:
        path = self.folder / SKETCHES if self.folder is not None else None
        if path is None or not path.is_file():
            return {}
        table = pl.read_parquet(path).filter(pl.col("sketch") == SKETCH)
        if table.is_empty():
            return {}
        # whole columns to numpy: a list of Python floats per clip costs GBs at 10,000s of clips
        histograms = table["histogram"].to_numpy()
        descriptors = table["descriptor"].to_numpy()
        rows = descriptors.shape[1] // table["width"][0]
        return {
            sha: (
                Sketch(frames, histogram, descriptor.reshape(rows, -1)),
                matcher == MATCHER,  # searched, as the current matcher searches
            )
            for sha, frames, matcher, histogram, descriptor in zip(
                table["sha256"],
                table["frames"],
                table["matcher"],
                histograms,
                descriptors,
                strict=True,
            )
        }

    def prepare(
        self, clips: list[Clip], say: Callable[[str], None] = lambda line: None
    ) -> tuple[list[Sketch | None], set[str], int]:
        """Each clip's sketch (None: no frame could be decoded), the clips searched by an earlier
        run, and how many clips were decoded now (in parallel)."""
        known = self._sketches()
        # one listing, not a stat per clip: a known sketch counts while its thumbnails exist
        files = set(os.listdir(self.folder)) if self.folder is not None else None
        ready = {
            sha: known[sha][0]
            for sha, *_ in clips
            if sha in known and (files is None or _name(sha) in files)
        }
        progress = Progress("thumbnails", len(clips) - len(ready), say)

        def one(clip: Clip) -> tuple[Sketch | None, bool]:
            sha, path, frame_count, sample_aspect_ratio = clip
            frames, made = self._load(sha), False
            if frames is None:
                try:
                    frames = thumbnails(path, frame_count, sample_aspect_ratio)
                except RuntimeError:
                    return None, True  # undecodable: matched with nothing; encoding reports it
                self._save(sha, frames)
                made = True
            return sketch(frames), made

        def counted(clip: Clip) -> tuple[Sketch | None, bool]:
            result = one(clip)
            progress()
            return result

        todo = [clip for clip in clips if clip[0] not in ready]
        with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) * 2) as pool:
            done = dict(zip([sha for sha, *_ in todo], pool.map(counted, todo), strict=True))
        if files is not None:
            keep = {_name(sha) for sha, *_ in clips}
            for stale in files:
                if stale.endswith(".npy") and stale not in keep:
                    (self.folder / stale).unlink(missing_ok=True)
        searched = {sha for sha, (_, was) in known.items() if was}
        sketches = [ready[sha] if sha in ready else done[sha][0] for sha, *_ in clips]
        return sketches, searched, sum(made for _, made in done.values())

    def save_sketches(self, shas: list[str], sketches: list[Sketch | None]) -> None:
        """Keep the current clips' sketches, every one searched now."""
        if self.folder is None:
            return
        kept = [(sha, s) for sha, s in zip(shas, sketches, strict=True) if s is not None]
        if not kept:
            self.folder.joinpath(SKETCHES).unlink(missing_ok=True)
            return
        width = kept[0][1].descriptor.shape[1]
        table = pl.DataFrame(
            {
                "sha256": [sha for sha, _ in kept],
                "frames": pl.Series([s.frames for _, s in kept], dtype=pl.Int64),
                "histogram": np.stack([s.histogram for _, s in kept]),
                "descriptor": np.stack([s.descriptor.reshape(-1) for _, s in kept]),
                "width": pl.Series([width] * len(kept), dtype=pl.Int64),
                "matcher": [MATCHER] * len(kept),
                "sketch": [SKETCH] * len(kept),
            }
        )
        write_parquet(table, self.folder / SKETCHES)

    def similarities(self) -> dict[tuple[str, str], float]:
        """The similarities of pairs matched by earlier runs with the current matcher."""
        path = self.folder / SIMILARITIES if self.folder is not None else None
        if path is None or not path.is_file():
            return {}
        kept = pl.read_parquet(path).filter(pl.col("matcher") == MATCHER)
        return {(a, b): s for a, b, s in kept.select("a", "b", "similarity").iter_rows()}

    def save_similarities(self, scored: dict[tuple[str, str], float]) -> None:
        """Keep `scored` (the current clips' matched pairs) for the next run."""
        if self.folder is None:
            return
        rows = [(a, b, s, MATCHER) for (a, b), s in sorted(scored.items())]
        schema = {"a": pl.String, "b": pl.String, "similarity": pl.Float64, "matcher": pl.String}
        write_parquet(pl.DataFrame(rows, schema=schema, orient="row"), self.folder / SIMILARITIES)

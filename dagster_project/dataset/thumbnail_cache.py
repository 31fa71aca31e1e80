"""Remember near-duplicate matching between runs, by content (sha256): each clip's thumbnails
(one `.npy` per clip), its sketch and whether it was searched (`sketches.npz`), and the
similarity of every pair matched (`similarities.npz`). A re-run decodes only new clips,
searches only them, and reads a remembered clip's thumbnails only when a new clip is matched
with it. Files are written atomically; the folder keeps exactly the current clips' entries.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dagster_project.core.atomic import atomic_path
from dagster_project.core.progress import Progress
from dagster_project.dataset.near_duplicates import MATCHER, SKETCH, Sketch, sketch
from dagster_project.video.thumbnails import THUMBNAIL_SIDE, thumbnails

# arrays: read whole in a millisecond (Parquet took several for the sketches' floats)
SKETCHES = "sketches.npz"
SIMILARITIES = "similarities.npz"
LEGACY = frozenset({"sketches.parquet", "similarities.parquet"})  # earlier versions': deleted
Clip = tuple[str, str, int, str]  # sha256, path, frame count, sample aspect ratio


def _name(sha: str) -> str:
    """A clip's thumbnails file: other thumbnail sizes are other files."""
    return f"{sha}-{THUMBNAIL_SIDE}.npy"


class ThumbnailStore:
    """Thumbnails, sketches, similarities and the searched clips in `folder` (None: kept in
    memory for one run)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.memory: dict[str, np.ndarray] = {}
        # what the stores held when read: a run that changes nothing rewrites nothing
        self._stored_sketches: dict[str, bool] = {}  # sha256 -> searched by this matcher
        self._stored_similarities: dict[tuple[str, str], float] = {}
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

    def _read(self, name: str, version: tuple[str, str], names: list[str]) -> dict | None:
        """The arrays `names` of store `name`, written under `version` (its array's name and
        value); None when missing, damaged or of another version: made again."""
        path = self.folder / name if self.folder is not None else None
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored[version[0]]) != version[1]:
                    return None
                return {array: stored[array] for array in names}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None

    def _write(self, name: str, **arrays: np.ndarray) -> None:
        with atomic_path(self.folder / name) as tmp, tmp.open("wb") as handle:
            np.savez(handle, **arrays)

    def _sketches(self) -> dict[str, tuple[Sketch, bool]]:
        names = ["sha256", "frames", "matcher", "histogram", "descriptor"]
        stored = self._read(SKETCHES, ("sketch", SKETCH), names)
        if stored is None:
            return {}
        known = {
            sha: (
                Sketch(count, histogram, descriptor),
                matcher == MATCHER,  # searched, as the current matcher searches
            )
            for sha, count, matcher, histogram, descriptor in zip(
                stored["sha256"].tolist(),
                stored["frames"].tolist(),
                stored["matcher"].tolist(),
                stored["histogram"],
                stored["descriptor"],
                strict=True,
            )
        }
        self._stored_sketches = {sha: searched for sha, (_, searched) in known.items()}
        return known

    def prepare(
        self, clips: list[Clip], say: Callable[[str], None] = lambda line: None
    ) -> tuple[list[Sketch | None], set[str], int]:
        """Each clip's sketch (None: no frame could be decoded), the clips searched by an earlier
        run, and how many clips were decoded now (in parallel)."""
        # one listing, not a stat per clip: a clip without thumbnails is decoded (ffmpeg, in
        # threads) while the stored sketches are read; a known sketch counts while its
        # thumbnails exist
        files = set(os.listdir(self.folder)) if self.folder is not None else set()
        decode = [clip for clip in clips if _name(clip[0]) not in files]
        progress = Progress("thumbnails", len(decode), say)

        def one(clip: Clip) -> tuple[Sketch | None, bool]:
            sha, path, frame_count, sample_aspect_ratio = clip
            frames, made = self._load(sha), False
            if frames is None:
                try:
                    frames = thumbnails(Path(path), frame_count, sample_aspect_ratio)
                except RuntimeError:
                    return None, True  # undecodable: matched with nothing; encoding reports it
                self._save(sha, frames)
                made = True
            return sketch(frames), made

        def counted(clip: Clip) -> tuple[Sketch | None, bool]:
            result = one(clip)
            progress()
            return result

        with ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) * 2) as pool:
            decoding = pool.map(counted, decode)
            known = self._sketches()
            waiting = {clip[0] for clip in decode}
            ready = {sha: known[sha][0] for sha, *_ in clips if sha in known and sha not in waiting}
            # thumbnails kept but no sketch stored (another sketch version): sketched again
            todo = [clip for clip in clips if clip[0] not in ready and clip[0] not in waiting]
            done = dict(zip([sha for sha, *_ in todo], map(one, todo), strict=True))
            done |= dict(zip([sha for sha, *_ in decode], decoding, strict=True))
        if self.folder is not None:
            keep = {_name(sha) for sha, *_ in clips}
            for stale in files:  # (and the Parquet stores of earlier versions)
                if (stale.endswith(".npy") and stale not in keep) or stale in LEGACY:
                    (self.folder / stale).unlink(missing_ok=True)
        searched = {sha for sha, (_, was) in known.items() if was}
        sketches = [ready[sha] if sha in ready else done[sha][0] for sha, *_ in clips]
        return sketches, searched, sum(made for _, made in done.values())

    def save_sketches(self, shas: list[str], sketches: list[Sketch | None]) -> None:
        """Keep the current clips' sketches, every one searched now."""
        if self.folder is None:
            return
        kept = [(sha, s) for sha, s in zip(shas, sketches, strict=True) if s is not None]
        stored = self._stored_sketches
        if kept and len(stored) == len(kept) and all(stored.get(sha) for sha, _ in kept):
            return  # the same clips, every one searched by this matcher: the file holds them
        if not kept:
            self.folder.joinpath(SKETCHES).unlink(missing_ok=True)
            return
        self._write(
            SKETCHES,
            sha256=np.array([sha for sha, _ in kept]),
            frames=np.array([s.frames for _, s in kept], dtype=np.int64),
            histogram=np.stack([s.histogram for _, s in kept]),
            descriptor=np.stack([s.descriptor for _, s in kept]),
            matcher=np.array([MATCHER] * len(kept)),
            sketch=np.array(SKETCH),
        )

    def similarities(self) -> dict[tuple[str, str], float]:
        """The similarities of pairs matched by earlier runs with the current matcher."""
        stored = self._read(SIMILARITIES, ("matcher", MATCHER), ["a", "b", "similarity"])
        if stored is None:
            return {}
        pairs = zip(stored["a"].tolist(), stored["b"].tolist(), strict=True)
        self._stored_similarities = dict(zip(pairs, stored["similarity"].tolist(), strict=True))
        return dict(self._stored_similarities)

    def save_similarities(self, scored: dict[tuple[str, str], float]) -> None:
        """Keep `scored` (the current clips' matched pairs) for the next run."""
        if self.folder is None or scored == self._stored_similarities:
            return
        pairs = sorted(scored)
        self._write(
            SIMILARITIES,
            a=np.array([a for a, _ in pairs], dtype=str),
            b=np.array([b for _, b in pairs], dtype=str),
            similarity=np.array([scored[pair] for pair in pairs], dtype=np.float64),
            matcher=np.array(MATCHER),
        )

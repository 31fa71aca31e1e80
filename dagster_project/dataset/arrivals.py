"""What changed under the raw data folder, and whether it has finished arriving.

Every file counts (videos, sidecar captions, metadata files, prompt lists), observed by name,
size and modification time (no reads). A file is settled when it looks the same as at the
previous observation and was last modified at least `settle_seconds` ago: an upload still being
copied keeps changing and waits.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dagster_project.dataset.ingest import is_video

# name -> [size, mtime_ns]
Listing = dict[str, list[int]]
# the metadata key, on `videos` and `trained_model`, of the raw folder's fingerprint the run read
RAW_FINGERPRINT = "raw_fingerprint"


def observe(raw_dir: Path) -> Listing:
    """Every file under `raw_dir` (hidden ones, such as partial downloads, included)."""
    listing: Listing = {}
    if not raw_dir.is_dir():
        return listing
    for folder, _, files in os.walk(raw_dir):
        # names as strings (no Path per file): the folder may hold thousands of clips
        prefix = os.path.relpath(folder, raw_dir) + os.sep if folder != str(raw_dir) else ""
        for name in files:
            try:
                stat = os.stat(os.path.join(folder, name))
            except FileNotFoundError:  # gone between listing and stat
                continue
            listing[prefix + name] = [stat.st_size, stat.st_mtime_ns]
    return listing


def fingerprint(listing: Listing) -> str:
    """One digest of a listing: equal listings, equal digests."""
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()


def unsettled(
    previous: Listing | None, current: Listing, now_ns: int, settle_s: float
) -> list[str]:
    """Files still arriving or leaving: changed, added or removed since the previous
    observation (or none yet), or modified less than `settle_s` seconds ago."""
    recent = now_ns - int(settle_s * 1e9)
    moving = {
        name
        for name, (size, mtime) in current.items()
        if mtime > recent or previous is None or previous.get(name) != [size, mtime]
    }
    return sorted(moving | (set(previous or {}) - set(current)))


@dataclass(frozen=True)
class Changes:
    """How `current` differs from `baseline` (the listing when the last run was requested)."""

    new_clips: list[str]
    changed_clips: list[str]  # same name, other size or time
    removed_clips: list[str]
    caption_files: list[str]  # any other file added, changed or removed

    @property
    def clips(self) -> int:
        return len(self.new_clips) + len(self.changed_clips) + len(self.removed_clips)

    def describe(self) -> str:
        parts = [
            f"{len(self.new_clips)} new",
            f"{len(self.changed_clips)} changed",
            f"{len(self.removed_clips)} removed clip(s)",
            f"{len(self.caption_files)} caption/metadata file(s) changed",
        ]
        return ", ".join(parts)


def changes(baseline: Listing, current: Listing) -> Changes:
    """What differs between two listings, clips and captions apart."""
    names = set(baseline) | set(current)
    added = sorted(n for n in names if n not in baseline)
    removed = sorted(n for n in names if n not in current)
    modified = sorted(
        n for n in names if n in baseline and n in current and baseline[n] != current[n]
    )
    # the sidecar caption arriving (or leaving) with its clip is part of that clip
    moved = {Path(n).with_suffix("") for n in added + removed if is_video(n)}
    sidecars = {n for n in added + removed if Path(n).with_suffix("") in moved}
    return Changes(
        new_clips=[n for n in added if is_video(n)],
        changed_clips=[n for n in modified if is_video(n)],
        removed_clips=[n for n in removed if is_video(n)],
        caption_files=[
            n for n in added + modified + removed if not is_video(n) and n not in sidecars
        ],
    )

"""The raw data folder before DVC sees it: refuse links that lead outside it.

DVC has no pre-hook: `dvc repro` (and `dvc add`) copy a symlink's target into the workspace
cache, and `dvc push` to a remote, before ingestion could refuse it. `make repro` and
`make sample-data` run the check first (`python -m dagster_project.cli.raw_check`), the
`videos` asset runs it before versioning the folder outside DVC; a bare `dvc repro` cannot be
guarded (the README says so).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from dagster_project.core.params import Params

DVC_CACHE = Path(".dvc") / "cache"  # DVC's own links (cache.type symlink) point here


def _entries(folder: Path | str) -> Iterator[os.DirEntry]:
    """Every entry under `folder`, recursively, without following directory links; a folder
    that cannot be listed is passed over (as `os.walk` does)."""
    try:
        listing = list(os.scandir(folder))
    except OSError:
        return
    for entry in listing:
        yield entry
        if entry.is_dir(follow_symlinks=False):
            yield from _entries(entry.path)


def links_outside(raw_dir: Path, allowed: list[Path] = ()) -> list[str]:
    """Paths under `raw_dir` (relative) that are links resolving outside it (and outside the
    `allowed` folders, such as the DVC cache), or dangling."""
    root = raw_dir.resolve()
    bad = []
    for entry in _entries(raw_dir):
        if entry.is_symlink():  # from the listing: no system call per file
            path = Path(entry.path)
            target = path.resolve()
            inside = any(target.is_relative_to(folder) for folder in [root, *allowed])
            if not target.exists() or not inside:
                bad.append(str(path.relative_to(raw_dir)))
    return sorted(bad)


def refused_links(p: Params) -> list[str]:
    """The links under `data.raw_dir` that lead outside it (DVC's own cache links allowed)."""
    return links_outside(p.path(p.data.raw_dir), allowed=[p.root.resolve() / DVC_CACHE])

"""The raw data folder before DVC sees it: refuse links that lead outside it.

DVC has no pre-hook: `dvc repro` (and `dvc add`) copy a symlink's target into the workspace
cache, and `dvc push` to a remote, before ingestion could refuse it. `make repro` and
`make sample-data` run the check first (`python -m dagster_project.cli.raw_check`), the
`videos` asset runs it before versioning the folder outside DVC; a bare `dvc repro` cannot be
guarded (the README says so).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster_project.core.params import Params

DVC_CACHE = Path(".dvc") / "cache"  # DVC's own links (cache.type symlink) point here


def links_outside(raw_dir: Path, allowed: list[Path] = ()) -> list[str]:
    """Paths under `raw_dir` (relative) that are links resolving outside it (and outside the
    `allowed` folders, such as the DVC cache), or dangling."""
    root = raw_dir.resolve()
    bad = []
    for folder, dirs, files in os.walk(raw_dir):  # does not follow directory links
        for name in dirs + files:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            target = path.resolve()
            inside = any(target.is_relative_to(folder) for folder in [root, *allowed])
            if not target.exists() or not inside:
                bad.append(str(path.relative_to(raw_dir)))
    return sorted(bad)


def refused_links(p: Params) -> list[str]:
    """The links under `data.raw_dir` that lead outside it (DVC's own cache links allowed)."""
    return links_outside(p.path(p.data.raw_dir), allowed=[p.root.resolve() / DVC_CACHE])

"""`python -m dagster_project.raw_check`: refuse a raw data folder whose links lead outside it.

DVC has no pre-hook: `dvc repro` (and `dvc add`) copy a symlink's target into the workspace
cache, and `dvc push` to a remote, before ingestion could refuse it. `make repro` and
`make sample-data` run this first; a bare `dvc repro` cannot be guarded (the README says so).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dagster_project.params import Params, ParamsError, load_params
from dagster_project.resources import default_params_path

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


def main(argv: list[str] | None = None) -> int:
    params_path = (argv or [None])[0] or default_params_path()
    try:
        p = load_params(params_path)
    except ParamsError as error:
        print(error, file=sys.stderr)
        return 2
    bad = refused_links(p)
    if bad:
        print(
            f"{p.data.raw_dir}: {len(bad)} link(s) lead outside the data folder (DVC would copy "
            f"their targets): {', '.join(bad[:10])}. Copy the files in, or remove the links.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Remember probe results between runs, so a re-run probes only new or changed files.

A file is trusted unchanged while its path, size and modification time (ns) are (as make and
rsync do); anything else is probed and hashed again. The cache is one Parquet file that is
rewritten atomically with exactly the current files' entries when they change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import polars as pl

from dagster_project.core.atomic import write_parquet
from dagster_project.core.progress import Progress
from dagster_project.video.probe import ProbeError, VideoInfo, probe_many

Result = tuple[VideoInfo, str] | ProbeError
_TYPES = {"int": pl.Int64, "float": pl.Float64, "str": pl.String, "bool": pl.Boolean}
INFO = [field.name for field in fields(VideoInfo)]
# a column per field (typed): read back without parsing text, a thousand files a run
SCHEMA = {
    "path": pl.String,
    "size": pl.Int64,
    "mtime_ns": pl.Int64,
    "sha256": pl.String,
    "error": pl.String,  # a ProbeError's reason (its message next); null for a video
    "message": pl.String,
} | {field.name: _TYPES[str(field.type)] for field in fields(VideoInfo)}
Stored = tuple  # a row's columns after path, size and mtime_ns


def _stamp(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _encode(result: Result) -> Stored:
    if isinstance(result, ProbeError):
        return (None, result.reason, result.message, *[None] * len(INFO))
    info, sha = result
    return (sha, None, None, *(getattr(info, name) for name in INFO))


def _decode(stored: Stored) -> Result:
    sha, error, message, *info = stored
    return ProbeError(error, message) if error is not None else (VideoInfo(*info), sha)


def _known(cache_file: Path | None) -> dict[tuple[str, int, int], Stored]:
    """The stored results by (path, size, mtime_ns); none from a file of another layout."""
    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        table = pl.read_parquet(cache_file)
    except (OSError, pl.exceptions.PolarsError):  # damaged: everything is probed again
        return {}
    if table.schema != pl.Schema(SCHEMA):  # written by an older version: probed again
        return {}
    return {(row[0], row[1], row[2]): row[3:] for row in table.iter_rows()}


@dataclass(frozen=True)
class Probed:
    """Probe results of the paths asked, in order, with each file's size in bytes (-1:
    unreadable), and how many files were probed now (the others were known unchanged)."""

    results: list[Result]
    sizes: list[int]
    probed_now: int


def probe_with_cache(
    paths: list[str], cache_file: Path | None, say: Callable[[str], None] = lambda line: None
) -> Probed:
    """Probe results for `paths` (in order), probing only files the cache does not know."""
    known = _known(cache_file)
    stamps = []
    for path in paths:
        try:
            stamps.append((path, *_stamp(path)))
        except OSError:
            stamps.append((path, -1, -1))  # unreadable: probe_many reports why
    todo = [i for i, stamp in enumerate(stamps) if stamp not in known]
    progress = Progress("probe", len(todo), say, unit="files")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # the new files are probed (ffprobe processes) while the known results are read back
        probing = pool.submit(probe_many, [Path(paths[i]) for i in todo], done=progress)
        pending = set(todo)
        results = [None if i in pending else _decode(known[s]) for i, s in enumerate(stamps)]
        fresh = dict(zip(todo, probing.result(), strict=True))
    results = [fresh[i] if result is None else result for i, result in enumerate(results)]
    readable = sum(size >= 0 for _, size, _ in stamps)
    if cache_file is not None and (todo or len(known) != readable):  # else: unchanged
        # known results keep their stored columns (not encoded again)
        stored = [_encode(fresh[i]) if i in fresh else known[s] for i, s in enumerate(stamps)]
        rows = [(*s, *values) for s, values in zip(stamps, stored, strict=True) if s[1] >= 0]
        write_parquet(pl.DataFrame(rows, schema=SCHEMA, orient="row"), cache_file)
    return Probed(results, [size for _, size, _ in stamps], len(todo))

"""Remember probe results between runs, so a re-run probes only new or changed files.

A file is trusted unchanged while its path, size and modification time (ns) are (as make and
rsync do); anything else is probed and hashed again. The cache is one Parquet file that is
rewritten atomically with exactly the current files' entries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import polars as pl

from dagster_project.core.atomic import write_parquet
from dagster_project.core.progress import Progress
from dagster_project.video.probe import ProbeError, VideoInfo, probe_many

Result = tuple[VideoInfo, str] | ProbeError
SCHEMA = {"path": pl.String, "size": pl.Int64, "mtime_ns": pl.Int64, "result": pl.String}


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _encode(result: Result) -> str:
    if isinstance(result, ProbeError):
        return json.dumps({"error": [result.reason, result.message]})
    info, sha = result
    return json.dumps({"info": asdict(info), "sha256": sha})


def _decode(text: str) -> Result:
    data = json.loads(text)
    if "error" in data:
        return ProbeError(*data["error"])
    return VideoInfo(**data["info"]), data["sha256"]


def probe_with_cache(
    paths: list[Path], cache_file: Path | None, say: Callable[[str], None] = lambda line: None
) -> tuple[list[Result], int]:
    """Probe results for `paths` (in order), probing only files the cache does not know.

    Returns (results, how many files were probed now).
    """
    known: dict[tuple[str, int, int], str] = {}
    if cache_file is not None and cache_file.is_file():
        for row in pl.read_parquet(cache_file).iter_rows():
            known[row[0], row[1], row[2]] = row[3]
    stamps = []
    for path in paths:
        try:
            stamps.append((str(path), *_stamp(path)))
        except OSError:
            stamps.append((str(path), -1, -1))  # unreadable: probe_many reports why
    todo = [i for i, stamp in enumerate(stamps) if stamp not in known]
    progress = Progress("probe", len(todo), say, unit="files")
    fresh = dict(zip(todo, probe_many([paths[i] for i in todo], done=progress), strict=True))
    results = [fresh[i] if i in fresh else _decode(known[s]) for i, s in enumerate(stamps)]
    if cache_file is not None:
        # known results keep their stored text (not encoded again)
        texts = [_encode(fresh[i]) if i in fresh else known[s] for i, s in enumerate(stamps)]
        rows = [(*s, text) for s, text in zip(stamps, texts, strict=True) if s[1] >= 0]
        write_parquet(pl.DataFrame(rows, schema=SCHEMA, orient="row"), cache_file)
    return results, len(todo)

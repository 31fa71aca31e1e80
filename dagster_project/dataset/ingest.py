"""Find videos and their captions under the data folder, in the conventions people bring.

Each folder listed in params (`data.folders`, relative to `data.raw_dir`) uses one convention:

- `sidecar`: `clip.txt` beside `clip.mp4` (searched recursively);
- `metadata`: `metadata.csv` or `metadata.jsonl` with `file_name` and `caption` columns (the
  Hugging Face videofolder convention); `file_name` is relative to the folder;
- `prompts`: `prompts.txt` and `videos.txt`, line-aligned (the finetrainers convention);
- `auto` (default): `metadata` if a metadata file is there, else `prompts` if both text files
  are there, else `sidecar`.

Captions are UTF-8 with or without BOM, CRLF or LF; surrounding whitespace is stripped. A caption
that spans several lines (a multi-line sidecar file, a quoted CSV field) is one caption whose
lines are joined with single spaces; an empty or blank caption counts as missing.

Every path is resolved (symlinks followed) and must stay inside the data folder. Rows that
cannot be used carry a reason and a message instead of failing the run.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
METADATA_FILES = ("metadata.csv", "metadata.jsonl")

VIDEOS_SCHEMA = {
    "path": pl.String,  # relative to the data folder, POSIX
    "caption": pl.String,
    "source": pl.String,  # the caption convention (and file) it came from
    "reason": pl.String,  # null when usable so far; else a rejects reason code
    "message": pl.String,
}


@dataclass(frozen=True)
class Candidate:
    path: str
    caption: str | None
    source: str
    reason: str | None = None
    message: str | None = None


def normalize_caption(text: str | None) -> str | None:
    """Strip a BOM and whitespace; join the lines of a multi-line caption with spaces."""
    if text is None:
        return None
    lines = (line.strip() for line in text.removeprefix("\ufeff").splitlines())
    return " ".join(line for line in lines if line) or None


def read_text(path: Path) -> str:
    """UTF-8 text with or without BOM (UnicodeDecodeError when not UTF-8)."""
    return path.read_bytes().decode("utf-8-sig")


def confine(data_dir: Path, path: Path) -> Path | None:
    """`path` resolved (symlinks followed); None when it leaves the data folder."""
    resolved = path.resolve()
    return resolved if resolved.is_relative_to(data_dir) else None


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _check_file(data_dir: Path, path: Path, caption: str | None, source: str) -> Candidate:
    """A candidate for `path` with its caption, or the reason it is unusable.

    An accepted candidate's path is the resolved file (symlinks followed), relative to the
    data folder: later stages open exactly the file that was confined here.
    """
    relative = _relative(data_dir, path)
    try:
        resolved = path.resolve()
    except (OSError, ValueError) as error:  # a loop of links, a NUL in a metadata name
        return Candidate(relative, caption, source, "unreadable", f"{relative}: {error}")
    if not resolved.is_relative_to(data_dir):
        return Candidate(
            relative, caption, source, "outside_data_folder",
            f"{relative}: resolves to {resolved}, outside the data folder {data_dir}",
        )  # fmt: skip
    if not resolved.is_file():
        return Candidate(relative, caption, source, "unreadable", f"{relative}: no such file")
    if caption is None:
        return Candidate(
            relative, None, source, "missing_caption", f"{relative}: no caption ({source})"
        )
    return Candidate(resolved.relative_to(data_dir).as_posix(), caption, source)


def _relative(data_dir: Path, path: Path) -> str:
    """The path normalized (`a/../b` -> `b`, symlinks kept), relative to the data folder."""
    return Path(os.path.relpath(os.path.normpath(data_dir / path), data_dir)).as_posix()


def _sidecar(data_dir: Path, folder: Path, skip: list[Path]) -> Iterator[Candidate]:
    for video in sorted(folder.rglob("*")):
        if not _is_video(video) or video.is_dir() or any(video.is_relative_to(s) for s in skip):
            continue
        sidecar = video.with_suffix(".txt")
        try:
            caption = normalize_caption(read_text(sidecar)) if sidecar.is_file() else None
        except (OSError, UnicodeDecodeError) as error:
            relative = _relative(data_dir, video)
            why = "is not UTF-8" if isinstance(error, UnicodeDecodeError) else "cannot be read"
            message = f"{relative}: caption file {sidecar.name} {why}"
            yield Candidate(relative, None, "sidecar", "unreadable", message)
            continue
        yield _check_file(data_dir, video, caption, "sidecar")


def _metadata_rows(metadata: Path) -> list[dict[str, str]]:
    text = read_text(metadata)
    if metadata.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines(keepends=True)))
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "file_name" not in row or "caption" not in row:
            raise ValueError(f"row {number} has no file_name and caption")
    return rows


def _metadata(data_dir: Path, folder: Path, skip: list[Path]) -> Iterator[Candidate]:
    found = [folder / name for name in METADATA_FILES if (folder / name).is_file()]
    metadata = found[0] if found else folder / METADATA_FILES[0]
    source = _relative(data_dir, metadata)
    try:
        rows = _metadata_rows(metadata)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as error:
        yield Candidate(source, None, source, "bad_metadata", f"{source}: {error}")
        rows = []
    listed = set()
    for row in rows:
        video = folder / str(row["file_name"])
        listed.add(video.resolve())
        caption = row["caption"] if isinstance(row["caption"], str) else None
        yield _check_file(data_dir, video, normalize_caption(caption), source)
    for video in sorted(folder.rglob("*")):
        if any(video.is_relative_to(s) for s in skip):
            continue
        if _is_video(video) and video.resolve() not in listed and video.is_file():
            yield _check_file(data_dir, video, None, f"{source} (not listed)")


def _prompts(data_dir: Path, folder: Path) -> Iterator[Candidate]:
    source = _relative(data_dir, folder / "videos.txt")
    try:
        prompts = read_text(folder / "prompts.txt").splitlines()
        videos = read_text(folder / "videos.txt").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        yield Candidate(source, None, source, "bad_metadata", f"{source}: {error}")
        return
    for number, line in enumerate(videos):
        if not line.strip():
            continue
        caption = normalize_caption(prompts[number]) if number < len(prompts) else None
        yield _check_file(data_dir, folder / line.strip(), caption, source)


def _convention(folder: Path, captions: str) -> str:
    if captions != "auto":
        return captions
    if any((folder / name).is_file() for name in METADATA_FILES):
        return "metadata"
    if (folder / "prompts.txt").is_file() and (folder / "videos.txt").is_file():
        return "prompts"
    return "sidecar"


def discover_videos(data_dir: Path, folders: list[tuple[str, str]]) -> pl.DataFrame:
    """One row per candidate video (or unusable input) in the listed (folder, convention)s."""
    data_dir = data_dir.resolve()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data.raw_dir: no such folder: {data_dir}")
    roots = []
    for index, (name, _) in enumerate(folders):
        root = confine(data_dir, data_dir / name)
        if root is None or not root.is_dir():
            where = "is outside the data folder" if root is None else "is not a folder"
            raise FileNotFoundError(f"data.folders.{index}.path: {name} {where} ({data_dir})")
        roots.append(root)

    candidates: list[Candidate] = []
    for root, (_, captions) in zip(roots, folders, strict=True):
        convention = _convention(root, captions)
        nested = [r for r in roots if r != root and r.is_relative_to(root)]  # scanned on their own
        if convention == "metadata":
            candidates += _metadata(data_dir, root, nested)
        elif convention == "prompts":
            candidates += _prompts(data_dir, root)
        else:
            candidates += _sidecar(data_dir, root, nested)

    accepted: set[str] = set()
    rows = []
    for c in candidates:
        if c.reason is None and c.path in accepted:
            message = f"{c.path}: listed twice (again in {c.source})"
            c = Candidate(c.path, c.caption, c.source, "duplicate", message)
        elif c.reason is None:
            accepted.add(c.path)
        rows.append(asdict(c))
    return pl.DataFrame(rows, schema=VIDEOS_SCHEMA)

"""Find videos and their captions under the data folder, in the conventions people bring.

Each folder listed in params (`data.folders`, relative to `data.raw_dir`) uses one convention:

- `sidecar`: `clip.txt` beside `clip.mp4` (searched recursively);
- `metadata`: `metadata.csv` or `metadata.jsonl` with `file_name` and `caption` columns (the
  Hugging Face videofolder convention); `file_name` is relative to the folder;
- `prompts`: `prompts.txt` and `videos.txt`, line-aligned (the finetrainers convention);
- `auto` (default): `metadata` if a metadata file is there, else `prompts` if both text files
  are there, else `sidecar`.

Split folders (the Hugging Face convention): a clip under `train/` or `validation/` (also
`val/`) directly inside a listed folder has its split fixed by that folder; every other clip is
split by content hash (or `data.val_files`). A folder with split subfolders and no caption file
of its own scans each split subfolder as a folder of its own, so each may hold its own
`metadata.csv`.

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
import stat
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
# Hugging Face's split folder names -> our split names
SPLIT_FOLDERS = {"train": "train", "validation": "val", "val": "val"}

VIDEOS_SCHEMA = {
    "path": pl.String,  # relative to the data folder, POSIX
    "caption": pl.String,
    "source": pl.String,  # the caption convention (and file) it came from
    "split": pl.String,  # fixed by a split folder (train/, validation/); null: by content hash
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
    split: str | None = None


@dataclass(frozen=True)
class Scan:
    """One folder to scan: its convention, and the listed folder whose split subfolders fix
    the split of the clips found in it."""

    folder: Path
    captions: str
    split_root: Path


def _below(folder: str, path: str) -> str | None:
    """`path` relative to `folder` when it lies below it (both normalized, absolute); string
    work, where `Path.relative_to` costs a parse per call (thousands of clips a run)."""
    prefix = folder.rstrip(os.sep) + os.sep
    return path[len(prefix) :] if path.startswith(prefix) else None


def folder_split(split_root: Path, path: Path | str) -> str | None:
    """The split fixed by the split folder `path` lies in (as listed, links not followed)."""
    below = _below(str(split_root), os.path.normpath(path))
    parts = below.split(os.sep) if below is not None else []
    return SPLIT_FOLDERS.get(parts[0]) if len(parts) > 1 else None


def normalize_caption(text: str | None) -> str | None:
    """Strip a BOM and whitespace; join the lines of a multi-line caption with spaces."""
    if text is None:
        return None
    lines = (line.strip() for line in text.removeprefix("\ufeff").splitlines())
    return " ".join(line for line in lines if line) or None


def control_characters(caption: str) -> str:
    """The control characters in a caption (a NUL byte, an escape), named; '' when none. A tab
    counts as a space."""
    if caption.isprintable():  # the common case, at C speed: no control character at all
        return ""
    found = sorted({c for c in caption if unicodedata.category(c) == "Cc" and c != "\t"})
    return ", ".join(f"U+{ord(c):04X}" for c in found)


class NotARegularFile(OSError):
    """A path that exists but is no regular file (a folder, a FIFO, a device)."""


def read_text(path: str | Path) -> str:
    """UTF-8 text with or without BOM (UnicodeDecodeError when not UTF-8). Unbuffered reads:
    `open` costs twice the system calls of a whole read of a caption (thousands a run)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the run
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(f"{path}: not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8-sig")


def _resolve(data_dir: str, path: str) -> tuple[str, bool | None]:
    """`path` resolved as `Path.resolve` gives it, for a resolved `data_dir`, and whether it
    is a regular file when the `lstat`s already tell (None: not known).

    A path below `data_dir` with no `..` and no link among its components below it is its own
    resolution: that takes one `lstat` per component below the folder, where `resolve` checks
    every component from the root (the cost of a run that lists thousands of clips).
    """
    relative = _below(data_dir, path)
    if relative is None:
        return str(Path(path).resolve()), None
    current, mode = data_dir, 0
    for part in relative.split(os.sep):
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
            link = part == ".." or stat.S_ISLNK(mode)
        except OSError:  # missing, unreadable: `resolve` says what it makes of it
            link = True
        if link:
            return str(Path(path).resolve()), None
    return path, stat.S_ISREG(mode)


def resolve_below(data_dir: Path, path: Path) -> Path:
    """`path` resolved (symlinks followed), as `Path.resolve` gives it, for a resolved
    `data_dir`; one `lstat` per component below the folder when no link is met."""
    resolved, _ = _resolve(str(data_dir), str(path))
    return Path(resolved)


def confine(data_dir: Path, path: Path | str) -> Path | None:
    """`path` resolved (symlinks followed); None when it leaves the (resolved) data folder."""
    folder = str(data_dir)
    resolved, _ = _resolve(folder, str(path))
    inside = resolved == folder or _below(folder, resolved) is not None
    return Path(resolved) if inside else None


def is_video(name: str | Path) -> bool:
    """A video file, by its suffix (what ingestion picks up)."""
    return os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


def _files_below(folder: Path, skip: list[Path]) -> list[str]:
    """The files under `folder` (links to files included; links to folders neither listed
    nor followed, as `Path.rglob` does), the folders in `skip` left out, in `sorted(rglob)`
    order. One `scandir` per folder and string paths: the listing of thousands of clips."""
    pruned = {str(s) for s in skip}
    found: list[tuple[list[str], str]] = []
    for top, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if os.path.join(top, f) not in pruned]
        below = os.path.relpath(top, folder)
        parts = [] if below == "." else below.split(os.sep)
        found += ((parts + [name], os.path.join(top, name)) for name in files)
    found.sort(key=lambda item: item[0])  # by components, as Paths sort
    return [path for _, path in found]


def _check_file(
    data_dir: Path, path: Path | str, caption: str | None, source: str, split_root: Path
) -> Candidate:
    """A candidate for `path` with its caption, or the reason it is unusable.

    An accepted candidate's path is the resolved file (symlinks followed), relative to the
    data folder: later stages open exactly the file that was confined here. Its split is the
    one its split folder fixes, if any. (Strings, not Paths: thousands of clips a run.)
    """
    folder, path = str(data_dir), str(path)  # a Path's string, or a listing's (both clean)
    try:
        resolved, regular = _resolve(folder, path)
    except (OSError, ValueError) as error:  # a loop of links, a NUL in a metadata name
        reason, why = "unreadable", str(error)
    else:
        inside = _below(folder, resolved)
        if inside is None and resolved != folder:
            reason = "outside_data_folder"
            why = f"resolves to {resolved}, outside the data folder {data_dir}"
        elif inside is None or not (regular if regular is not None else os.path.isfile(resolved)):
            reason, why = "unreadable", "no such file"
        elif caption is None:
            reason, why = "missing_caption", f"no caption ({source})"
        elif control := control_characters(caption):
            reason = "bad_caption"
            why = f"the caption holds control characters ({control}; {source})"
        else:
            split = folder_split(split_root, path)
            return Candidate(inside.replace(os.sep, "/"), caption, source, split=split)
    relative = _relative(data_dir, path)  # as given (links kept): only to say what is wrong
    return Candidate(relative, caption, source, reason, f"{relative}: {why}")


def _resolved_or_none(data_dir: Path, path: Path) -> Path | None:
    try:
        return resolve_below(data_dir, path)
    except (OSError, ValueError):  # a loop of links, a NUL in a metadata name: not a file
        return None


def _relative(data_dir: Path, path: Path | str) -> str:
    """The path normalized (`a/../b` -> `b`, symlinks kept), relative to the data folder."""
    normal = os.path.normpath(os.path.join(data_dir, path))
    below = _below(str(data_dir), normal)
    below = below if below is not None else os.path.relpath(normal, data_dir)
    return below.replace(os.sep, "/")


def _sidecar(data_dir: Path, scan: Scan, skip: list[Path]) -> Iterator[Candidate]:
    for name in _files_below(scan.folder, skip):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() not in VIDEO_SUFFIXES:
            continue
        sidecar = stem + ".txt"
        try:
            caption = normalize_caption(read_text(sidecar))
        except (FileNotFoundError, NotARegularFile):  # a caption file is a regular file
            caption = None
        except (OSError, UnicodeDecodeError) as error:
            relative = _relative(data_dir, name)
            why = "is not UTF-8" if isinstance(error, UnicodeDecodeError) else "cannot be read"
            message = f"{relative}: caption file {os.path.basename(sidecar)} {why}"
            yield Candidate(relative, None, "sidecar", "unreadable", message)
            continue
        yield _check_file(data_dir, name, caption, "sidecar", scan.split_root)


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


def _metadata(data_dir: Path, scan: Scan, skip: list[Path]) -> Iterator[Candidate]:
    folder = scan.folder
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
        listed.add(_resolved_or_none(data_dir, video))
        caption = row["caption"] if isinstance(row["caption"], str) else None
        yield _check_file(data_dir, video, normalize_caption(caption), source, scan.split_root)
    for video in map(Path, _files_below(folder, skip)):
        if (
            is_video(video.name)
            and resolve_below(data_dir, video) not in listed
            and video.is_file()
        ):
            yield _check_file(data_dir, video, None, f"{source} (not listed)", scan.split_root)


def _prompts(data_dir: Path, scan: Scan) -> Iterator[Candidate]:
    folder = scan.folder
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
        yield _check_file(data_dir, folder / line.strip(), caption, source, scan.split_root)


def _has_caption_file(folder: Path) -> bool:
    return any((folder / name).is_file() for name in (*METADATA_FILES, "prompts.txt"))


def _convention(folder: Path, captions: str) -> str:
    if captions != "auto":
        return captions
    if any((folder / name).is_file() for name in METADATA_FILES):
        return "metadata"
    if (folder / "prompts.txt").is_file() and (folder / "videos.txt").is_file():
        return "prompts"
    return "sidecar"


def _scans(root: Path, captions: str) -> list[Scan]:
    """The listed folder, and its split subfolders on their own when it has no caption file
    (each may then hold its own metadata.csv, as on the Hugging Face hub)."""
    scans = [Scan(root, captions, root)]
    if not _has_caption_file(root):
        splits = [root / name for name in SPLIT_FOLDERS if (root / name).is_dir()]
        scans += [Scan(folder, captions, root) for folder in splits]
    return scans


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

    scans: dict[Path, Scan] = {}  # by folder: a folder listed twice is scanned once
    for root, (_, captions) in zip(roots, folders, strict=True):
        for scan in _scans(root, captions):
            scans.setdefault(scan.folder, scan)
    candidates: list[Candidate] = []
    for scan in scans.values():
        convention = _convention(scan.folder, scan.captions)
        # folders scanned on their own are skipped by the folders that hold them
        nested = [f for f in scans if f != scan.folder and f.is_relative_to(scan.folder)]
        if convention == "metadata":
            candidates += _metadata(data_dir, scan, nested)
        elif convention == "prompts":
            candidates += _prompts(data_dir, scan)
        else:
            candidates += _sidecar(data_dir, scan, nested)

    accepted: set[str] = set()
    rows = []
    for c in candidates:
        if c.reason is None and c.path in accepted:
            message = f"{c.path}: listed twice (again in {c.source})"
            c = Candidate(c.path, c.caption, c.source, "duplicate", message, c.split)
        elif c.reason is None:
            accepted.add(c.path)
        rows.append(vars(c))  # its fields, all strings (asdict deep-copies each)
    return pl.DataFrame(rows, schema=VIDEOS_SCHEMA)

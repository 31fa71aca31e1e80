"""A content-addressed tensor cache: safetensors files named by the hash of what shaped them.

The key of an entry hashes everything that determines its tensors (the video's sha256 or the
caption text, the preprocessing settings, the encoder's identity), so an entry is never stale:
new content gets a new key, and unchanged content is found again whatever its file name.

Entries are trusted only as far as they check out:
- each carries a checksum of its tensors in its safetensors metadata (`sha256`), which `verify`
  and training recompute; encoding re-encodes an entry whose header, length or checksum field
  does not check out (a truncated file, one written before checksums) without reading it whole,
  and remembers the entries found whole by size and modification time (`whole.parquet`);
- the folder is marked as this project's cache (`CACHEDIR.TAG`, the cache-directory tagging
  convention) when the first entry is written, and `verify`/`prune` refuse a folder without the
  mark; they only ever look at files of the cache's own layout
  (`{text,latents}/ab/<64 hex>.safetensors` and the temporary files of killed writers).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dagster_project.core.atomic import atomic_path, write_parquet
from dagster_project.core.paths import CacheFiles

KINDS = ("text", "latents")
MARK = "CACHEDIR.TAG"
MARK_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# The tensor cache of a video-training project (data.cache_dir). Its `prune` deletes\n"
    "# entries here that the project no longer references.\n"
)
CHECKSUM = "sha256"  # the safetensors metadata key of an entry's checksum
ENTRY = re.compile(r"(text|latents)/[0-9a-f]{2}/[0-9a-f]{64}\.safetensors")
WHOLE = "whole.parquet"  # in `<kind>/`: the entries found whole, with their size and mtime
LEFTOVER = re.compile(r"(text|latents)/[0-9a-f]{2}/\.[^/]+\.tmp")  # a killed writer's


class CacheError(RuntimeError):
    """A cache entry, or the cache folder, is not what it must be; the message names it."""


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """The sha256 of the tensors' names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


HEADER_READ = 4096  # one read holds an entry's length field and (nearly always) its header


def _header(path: Path | str) -> dict | None:
    """The safetensors header of `path` when the file is whole (its length is what the header
    says), else None. One open, read and fstat: encoding checks every entry of the project on
    every run."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        head = os.read(fd, HEADER_READ)
        (size,) = struct.unpack_from("<Q", head)
        length = os.fstat(fd).st_size
        if 8 + size > length:  # garbage or cut inside the header (its length field says more)
            return None
        while len(head) < 8 + size:  # a header longer than the first read
            more = os.read(fd, 8 + size - len(head))
            if not more:
                return None
            head += more
        header = json.loads(head[8 : 8 + size])
        tensors = [v for k, v in header.items() if k != "__metadata__"]
        end = max((tensor["data_offsets"][1] for tensor in tensors), default=0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        return None
    finally:
        os.close(fd)
    return header if length == 8 + size + end else None


def check_entry(path: Path) -> str | None:
    """Why the entry at `path` cannot be used (unreadable, checksum, non-finite), or None. Reads
    the whole file."""
    header = _header(path)
    if header is None:
        return "unreadable: truncated or not a safetensors file"
    recorded = (header.get("__metadata__") or {}).get(CHECKSUM)
    if recorded is None:
        return "no checksum (written before checksums): encode it again"
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises several types for a damaged file
        return f"unreadable: {error}"
    if checksum(tensors) != recorded:
        return "checksum mismatch: its tensors are not the ones written"
    bad = [name for name, tensor in tensors.items() if not torch.isfinite(tensor).all()]
    return f"non-finite values in {', '.join(bad)}" if bad else None


def load_entry(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of the entry at `path` (the cache entry of `what`, e.g. a clip), checked:
    a damaged entry raises CacheError naming the file and `what`."""
    problem = check_entry(path) if path.is_file() else "missing"
    if problem:
        raise CacheError(
            f"{path} (the cache entry of {what}): {problem}. Run `python -m "
            "dagster_project.cli.cache_tool verify`, then materialize the encoding assets again "
            "(they encode damaged entries anew)"
        )
    with safe_open(str(path), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118


class TensorCache:
    """safetensors entries under `root/kind/ab/abcdef....safetensors`."""

    def __init__(self, root: Path, kind: str) -> None:
        self.base = root
        self.root = root / kind
        self._root = str(self.root)

    def path(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """The entry's path as a string (the checks of every entry make no Path each)."""
        return os.path.join(self._root, key[:2], f"{key}.safetensors")

    def __contains__(self, key: str) -> bool:
        """Whether the entry exists whole, with a checksum (its header and length checked; the
        checksum itself is checked by `verify` and when training reads it)."""
        header = _header(self._file(key))
        return header is not None and CHECKSUM in (header.get("__metadata__") or {})

    def whole(self, keys: Iterable[str]) -> set[str]:
        """The `keys` whose entries exist whole, with a checksum (as `in`). An entry found whole
        by an earlier call and unchanged since (its size and modification time, as the probe
        cache trusts a video) takes one `stat`, not a read of its header: a run checks every
        entry of the project. The entries found whole are remembered in `WHOLE`."""
        memo = self.root / WHOLE
        try:
            rows = pl.read_parquet(memo, columns=["key", "size", "mtime_ns"]).iter_rows()
            earlier = {key: (size, mtime) for key, size, mtime in rows}
        except (OSError, pl.exceptions.PolarsError):  # none yet, or damaged: check them all
            earlier = {}
        found: dict[str, tuple[int, int]] = {}
        for key in keys:
            try:
                stat = os.stat(self._file(key))
            except OSError:
                continue
            stamp = (stat.st_size, stat.st_mtime_ns)
            if earlier.get(key) == stamp or key in self:
                found[key] = stamp
        if found != earlier:
            rows = [(key, size, mtime) for key, (size, mtime) in found.items()]
            schema = {"key": pl.String, "size": pl.Int64, "mtime_ns": pl.Int64}
            write_parquet(pl.DataFrame(rows, schema=schema, orient="row"), memo)
        return set(found)

    def write(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Write an entry atomically (a killed writer leaves no partial file under its name),
        with its checksum; the first write marks the folder as the cache."""
        mark_cache(self.base)
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        with atomic_path(self.path(key)) as tmp:
            save_file(tensors, str(tmp), metadata={CHECKSUM: checksum(tensors)})


def mark_cache(root: Path) -> None:
    """Mark `root` as this project's tensor cache (once)."""
    mark = root / MARK
    if not mark.is_file():
        root.mkdir(parents=True, exist_ok=True)
        with atomic_path(mark) as tmp:
            tmp.write_text(MARK_TEXT)


def cache_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(entries, leftover temporary files of killed writers) under a cache folder: only files of
    the cache's own layout. Raises CacheError for a folder that is not marked as a cache."""
    if not root.is_dir():
        return [], []
    files = sorted(p for kind in KINDS for p in (root / kind).glob("*/*") if p.is_file())
    names = {p: p.relative_to(root).as_posix() for p in files}
    entries = [p for p in files if ENTRY.fullmatch(names[p])]
    leftovers = [p for p in files if LEFTOVER.fullmatch(names[p])]
    if (entries or leftovers) and not (root / MARK).is_file():  # our writer marks first
        raise CacheError(
            f"{root}: not marked as this project's cache (no {MARK}): refusing to touch it. "
            "Check data.cache_dir; the encoding assets mark the folder they write"
        )
    return entries, leftovers


def referenced(files: CacheFiles) -> set[Path]:
    """Cache files the current text and latent indexes point at."""
    keep: set[Path] = set()
    for index, kind, column in (
        (files.text_index, "text", "text_key"),
        (files.latent_index, "latents", "latent_key"),
    ):
        cache = TensorCache(files.cache_dir, kind)
        keep |= {cache.path(key) for key in pl.read_parquet(index)[column].drop_nulls()}
    return keep

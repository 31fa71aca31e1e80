"""A content-addressed tensor cache: safetensors files named by the hash of what shaped them.

The key of an entry hashes everything that determines its tensors (the video's sha256 or the
caption text, the preprocessing settings, the encoder's identity), so an entry is never stale:
new content gets a new key, and unchanged content is found again whatever its file name.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import torch
from safetensors.torch import load_file, save_file

from dagster_project.core.atomic import atomic_path
from dagster_project.core.paths import CacheFiles


class TensorCache:
    """safetensors entries under `root/kind/ab/abcdef....safetensors`."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root = root / kind

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def write(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Write an entry atomically: a killed writer leaves no partial file under its name."""
        with atomic_path(self.path(key)) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))

    def read(self, key: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.path(key)))


def verify_entry(path: Path) -> str | None:
    """Why the cache file at `path` is unusable (unreadable, truncated, non-finite), or None."""
    try:
        tensors = load_file(str(path))
    except Exception as error:  # safetensors raises several types for a damaged file
        return f"unreadable: {error}"
    bad = [name for name, tensor in tensors.items() if not torch.isfinite(tensor).all()]
    return f"non-finite values in {', '.join(bad)}" if bad else None


def cache_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(entries, leftover temporary files of killed writers) under a cache folder."""
    if not root.is_dir():
        return [], []
    files = sorted(p for p in root.rglob("*") if p.is_file())
    leftovers = [p for p in files if p.name.startswith(".") and p.name.endswith(".tmp")]
    entries = [p for p in files if p.suffix == ".safetensors" and p not in leftovers]
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

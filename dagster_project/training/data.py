"""Training data: clips joined to their cache entries, read through a DataLoader."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import torch
from torch.utils.data import Dataset

from dagster_project.core.paths import CacheFiles
from dagster_project.dataset.cache import TensorCache, load_entry
from dagster_project.dataset.split import split_clips


def clip_table(files: CacheFiles, split: str) -> pl.DataFrame:
    """The training samples of one split: one row per window of each clip (its `window` start),
    with the paths of its cached latents and caption embeddings. Windows that could not be
    decoded were reported by the encoding stage and are left out."""
    latents = pl.read_parquet(files.latent_index)
    if "window" not in latents.columns:  # an index from before windows: one per clip
        latents = latents.with_columns(window=pl.lit(0, pl.Int64))
    manifest = split_clips(pl.read_parquet(files.manifest), split)
    missing = manifest.filter(~pl.col("sha256").is_in(latents["sha256"].implode()))
    texts = pl.read_parquet(files.text_index)
    no_text = manifest.filter(~pl.col("sha256").is_in(texts["sha256"].drop_nulls().implode()))
    if missing.height or no_text.height:
        first = (missing if missing.height else no_text)["path"][0]
        raise RuntimeError(
            f"{missing.height + no_text.height} {split} clips have no cache entry (first: "
            f"{first}); materialize the encoding assets first"
        )
    windows = latents.filter(pl.col("error").is_null()).select("sha256", "window", "latent_key")
    table = (
        manifest.join(windows, on="sha256", how="inner")
        .join(texts, on="sha256", how="left")
        .sort("path", "window")
    )
    latent_cache = TensorCache(files.cache_dir, "latents")
    text_cache = TensorCache(files.cache_dir, "text")
    return table.with_columns(
        pl.col("latent_key")
        .map_elements(lambda k: str(latent_cache.path(k)), pl.String)
        .alias("latent_file"),
        pl.col("text_key")
        .map_elements(lambda k: str(text_cache.path(k)), pl.String)
        .alias("text_file"),
    )


PRELOAD_BYTES = 2 * 1024**3  # a cache smaller than this is read into memory once


class CachedClips(Dataset):
    """Posterior moments (`mean`, `logvar`) and caption conditioning (the family pipeline's
    argument names) of each clip, from safetensors files.

    safetensors reads through a memory map; when the whole cache is small (under
    `preload_bytes`), it is read once up front, so no training step waits on file reads. Every
    entry is checked when read (its checksum, finite values): a damaged one stops the run with
    an error naming its file and clip, not a NaN loss later.
    """

    def __init__(self, table: pl.DataFrame, preload_bytes: int = PRELOAD_BYTES) -> None:
        self.latent_files = [Path(p) for p in table["latent_file"]]
        self.text_files = [Path(p) for p in table["text_file"]]
        self.clips = table["path"].to_list()
        size = sum(p.stat().st_size for p in self.latent_files + self.text_files)
        self.preloaded = [self._read(i) for i in range(len(self))] if size < preload_bytes else None

    def __len__(self) -> int:
        return len(self.latent_files)

    def _read(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[index]
        return {
            **load_entry(self.latent_files[index], f"clip {clip}: its latents"),
            **load_entry(self.text_files[index], f"clip {clip}: its caption"),
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.preloaded[index] if self.preloaded is not None else self._read(index)


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a same-bucket batch (captions are cached at the family's fixed text length)."""
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


MOMENTS = ("mean", "logvar")


def split_batch(
    batch: dict[str, torch.Tensor], device: torch.device
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(posterior moments, caption conditioning) of a batch, on `device`."""
    moved = {key: value.to(device) for key, value in batch.items()}
    moments = {key: moved.pop(key) for key in MOMENTS}
    return moments, moved

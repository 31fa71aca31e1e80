"""Fill the caches: caption embeddings and VAE latents, encoding only what is missing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import polars as pl
import torch

from dagster_project.core.hashing import cache_key
from dagster_project.core.shapes import Bucket
from dagster_project.dataset.cache import TensorCache
from dagster_project.models.spec import PromptEncoder
from dagster_project.video.decode import DECODER_VERSION, DecodeError, decode_clip


class VideoEncoder(Protocol):
    """What the latent cache needs of a model family: its VAE's identity and encoding."""

    identity: str

    def encode_video(self, frames: torch.Tensor) -> dict[str, torch.Tensor]: ...


TEXT_INDEX_SCHEMA = {"sha256": pl.String, "text_key": pl.String}
LATENT_INDEX_SCHEMA = {
    "sha256": pl.String,
    "latent_key": pl.String,  # null when the clip could not be decoded
    "bucket": pl.String,
    "error": pl.String,
}


@dataclass(frozen=True)
class CacheStats:
    encoded: int
    cached: int


def cache_text_embeddings(
    manifest: pl.DataFrame, cache: TensorCache, encoder: PromptEncoder, batch_size: int = 32
) -> tuple[pl.DataFrame, CacheStats]:
    """Embed every distinct caption not yet cached; index each clip's embedding key."""
    keys = [cache_key(caption=c, encoder=encoder.identity) for c in manifest["caption"]]
    todo = {k: c for k, c in zip(keys, manifest["caption"], strict=True) if k not in cache}
    items = list(todo.items())
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        embeddings = encoder.encode([caption for _, caption in chunk])
        for (key, _), tensors in zip(chunk, embeddings, strict=True):
            cache.write(key, tensors)
    index = pl.DataFrame({"sha256": manifest["sha256"], "text_key": keys}, schema=TEXT_INDEX_SCHEMA)
    return index, CacheStats(encoded=len(todo), cached=len(set(keys)) - len(todo))


def cache_latents(
    manifest: pl.DataFrame,
    raw_dir: Path,
    cache: TensorCache,
    encoder: VideoEncoder,
    fps: float,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[pl.DataFrame, CacheStats]:
    """Decode and encode every clip whose (content, bucket, fps, VAE) is not cached yet.

    A clip ffmpeg cannot decode does not stop the others: its index row has no key and says why
    (training leaves it out).
    """
    rows = []
    encoded = 0
    for i, row in enumerate(manifest.iter_rows(named=True)):
        bucket = Bucket.parse(row["bucket"])
        key = cache_key(
            video=row["sha256"],
            bucket=bucket.name,
            fps=fps,
            vae=encoder.identity,
            decoder=DECODER_VERSION,
        )
        error = None
        if key not in cache:
            try:
                frames = decode_clip(
                    raw_dir / row["path"], *bucket, fps, row["sample_aspect_ratio"]
                )
            except DecodeError as failure:
                key, error = None, str(failure)
            else:
                cache.write(key, encoder.encode_video(torch.from_numpy(frames)))
                encoded += 1
        rows.append((row["sha256"], key, row["bucket"], error))
        progress(i + 1, manifest.height)
    index = pl.DataFrame(rows, schema=LATENT_INDEX_SCHEMA, orient="row")
    failed = index["error"].is_not_null().sum()
    return index, CacheStats(encoded=encoded, cached=manifest.height - encoded - failed)

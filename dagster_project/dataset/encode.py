"""Fill the caches: caption embeddings and VAE latents, encoding only what is missing.

Latents are encoded per window of a clip (dataset/windows.py). Decoding overlaps encoding: a
few windows ahead are decoded by ffmpeg in background threads (a bounded queue, memory capped)
while the VAE encodes the current one. With several processes (`encode.nproc_per_node`, the
encode worker under torchrun) each takes the clips whose content hash falls to its rank, and
every process writes its entries atomically to the one cache.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl
import torch

from dagster_project.core.hashing import cache_key
from dagster_project.core.shapes import Bucket
from dagster_project.dataset.cache import TensorCache
from dagster_project.dataset.windows import WindowRule
from dagster_project.models.spec import PromptEncoder
from dagster_project.video.audio import decode_audio
from dagster_project.video.decode import (
    DECODER_VERSION,
    DecodeError,
    decode_clip,
    frames_at_fps,
)


class VideoEncoder(Protocol):
    """What the latent cache needs of a model family: its VAE's identity and encoding, and
    for a family that trains on sound (LTX-2) the audio it takes and its encoding."""

    identity: str

    @property
    def audio_format(self) -> tuple[int, int] | None: ...  # (sample rate, channels)

    def encode_video(self, frames: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def encode_audio(self, waveform: np.ndarray | None, frames: int) -> dict[str, torch.Tensor]: ...


# decoded frames [F, H, W, 3], and the window's audio where the family takes audio and the clip
# has it, or why the window could not be decoded
Decoded = tuple[torch.Tensor, np.ndarray | None] | DecodeError


TEXT_INDEX_SCHEMA = {"sha256": pl.String, "text_key": pl.String}
LATENT_INDEX_SCHEMA = {
    "sha256": pl.String,
    "window": pl.Int64,  # the window's start frame at the bucket's rate
    "latent_key": pl.String,  # null when the window could not be decoded
    "bucket": pl.String,
    "error": pl.String,
}
PREFETCH_BYTES = 512 * 1024**2  # decoded windows waiting for the encoder, at most


@dataclass(frozen=True)
class CacheStats:
    encoded: int
    cached: int


def cache_text_embeddings(
    manifest: pl.DataFrame, cache: TensorCache, encoder: PromptEncoder, batch_size: int = 32
) -> tuple[pl.DataFrame, CacheStats]:
    """Embed every distinct caption not yet cached; index each clip's embedding key."""
    keys = [cache_key(caption=c, encoder=encoder.identity) for c in manifest["caption"]]
    whole = cache.whole(keys)
    todo = {k: c for k, c in zip(keys, manifest["caption"], strict=True) if k not in whole}
    items = list(todo.items())
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        embeddings = encoder.encode([caption for _, caption in chunk])
        for (key, _), tensors in zip(chunk, embeddings, strict=True):
            cache.write(key, tensors)
    index = pl.DataFrame({"sha256": manifest["sha256"], "text_key": keys}, schema=TEXT_INDEX_SCHEMA)
    return index, CacheStats(encoded=len(todo), cached=len(set(keys)) - len(todo))


@dataclass(frozen=True)
class LatentJob:
    """One window of one clip to encode, and its cache key."""

    sha256: str
    path: Path
    bucket: Bucket
    start: int
    sample_aspect_ratio: str
    key: str
    has_audio: bool = False  # the clip has an audio stream (probed)


def latent_jobs(
    manifest: pl.DataFrame, raw_dir: Path, vae: str, fps: float, windows: WindowRule
) -> list[LatentJob]:
    """Every window of every clip of the manifest, with the key of its entry: the content,
    the bucket and fps, the VAE, the decoder and the window's start (absent for the first
    window, so one-window clips keep the keys they always had)."""
    jobs = []
    buckets: dict[str, Bucket] = {}  # parsed once per bucket, not per clip
    columns = ["sha256", "path", "bucket", "frame_count", "fps", "sample_aspect_ratio", "has_audio"]
    for sha, path, name, frame_count, clip_fps, aspect, audio in manifest[columns].iter_rows():
        bucket = buckets.get(name) or buckets.setdefault(name, Bucket.parse(name))
        available = frames_at_fps(frame_count, clip_fps, fps)
        # a clip in the manifest has a window; one whose frames fall short fails to decode
        for start in windows.starts(available, bucket.frames) or [0]:
            where = {"window": start} if start else {}
            key = cache_key(
                video=sha, bucket=bucket.name, fps=fps, vae=vae, decoder=DECODER_VERSION, **where
            )
            jobs.append(LatentJob(sha, raw_dir / path, bucket, start, aspect, key, audio))
    return jobs


def shard(jobs: list[LatentJob], rank: int, world: int) -> list[LatentJob]:
    """The jobs of the clips whose content hash falls to `rank` of `world` processes."""
    return [job for job in jobs if int(job.sha256[:16], 16) % world == rank]


def _decode(job: LatentJob, fps: float, audio: tuple[int, int] | None) -> Decoded:
    """The window's frames, and its audio at `audio` (sample rate, channels) where wanted and
    the clip has some: the time span of the frames."""
    try:
        frames = decode_clip(job.path, *job.bucket, fps, job.sample_aspect_ratio, start=job.start)
        waveform = None
        if audio is not None and job.has_audio:
            waveform = decode_audio(job.path, job.start / fps, job.bucket.frames / fps, *audio)
    except DecodeError as failure:
        return failure
    return torch.from_numpy(frames), waveform


def prefetched(
    jobs: Iterable[LatentJob], fps: float, depth: int, audio: tuple[int, int] | None = None
) -> Iterator[tuple[LatentJob, Decoded]]:
    """Each job with its decoded window (or why not), `depth` decoded ahead in threads while
    the caller encodes (ffmpeg works in its own process; the threads wait on its pipe)."""
    pending: deque[tuple[LatentJob, Future]] = deque()
    todo = iter(jobs)
    with ThreadPoolExecutor(max_workers=depth) as pool:
        for job in todo:
            pending.append((job, pool.submit(_decode, job, fps, audio)))
            if len(pending) > depth:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def prefetch_depth(jobs: list[LatentJob]) -> int:
    """Windows decoded ahead: as many as fit PREFETCH_BYTES (at least 1, at most 4)."""
    if not jobs:
        return 1
    largest = max(job.bucket.frames * job.bucket.height * job.bucket.width * 3 for job in jobs)
    return max(1, min(4, PREFETCH_BYTES // largest))


def encode_latents(
    jobs: list[LatentJob],
    cache: TensorCache,
    encoder: VideoEncoder,
    fps: float,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[LatentJob, str]:
    """Encode the jobs not cached yet, decoding ahead; returns why each failed job failed."""
    todo = [job for job in jobs if job.key not in cache]
    errors: dict[LatentJob, str] = {}
    audio = encoder.audio_format
    windows = prefetched(todo, fps, prefetch_depth(todo), audio)
    for done, (job, decoded) in enumerate(windows, 1):
        if isinstance(decoded, DecodeError):
            errors[job] = str(decoded)
        else:
            frames, waveform = decoded
            entry = encoder.encode_video(frames)
            if audio is not None:
                entry |= encoder.encode_audio(waveform, len(frames))
            cache.write(job.key, entry)
        progress(done, len(todo))
    return errors


def read_errors(files: list[Path], jobs: list[LatentJob]) -> dict[LatentJob, str]:
    """The failures several encoding processes wrote (one file each), by job."""
    by_window = {(job.sha256, job.start): job for job in jobs}
    found = {}
    for path in files:
        for row in json.loads(path.read_text()):
            found[by_window[row["sha256"], row["window"]]] = row["error"]
    return found


def latent_index(
    jobs: list[LatentJob],
    cache: TensorCache,
    errors: dict[LatentJob, str],
    cached: frozenset[LatentJob] = frozenset(),
) -> pl.DataFrame:
    """One row per window: its entry's key, or why it has none (`cached`: jobs whose entries
    were found whole before encoding, not checked again)."""
    rows = []
    for job in jobs:
        error = errors.get(job)
        if error is None and job not in cached and job.key not in cache:
            error = f"{job.path}: window at frame {job.start} was not encoded"
        key = None if error else job.key
        rows.append((job.sha256, job.start, key, job.bucket.name, error))
    return pl.DataFrame(rows, schema=LATENT_INDEX_SCHEMA, orient="row")


def cache_latents(
    manifest: pl.DataFrame,
    raw_dir: Path,
    cache: TensorCache,
    encoder: VideoEncoder,
    fps: float,
    windows: WindowRule | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
    workers: Callable[[list[LatentJob]], dict[LatentJob, str]] | None = None,
) -> tuple[pl.DataFrame, CacheStats]:
    """Decode and encode every window whose (content, bucket, fps, VAE, start) is not cached
    yet: in this process, or by `workers` (several encoding processes; it returns why each
    failed job failed). A window ffmpeg cannot decode does not stop the others: its index row
    has no key and says why (training leaves it out)."""
    jobs = latent_jobs(manifest, raw_dir, encoder.identity, fps, windows or WindowRule())
    whole = cache.whole(job.key for job in jobs)  # each entry checked once
    cached = frozenset(job for job in jobs if job.key in whole)
    missing = len(jobs) - len(cached)
    if workers is None:
        errors = encode_latents([j for j in jobs if j not in cached], cache, encoder, fps, progress)
    else:
        errors = workers(jobs)
    index = latent_index(jobs, cache, errors, cached)
    return index, CacheStats(encoded=missing - len(errors), cached=len(cached))

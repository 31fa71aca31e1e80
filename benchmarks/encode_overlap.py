"""Encoding with decoding overlapped: clips/s of `encode_latents` (ffmpeg decodes the next
windows in background threads while the VAE encodes) against the sequential loop it replaced
(decode one clip, encode it, then the next).

What is measured
    100 encoding jobs at 49x480x832 (Wan's 480p), cycling over the 10 generated 1280x720, 30 fps,
    3.5 s HD clips of ``benchmarks/clips.py`` (each job its own cache key, so every one is
    decoded and encoded), with the VAE of the embedded default model (the tiny Wan of
    params.yaml: the CPU-sized VAE). Sequential: for each job, ``decode_clip`` then
    ``encode_video`` then the cache write, as the encoder did before. Overlapped:
    ``dataset.encode.encode_latents`` on the same jobs (a bounded prefetch of decoded windows,
    ``prefetch_depth``). Each into its own empty cache; one untimed job first warms both up.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.encode_overlap [--jobs 100]

The line ``RESULT encode_overlap ratio=<x> (goal >= 1.25)`` gives overlapped clips/s over
sequential clips/s.
"""

from __future__ import annotations

import argparse
import shutil
import time

import torch

from benchmarks.clips import DATA_DIR, ensure_clips, hd_clip
from dagster_project.core.params import load_params
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import Bucket
from dagster_project.dataset.cache import TensorCache, load_entry
from dagster_project.dataset.encode import LatentJob, encode_latents, prefetch_depth
from dagster_project.models.families import FAMILIES, family_spec
from dagster_project.models.placement import process_device
from dagster_project.models.text_encoder import text_embedding_dim
from dagster_project.video.decode import decode_clip

WORK = DATA_DIR / "encode_overlap"
BUCKET = Bucket(49, 480, 832)


def sequential(jobs: list[LatentJob], cache: TensorCache, vae, fps: float) -> None:
    """The loop before prefetching: decode, encode, write, next."""
    for job in jobs:
        frames = decode_clip(job.path, *job.bucket, fps, job.sample_aspect_ratio, start=job.start)
        cache.write(job.key, vae.encode_video(torch.from_numpy(frames)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--device", help="where the VAE encodes (default: as the encoder: a GPU "
                        "where there is one)")  # fmt: skip
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else process_device(0)
    clips = [hd_clip(i) for i in range(10)]
    ensure_clips(clips)
    params = load_params("params.yaml")
    shutil.rmtree(WORK, ignore_errors=True)
    base = BaseModelFiles(WORK / "base")
    FAMILIES[params.model.family].write_base_model(params.model, text_embedding_dim(None), base)
    vae = family_spec(params.model.family, base)
    vae.place_on(device)

    def jobs(tag: str, count: int) -> list[LatentJob]:
        return [
            LatentJob(f"{i:064x}", clips[i % len(clips)].path, BUCKET, 0, "1:1",
                      f"{tag}{i:063x}"[-64:])
            for i in range(count)
        ]  # fmt: skip

    warm = TensorCache(WORK / "warm", "latents")
    sequential(jobs("a", 1), warm, vae, params.fps)
    encode_latents(jobs("b", 1), warm, vae, params.fps)
    print(f"VAE on {device}, prefetch depth {prefetch_depth(jobs('c', 1))}, torch threads "
          f"{torch.get_num_threads()}", flush=True)  # fmt: skip

    started = time.perf_counter()
    sequential(jobs("d", args.jobs), TensorCache(WORK / "sequential", "latents"), vae, params.fps)
    before = args.jobs / (time.perf_counter() - started)
    print(f"sequential: {before:.2f} clips/s", flush=True)
    started = time.perf_counter()
    errors = encode_latents(
        jobs("e", args.jobs), TensorCache(WORK / "overlapped", "latents"), vae, params.fps
    )
    after = args.jobs / (time.perf_counter() - started)
    print(f"overlapped: {after:.2f} clips/s ({len(errors)} failed)", flush=True)
    print(f"RESULT encode_overlap ratio={after / before:.2f} ({after:.2f} vs {before:.2f} "
          f"clips/s at {BUCKET.name}, goal >= 1.25)", flush=True)  # fmt: skip
    if device.type != "cpu":  # the device's entry against the CPU's, for one job
        on_cpu = family_spec(params.model.family, base)
        for job in jobs("e", 1):
            frames = decode_clip(job.path, *job.bucket, params.fps, "1:1", start=job.start)
            want = on_cpu.encode_video(torch.from_numpy(frames))
            got = load_entry(TensorCache(WORK / "overlapped", "latents").path(job.key), "job")
            worst = max((got[name] - want[name]).abs().max().item() for name in want)
            print(f"{job.key[:8]}: largest difference {device} vs cpu {worst:.2e}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Probing throughput: the project's parallel prober against a plain sequential ffprobe loop.

What is measured
    Wall time to describe N small video clips (default 200) in two ways:

    * sequential: ``for p in paths: ffmpeg.probe(str(p))`` -- plain ffmpeg-python, no options;
    * parallel: ``dagster_project.video.probe.probe_many(paths, workers)`` -- ffprobe with
      ``-count_packets`` plus a streaming sha256 of every file, in a thread pool.

    The parallel side does strictly more work per file, so the ratio (sequential / parallel)
    is a conservative measure of what the thread pool buys. The goal is a ratio >= 1.8 on 2 cores.

How
    The clips are generated once with ffmpeg lavfi sources (testsrc2, mandelbrot, life,
    smptebars; 4 sizes; 1-3 s at 24 fps; mostly H.264 mp4, a few VP8 webm and H.264 mkv) into
    ``benchmarks/.data/probe_clips/`` and reused on later runs. Both methods run once as a
    warm-up (hot page cache, imports done), then 3 times each, alternating and swapping which
    goes first every round; the median wall time of each is reported. Both must return a
    result for every file, and the parallel one no ProbeError.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.probe_throughput [--clips 200] [--workers N]

The last line is ``RESULT probe_throughput ratio=<x> (goal >= 1.8)``; the exit status is 0
whether or not the goal is met (1 only if a method fails to describe every clip).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from benchmarks.clips import Timing, timed
from dagster_project.video.probe import ProbeError, VideoInfo, probe_many

CLIP_DIR = Path(__file__).resolve().parent / ".data" / "probe_clips"
FPS = 24
ROUNDS = 3
GOAL = 1.8
BUSY_WARNING = 0.2  # cores used by other processes above which the result is flagged

SOURCES = ("testsrc2", "mandelbrot", "life", "smptebars")
SIZES = ((96, 96), (128, 72), (72, 128), (160, 96))


@dataclass(frozen=True)
class ClipSpec:
    index: int
    source: str
    width: int
    height: int
    seconds: int
    container: str  # "mp4" (H.264), "mkv" (H.264) or "webm" (VP8)

    @property
    def path(self) -> Path:
        name = f"{self.index:04d}_{self.source}_{self.width}x{self.height}_{self.seconds}s"
        return CLIP_DIR / f"{name}.{self.container}"

    @property
    def frames(self) -> int:
        return self.seconds * FPS


def clip_specs(count: int) -> list[ClipSpec]:
    """A fixed, varied set: clip i is the same on every run, so the cache can be reused."""
    specs = []
    for i in range(count):
        container = "webm" if i % 10 == 7 else "mkv" if i % 10 == 3 else "mp4"
        width, height = SIZES[(i // len(SOURCES)) % len(SIZES)]
        source = SOURCES[i % len(SOURCES)]
        specs.append(ClipSpec(i, source, width, height, 1 + i % 3, container))
    return specs


def make_clip(spec: ClipSpec) -> Path:
    """Encode one clip; written under a temporary name, so a finished name means a whole file."""
    size = f"{spec.width}x{spec.height}"
    lavfi = f"{spec.source}=size={size}:rate={FPS}"
    if spec.source == "life":
        lavfi += ":mold=10:ratio=0.3"
    if spec.container == "webm":
        codec = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"]
    else:
        codec = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "28"]
    tmp = spec.path.with_name(f".tmp_{spec.path.name}")
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", lavfi, "-t", str(spec.seconds),
        *codec, "-pix_fmt", "yuv420p", "-threads", "1", str(tmp),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    tmp.replace(spec.path)
    return spec.path


def ensure_clips(specs: list[ClipSpec]) -> None:
    """Create the clips that are not cached yet, in parallel processes."""
    CLIP_DIR.mkdir(parents=True, exist_ok=True)
    missing = [s for s in specs if not (s.path.is_file() and s.path.stat().st_size > 0)]
    if not missing:
        print(f"clips: reusing {len(specs)} cached clips in {CLIP_DIR}")
        return
    print(f"clips: generating {len(missing)} of {len(specs)} clips into {CLIP_DIR} ...")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for _ in pool.map(make_clip, missing):
            pass
    print(f"clips: done in {time.perf_counter() - start:.1f} s")


def run_sequential(paths: list[Path]) -> list[dict[str, Any]]:
    return [ffmpeg.probe(str(p)) for p in paths]


def run_parallel(
    paths: list[Path], workers: int | None
) -> list[tuple[VideoInfo, str] | ProbeError]:
    return probe_many(paths, workers=workers)


def verify(
    specs: list[ClipSpec],
    sequential: list[dict[str, Any]],
    parallel: list[tuple[VideoInfo, str] | ProbeError],
) -> list[str]:
    """Problems found: a missing result, a ProbeError, or a report that disagrees with the clip."""
    problems = []
    if len(sequential) != len(specs):
        problems.append(f"sequential: {len(sequential)} results for {len(specs)} files")
    if len(parallel) != len(specs):
        problems.append(f"parallel: {len(parallel)} results for {len(specs)} files")
    for spec, report, result in zip(specs, sequential, parallel, strict=False):
        if not any(s.get("codec_type") == "video" for s in report.get("streams", [])):
            problems.append(f"sequential: no video stream in {spec.path.name}")
        if isinstance(result, ProbeError):
            problems.append(f"parallel: ProbeError {result.reason}: {result.message}")
            continue
        info, digest = result
        seen = (info.width, info.height, info.frame_count, len(digest))
        if seen != (spec.width, spec.height, spec.frames, 64):
            problems.append(f"parallel: {spec.path.name} described as {info}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Probing throughput: probe_many vs a sequential ffmpeg.probe loop."
    )
    parser.add_argument("--clips", type=int, default=200, help="number of clips (default 200)")
    parser.add_argument(
        "--workers", type=int, default=None, help="probe_many workers (default: its own, 2 x cpus)"
    )
    args = parser.parse_args(argv)

    cpus = os.cpu_count() or 2
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    workers_shown = f"{args.workers}" if args.workers else f"{cpus * 2} (probe_many default)"

    specs = clip_specs(args.clips)
    ensure_clips(specs)
    paths = [s.path for s in specs]

    def sequential() -> list[dict[str, Any]]:
        return run_sequential(paths)

    def parallel() -> list[tuple[VideoInfo, str] | ProbeError]:
        return run_parallel(paths, args.workers)

    # warm-up: page cache, imports, ffprobe binary; its results are the ones verified
    problems = verify(specs, sequential(), parallel())
    if problems:
        print(f"FAILED verification ({len(problems)} problems):")
        for problem in problems[:20]:
            print(f"  {problem}")
        return 1
    print(f"verified: both methods describe all {len(specs)} clips, no ProbeError")

    timings: dict[str, list[Timing]] = {"sequential": [], "parallel": []}
    methods = {"sequential": sequential, "parallel": parallel}
    for round_ in range(ROUNDS):
        order = ["sequential", "parallel"] if round_ % 2 == 0 else ["parallel", "sequential"]
        for name in order:
            timing = timed(methods[name])
            timings[name].append(timing)
            other = "" if timing.other_cores is None else f"{timing.other_cores:.2f}"
            print(
                f"  round {round_ + 1}: {name:<10} {timing.wall:7.3f} s   other load: {other} cores"
            )

    n = len(paths)
    labels = {
        "sequential": "sequential  ffmpeg.probe loop",
        "parallel": "parallel    probe_many (+count_packets, sha256)",
    }
    medians = {name: statistics.median(t.wall for t in timings[name]) for name in labels}
    ratio = medians["sequential"] / medians["parallel"]
    print()
    print(f"files: {n}   cpu_count: {cpus} (usable: {usable})   workers: {workers_shown}")
    print(f"median (and best) of {ROUNDS} alternating runs after one warm-up")
    print(f"{'method':<48} {'wall s':>8} {'files/s':>9} {'best s':>8}")
    for name, label in labels.items():
        median, best = medians[name], min(t.wall for t in timings[name])
        print(f"{label:<48} {median:8.3f} {n / median:9.1f} {best:8.3f}")
    print(f"{'ratio (sequential / parallel), medians':<48} {ratio:8.2f}x")

    loads = [t.other_cores for ts in timings.values() for t in ts if t.other_cores is not None]
    if loads and max(loads) > BUSY_WARNING:
        print(
            f"WARNING: other processes used up to {max(loads):.2f} of {usable} cores during the"
            " runs; the ratio is unreliable, rerun on a quiet machine"
        )
    print(f"RESULT probe_throughput ratio={ratio:.2f} (goal >= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

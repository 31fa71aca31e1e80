"""Decoding throughput: decode_clip's frames/s against ``ffmpeg -f null`` with the same filters.

What is measured
    Frames per second delivered when decoding N frames of each of 10 generated 1280x720, 30 fps,
    3.5 s H.264 clips, resampled to 16 fps, scaled to cover the target and center-cropped:

    * ours: ``dagster_project.video.decode.decode_clip(path, frames, height, width, 16.0)``,
      which runs ffmpeg with the filters fps, scale (force_original_aspect_ratio=increase),
      setsar and crop, and reads rgb24 frames from a pipe into a numpy array;
    * ffmpeg -f null: ``ffmpeg -protocol_whitelist file -i file:<clip> -vf
      fps=16,scale=w=W:h=H:force_original_aspect_ratio=increase,setsar=1,crop=W:H -frames:v N
      -f null -``, the same filter chain with the frames thrown away (the baseline of the goal);
    * ffmpeg -pix_fmt rgb24 -f null (reference only): the same, plus the conversion to rgb24
      that decode_clip asks for, so ours minus this is the cost of the pipe and the copy.

    Ratio = ours / ffmpeg -f null in frames/s, for the first target (33 frames, 256x256);
    the goal is at least 0.8. A second row (49 frames, 480x832, Wan's 480p) is printed too.

How
    The clips are rendered once into ``benchmarks/.data/clips/hd/`` (``benchmarks/clips.py``).
    One untimed pass of every method warms the page cache, then 3 rounds in which every method
    decodes all clips once, in an order that rotates every round; medians are reported, with
    the CPU seconds (this process and ffmpeg) per frame.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.decode_throughput [--clips 10] [--rounds 3]

The last line is ``RESULT decode_throughput ratio=<x> (goal >= 0.8)``; the exit status is 0
whether or not the goal is met (1 if a method fails on a clip).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.clips import Timing, ensure_clips, hd_clip, load_note, own_cpu_seconds, timed
from dagster_project.video.decode import decode_clip

FPS = 16.0
GOAL = 0.8
TARGETS = ((33, 256, 256), (49, 480, 832))  # (frames, height, width)


def ffmpeg_null(path: Path, frames: int, height: int, width: int, rgb24: bool) -> None:
    filters = (
        f"fps={FPS:g},scale=w={width}:h={height}:force_original_aspect_ratio=increase,"
        f"setsar=1,crop={width}:{height}"
    )
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-protocol_whitelist", "file", "-i", f"file:{path.resolve()}",
        "-vf", filters, "-frames:v", str(frames),
        *(["-pix_fmt", "rgb24"] if rgb24 else []), "-f", "null", "-",
    ]  # fmt: skip
    subprocess.run(command, check=True)


@dataclass(frozen=True)
class Measure:
    timing: Timing
    cpu: float  # CPU seconds of this process and its children during the pass


def measure(function: Callable[[], object]) -> Measure:
    cpu = own_cpu_seconds()
    timing = timed(function)
    return Measure(timing, own_cpu_seconds() - cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clips", type=int, default=10, help="number of HD clips (10)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (3)")
    args = parser.parse_args(argv)

    clips = [hd_clip(i) for i in range(args.clips)]
    ensure_clips(clips)
    paths = [c.path for c in clips]

    rows = []
    all_timings: list[Timing] = []
    for frames, height, width in TARGETS:

        def ours(frames: int = frames, height: int = height, width: int = width) -> None:
            for path in paths:
                clip = decode_clip(path, frames, height, width, FPS)
                assert clip.shape == (frames, height, width, 3)

        def null(
            frames: int = frames, height: int = height, width: int = width, rgb24: bool = False
        ) -> None:
            for path in paths:
                ffmpeg_null(path, frames, height, width, rgb24)

        def null_rgb(frames: int = frames, height: int = height, width: int = width) -> None:
            null(frames, height, width, rgb24=True)

        methods = {"ours": ours, "null": null, "null_rgb24": null_rgb}
        for method in methods.values():  # warm-up
            method()
        results: dict[str, list[Measure]] = {name: [] for name in methods}
        names = list(methods)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                results[name].append(measure(methods[name]))
            walls = "  ".join(f"{n} {results[n][-1].timing.wall:6.2f} s" for n in names)
            print(f"  {frames}x{height}x{width} round {round_ + 1}: {walls}", flush=True)
        total = frames * len(paths)
        stats = {}
        for name, measures in results.items():
            all_timings += [m.timing for m in measures]
            wall = statistics.median(m.timing.wall for m in measures)
            cpu = statistics.median(m.cpu for m in measures)
            stats[name] = (total / wall, 1000 * cpu / total)
        rows.append(((frames, height, width), stats))

    print()
    print(
        f"{len(paths)} clips 1280x720 30 fps H.264 -> fps=16, scale to cover, center crop; "
        f"median of {args.rounds} rounds"
    )
    header = f"{'target':<12} {'method':<34} {'frames/s':>9} {'cpu ms/frame':>13} {'ratio':>7}"
    print(header)
    labels = {
        "ours": "decode_clip (rgb24 via pipe)",
        "null": "ffmpeg -f null (same filters)",
        "null_rgb24": "ffmpeg -pix_fmt rgb24 -f null",
    }
    ratios = []
    for (frames, height, width), stats in rows:
        baseline = stats["null"][0]
        ratios.append(stats["ours"][0] / baseline)
        for name, label in labels.items():
            fps, cpu_ms = stats[name]
            target = f"{frames}x{height}x{width}"
            print(f"{target:<12} {label:<34} {fps:9.1f} {cpu_ms:13.2f} {fps / baseline:7.2f}")
    note = load_note(all_timings)
    if note:
        print(note)
    for (frames, height, width), ratio in zip(TARGETS, ratios, strict=True):
        print(f"ratio ours / ffmpeg -f null at {frames}x{height}x{width}: {ratio:.2f}")
    print(f"RESULT decode_throughput ratio={ratios[0]:.2f} (goal >= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

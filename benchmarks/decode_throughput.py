"""Decoding throughput: decode_clip's frames/s against ``ffmpeg -f null`` with the same filters.

What is measured
    Frames per second delivered when decoding N frames of each of 10 generated 1280x720, 30 fps,
    3.5 s H.264 clips, resampled to 16 fps, scaled to cover the target and center-cropped:

    * ours: ``dagster_project.video.decode.decode_clip(path, frames, height, width, 16.0)``,
      which runs ffmpeg with the filters fps, scale (force_original_aspect_ratio=increase),
      setsar and crop, reads planar gbrp frames from a pipe and interleaves them into an
      [N, H, W, 3] RGB numpy array;
    * ffmpeg -f null: ``ffmpeg -protocol_whitelist file -i file:<clip> -vf
      fps=16,scale=w=W:h=H:force_original_aspect_ratio=increase,setsar=1,crop=W:H -frames:v N
      -f null -``, the same filter chain with the frames thrown away (the baseline of the goal);
    * ffmpeg -pix_fmt gbrp -f null (reference only): the same, plus the conversion to gbrp that
      decode_clip asks for, so ours minus this is the cost of the pipe and the numpy side;
    * ffmpeg -pix_fmt rgb24 -f null (reference only): the conversion to packed rgb24 that
      decode_clip asked for before it switched to gbrp.

    Ratio = ours / ffmpeg -f null in frames/s, for two targets: 33 frames at 256x256 and
    49 frames at 480x832 (Wan's 480p, the case of the goal); the goal is at least 0.8.

How
    The clips are rendered once into ``benchmarks/.data/clips/hd/`` (``benchmarks/clips.py``).
    One untimed pass of every method warms the page cache, then 3 rounds in which every method
    decodes all clips once, in an order that rotates every round; medians are reported, with
    the CPU seconds (this process and ffmpeg) per frame.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.decode_throughput [--clips 10] [--rounds 3]

The last two lines are ``RESULT decode_throughput <N>x<H>x<W> ratio=<x> ours=<frames/s>
null=<frames/s> (goal >= 0.8)``, for 33x256x256 then 49x480x832; the exit status is 0 whether
or not the goal is met (1 if a method fails on a clip).
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


def ffmpeg_null(path: Path, frames: int, height: int, width: int, pix_fmt: str | None) -> None:
    filters = (
        f"fps={FPS:g},scale=w={width}:h={height}:force_original_aspect_ratio=increase,"
        f"setsar=1,crop={width}:{height}"
    )
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-protocol_whitelist", "file", "-i", f"file:{path.resolve()}",
        "-vf", filters, "-frames:v", str(frames),
        *(["-pix_fmt", pix_fmt] if pix_fmt else []), "-f", "null", "-",
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
            frames: int = frames,
            height: int = height,
            width: int = width,
            pix_fmt: str | None = None,
        ) -> None:
            for path in paths:
                ffmpeg_null(path, frames, height, width, pix_fmt)

        def null_gbrp(frames: int = frames, height: int = height, width: int = width) -> None:
            null(frames, height, width, pix_fmt="gbrp")

        def null_rgb(frames: int = frames, height: int = height, width: int = width) -> None:
            null(frames, height, width, pix_fmt="rgb24")

        methods = {"ours": ours, "null": null, "null_gbrp": null_gbrp, "null_rgb24": null_rgb}
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
        "ours": "decode_clip (gbrp via pipe)",
        "null": "ffmpeg -f null (same filters)",
        "null_gbrp": "ffmpeg -pix_fmt gbrp -f null",
        "null_rgb24": "ffmpeg -pix_fmt rgb24 -f null",
    }
    for (frames, height, width), stats in rows:
        baseline = stats["null"][0]
        for name, label in labels.items():
            fps, cpu_ms = stats[name]
            target = f"{frames}x{height}x{width}"
            print(f"{target:<12} {label:<34} {fps:9.1f} {cpu_ms:13.2f} {fps / baseline:7.2f}")
    note = load_note(all_timings)
    if note:
        print(note)
    for (frames, height, width), stats in rows:
        ours_fps, null_fps = stats["ours"][0], stats["null"][0]
        print(
            f"RESULT decode_throughput {frames}x{height}x{width} ratio={ours_fps / null_fps:.2f} "
            f"ours={ours_fps:.1f} null={null_fps:.1f} (goal >= {GOAL})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

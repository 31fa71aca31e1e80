"""Cache memory: peak memory of caching 200 clips against 20.

What is measured
    Peak resident memory (``ru_maxrss`` of the Python process) while the real pipeline path
    fills the caches from scratch: ``base_model``, ``videos``, ``manifest,rejects``,
    ``text_embeddings`` and ``video_latents`` materialized in-process
    (``tests.conftest.materialize``) on a fresh project of 20 clips, and on one of 200 clips.
    Each dataset runs in its own child process, so each peak is clean; the child materializes
    one stage at a time and reports its peak after each, which shows where the peak is reached.
    ffmpeg and ffprobe run as separate, short-lived processes and are not counted.

    Ratio = peak(200) / peak(20); the goal is at most 1.15 (caching memory does not grow with
    the dataset).

How
    Clips come from ``benchmarks/clips.py`` (small unique lavfi clips, 96x96 / 128x72 / 72x128,
    with sidecar captions); the projects are rebuilt under ``benchmarks/.data/cache_memory/``
    on every run with the repository's params.yaml. One child per dataset size per round
    (``--rounds``, default 1, alternating the order; each 200-clip child takes 1-3 minutes).

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.cache_memory [--small 20] [--large 200] [--rounds 1]

The last line is ``RESULT cache_memory ratio=<x> (goal <= 1.15)``; the exit status is 0
whether or not the goal is met (1 if a child fails).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.clips import (
    DATA_DIR,
    REPO,
    ensure_clips,
    fresh_project,
    small_clip,
)

WORK_DIR = DATA_DIR / "cache_memory"
STAGES = ("base_model", "videos", "manifest,rejects", "text_embeddings", "video_latents")
GOAL = 1.15
MARK = "MEMORY "


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(count: int) -> int:
    """Materialize the stages on a fresh `count`-clip project; print one JSON line per stage."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Dagster's log goes to stderr, which the parent keeps
    from tests.materialize import materialize

    params = fresh_project(WORK_DIR / f"clips_{count}", [small_clip(i) for i in range(count)])
    report = {
        "stage": "imports",
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_mib": _rss_mib(),
        "seconds": 0.0,
    }
    print(MARK + json.dumps(report), flush=True)
    for stage in STAGES:
        start = time.perf_counter()
        result = materialize(params, stage)
        if not result.success:
            print(f"FAILED: {stage} on {count} clips", flush=True)
            return 1
        extra = {}
        if stage == "video_latents":
            event = result.asset_materializations_for_node("video_latents")[0]
            extra["encoded"] = int(event.metadata["encoded"].value)
        report = {
            "stage": stage,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_mib": _rss_mib(),
            "seconds": time.perf_counter() - start,
            **extra,
        }
        print(MARK + json.dumps(report), flush=True)
    return 0


def run_child(count: int) -> list[dict]:
    start = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-m", "benchmarks.cache_memory", "--child", str(count)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    reports = [
        json.loads(line[len(MARK) :])
        for line in process.stdout.splitlines()
        if line.startswith(MARK)
    ]
    if process.returncode != 0 or len(reports) != len(STAGES) + 1:
        tail = "\n".join((process.stdout + process.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"child for {count} clips failed ({process.returncode}):\n{tail}")
    print(
        f"  {count} clips: peak {reports[-1]['peak_mib']:.0f} MiB, "
        f"{reports[-1]['encoded']} latents encoded, {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=20, help="clips of the small dataset (20)")
    parser.add_argument("--large", type=int, default=200, help="clips of the large dataset (200)")
    parser.add_argument("--rounds", type=int, default=1, help="children per size (1)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(args.child)

    ensure_clips([small_clip(i) for i in range(max(args.small, args.large))])
    sizes = (args.small, args.large)
    runs: dict[int, list[list[dict]]] = {size: [] for size in sizes}
    try:
        for round_ in range(args.rounds):
            for size in sizes if round_ % 2 == 0 else sizes[::-1]:
                runs[size].append(run_child(size))
    except RuntimeError as error:
        print(f"FAILED: {error}")
        return 1

    def peak(size: int, stage_index: int = -1) -> float:
        return statistics.median(r[stage_index]["peak_mib"] for r in runs[size])

    small, large = sizes
    ratio = peak(large) / peak(small)
    print()
    print(f"peak RSS (ru_maxrss, MiB) of the child after each stage; median of {args.rounds}")
    print(f"{'stage':<20} {f'{small} clips':>10} {f'{large} clips':>10} {'ratio':>7}")
    for index, report in enumerate(runs[small][0]):
        a, b = peak(small, index), peak(large, index)
        print(f"{report['stage']:<20} {a:10.0f} {b:10.0f} {b / a:7.2f}")
    last = {size: runs[size][-1][-1] for size in sizes}
    print(f"{'RSS at the end':<20} {last[small]['rss_mib']:10.0f} {last[large]['rss_mib']:10.0f}")
    seconds = {s: sum(r["seconds"] for r in runs[s][-1]) for s in sizes}
    print(f"{'seconds (stages)':<20} {seconds[small]:10.1f} {seconds[large]:10.1f}")
    print(f"RESULT cache_memory ratio={ratio:.2f} (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Exposure guard answer time: plans from a few clips x millions of steps to 100,000 clips.

What is measured
    `plan_exposures` (what the `training_plan` asset and the `exposure_guard` check call) on
    synthetic bucket lists (three buckets, batch 2, one process, limit 50), best of 3. Replaying
    costs one pass over the clips per exposure, so within reach of the limit (a mean up to twice
    `guard.max_exposures`) the counts are exact; beyond it the mean alone refuses the plan.
    Goal: under 1 s for any plan up to 10,000,000 steps and 100,000 clips. The windowed cases
    plan 100,000 training windows of 10,000 clips (10 each: long clips under
    `data.frame_extraction: chunks`), counted per window and per clip; same goal.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.exposure_guard
"""

from __future__ import annotations

import sys
import time

from dagster_project.dataset.exposure import plan_exposures

CASES = [  # (clips, steps, windows per clip)
    (100_000, 100_000, 1),
    (11, 1_000_000, 1),
    (11, 10_000_000, 1),
    (100_000, 10_000_000, 1),
    (100_000, 5_000_000, 1),  # mean 100 = twice the limit: the slowest plan still replayed
    (1_000, 50_000, 1),
    (11, 550, 1),
    (10_000, 100_000, 10),  # 100,000 windows
    (10_000, 5_000_000, 10),  # mean 100 per window: the slowest still replayed
    (10_000, 10_000_000, 10),
]
GOAL_SECONDS = 1.0


def main() -> int:
    print(
        f"{'clips':>8} {'windows':>8} {'steps':>11} {'mean':>10} {'replayed':>9} {'verdict':>8} "
        f"{'seconds':>8}"
    )
    worst = 0.0
    for clips, steps, per_clip in CASES:
        samples = clips * per_clip
        buckets = [("a", "b", "c")[(i // per_clip) % 3] for i in range(samples)]
        windowed = {}
        if per_clip > 1:
            ids = [f"clip{i // per_clip}" for i in range(samples)]
            windows = [i % per_clip for i in range(samples)]
            windowed = {"contents": ids, "windows": windows, "clip_ids": ids}
        times = []
        for _ in range(3):
            start = time.perf_counter()
            plan = plan_exposures(
                buckets, steps, 2, 1, 1, 0, max_exposures=50, warn_exposures=10,
                max_clip_exposures=500, **windowed,
            )  # fmt: skip
            times.append(time.perf_counter() - start)
        worst = max(worst, min(times))
        replayed = "exact" if plan.per_video is not None else "mean"
        print(
            f"{clips:>8,} {samples:>8,} {steps:>11,} {plan.mean:>10.1f} {replayed:>9} "
            f"{plan.verdict:>8} "
            f"{min(times):>8.3f}"
        )
    print(f"RESULT exposure_guard worst={worst:.3f}s (goal < {GOAL_SECONDS} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

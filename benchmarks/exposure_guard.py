"""Exposure guard answer time: plans from a few clips x millions of steps to 100,000 clips.

What is measured
    `plan_exposures` (what the `training_plan` asset and the `exposure_guard` check call) on
    synthetic bucket lists (three buckets, batch 2, one process, limit 50), best of 3. Replaying
    costs one pass over the clips per exposure, so within reach of the limit (a mean up to twice
    `guard.max_exposures`) the counts are exact; beyond it the mean alone refuses the plan.
    Goal: under 1 s for any plan up to 10,000,000 steps and 100,000 clips.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.exposure_guard
"""

from __future__ import annotations

import sys
import time

from dagster_project.dataset.exposure import plan_exposures

CASES = [  # (clips, steps)
    (100_000, 100_000),
    (11, 1_000_000),
    (11, 10_000_000),
    (100_000, 10_000_000),
    (100_000, 5_000_000),  # mean 100 = twice the limit: the slowest plan still replayed
    (1_000, 50_000),
    (11, 550),
]
GOAL_SECONDS = 1.0


def main() -> int:
    print(f"{'clips':>8} {'steps':>11} {'mean':>10} {'replayed':>9} {'verdict':>8} {'seconds':>8}")
    worst = 0.0
    for clips, steps in CASES:
        buckets = [("a", "b", "c")[i % 3] for i in range(clips)]
        times = []
        for _ in range(3):
            start = time.perf_counter()
            plan = plan_exposures(buckets, steps, 2, 1, 1, 0, max_exposures=50, warn_exposures=10)
            times.append(time.perf_counter() - start)
        worst = max(worst, min(times))
        replayed = "exact" if plan.per_video is not None else "mean"
        print(
            f"{clips:>8,} {steps:>11,} {plan.mean:>10.1f} {replayed:>9} {plan.verdict:>8} "
            f"{min(times):>8.3f}"
        )
    print(f"RESULT exposure_guard worst={worst:.3f}s (goal < {GOAL_SECONDS} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The exposure guard: refuse a run that would show each training video too many times."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Literal

import polars as pl

from dagster_project.dataset.manifest import split_clips
from dagster_project.dataset.sampler import count_exposures
from dagster_project.params import GuardParams, TrainParams


@dataclass(frozen=True)
class ExposurePlan:
    """How often each training clip is seen in a planned run, and the verdict."""

    videos: int
    steps: int
    samples_per_step: int  # batch size x grad accumulation x data-parallel ranks
    per_video: list[int]
    max_exposures: float
    warn_exposures: float

    @property
    def mean(self) -> float:
        return self.steps * self.samples_per_step / self.videos

    @property
    def unused(self) -> int:
        """Training clips the run never shows (their bucket cannot fill a batch)."""
        return sum(1 for count in self.per_video if count == 0)

    @property
    def verdict(self) -> Literal["ok", "warn", "error"]:
        worst = max(self.per_video)
        if worst > self.max_exposures:
            return "error"
        return "warn" if worst > self.warn_exposures or self.unused else "ok"

    def summary(self) -> dict[str, float]:
        return {
            "min": min(self.per_video),
            "median": median(self.per_video),
            "max": max(self.per_video),
            "mean": round(self.mean, 2),
        }

    def message(self) -> str:
        """Names the exposure count and the videos (or steps) that would pass."""
        head = (
            f"{self.steps} steps x {self.samples_per_step} samples/step over {self.videos} "
            f"training videos shows each video {self.mean:.1f} times on average "
            f"(max {max(self.per_video)})"
        )
        if self.unused:
            head += (
                f"; {self.unused} clips are never shown: their bucket has fewer clips than one "
                "batch (add clips of that shape, or lower the batch size)"
            )
        if self.verdict == "ok":
            return f"{head}: within the safe zone (<= {self.warn_exposures:g})."
        limit = self.max_exposures if self.verdict == "error" else self.warn_exposures
        need_videos = -(-self.steps * self.samples_per_step // limit)
        max_steps = int(limit * self.videos // self.samples_per_step)
        word = "above the limit" if self.verdict == "error" else "above the safe zone"
        return (
            f"{head}: {word} of {limit:g}. Use at least {need_videos:.0f} training videos, "
            f"or at most {max_steps} steps."
        )


def plan_exposures(
    buckets: list[str],
    steps: int,
    batch_size: int,
    grad_accum: int,
    world_size: int,
    seed: int,
    max_exposures: float,
    warn_exposures: float,
) -> ExposurePlan:
    """Replay the ResolutionSampler for the planned run and judge the per-clip counts."""
    if not buckets:
        raise ValueError("no training videos: the manifest has no clip in the train split")
    per_video = count_exposures(buckets, batch_size, world_size, steps * grad_accum, seed)
    return ExposurePlan(
        videos=len(buckets),
        steps=steps,
        samples_per_step=batch_size * grad_accum * world_size,
        per_video=per_video,
        max_exposures=max_exposures,
        warn_exposures=warn_exposures,
    )


def plan_run(manifest: Path, train: TrainParams, guard: GuardParams) -> ExposurePlan:
    """The exposure plan of the run `train` describes, over the manifest's training clips."""
    clips = split_clips(pl.read_parquet(manifest), "train")
    return plan_exposures(
        clips["bucket"].to_list(),
        steps=train.steps,
        batch_size=train.batch_size,
        grad_accum=train.grad_accum,
        world_size=train.nproc_per_node,
        seed=train.seed,
        max_exposures=guard.max_exposures,
        warn_exposures=guard.warn_exposures,
    )

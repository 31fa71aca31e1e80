"""The exposure guard: refuse a run that would show each training video too many times."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Literal

import polars as pl

from dagster_project.core.params import GuardParams, TrainParams
from dagster_project.dataset.sampler import ResolutionSampler, count_exposures
from dagster_project.dataset.split import split_clips

# Replaying costs one pass over the clips per exposure; beyond this multiple of the limit the
# mean alone (a lower bound of the maximum) refuses the run, so the answer stays fast.
REPLAY_LIMIT = 2


@dataclass(frozen=True)
class ExposurePlan:
    """How often each training content (a clip and its near-duplicates) is seen in a planned
    run, and the verdict.

    `per_video` holds exact counts per content from replaying the sampler, or is None when the
    mean is so far above the limit (over REPLAY_LIMIT times) that the run is refused without
    replaying.
    """

    videos: int  # contents: near-duplicate clips count once
    steps: int
    samples_per_step: int  # batch size x grad accumulation x data-parallel ranks
    per_video: list[int] | None
    unused: int  # training clips never shown: their bucket cannot fill a step batch
    max_exposures: float
    warn_exposures: float
    # mean exposures the clips had before this run, in the lineage a warm start continues
    inherited: float = 0.0
    clips: int | None = None  # training clips, when near-duplicates make fewer contents

    @property
    def mean(self) -> float:
        return self.steps * self.samples_per_step / self.videos + self.inherited

    @property
    def worst(self) -> float:
        """The most any clip is seen (exact), or the mean when not replayed (at least that)."""
        return max(self.per_video) if self.per_video is not None else self.mean

    @property
    def verdict(self) -> Literal["ok", "warn", "error"]:
        if self.worst > self.max_exposures:
            return "error"
        return "warn" if self.worst > self.warn_exposures or self.unused else "ok"

    def summary(self) -> dict[str, float]:
        if self.per_video is None:
            return {"mean": round(self.mean, 2)}
        return {
            "min": min(self.per_video),
            "median": median(self.per_video),
            "max": max(self.per_video),
            "mean": round(self.mean, 2),
        }

    def message(self) -> str:
        """Names the exposure count and the videos (or steps) that would pass."""
        exact = (
            f"max {max(self.per_video)}"
            if self.per_video is not None
            else f"not replayed: over {REPLAY_LIMIT}x the limit on average alone"
        )
        copies = (
            f" ({self.clips} clips: near-duplicates count once)"
            if self.clips and self.clips != self.videos
            else ""
        )
        head = (
            f"{self.steps} steps x {self.samples_per_step} samples/step over {self.videos} "
            f"training videos{copies} shows each video {self.mean:.1f} times on average ({exact})"
        )
        if self.inherited:
            head += (
                f", counting {self.inherited:.1f} on average from the lineage this warm start "
                "continues (train.init: promoted)"
            )
        if self.unused:
            head += (
                f"; {self.unused} clips are never shown: their bucket has fewer clips than one "
                "step's batch (add clips of that shape, or lower the batch size)"
            )
        if self.verdict == "ok":
            return f"{head}: within the safe zone (<= {self.warn_exposures:g})."
        limit = self.max_exposures if self.verdict == "error" else self.warn_exposures
        need_videos = -(-self.steps * self.samples_per_step // limit)
        max_steps = max(0, int((limit - self.inherited) * self.videos // self.samples_per_step))
        word = "above the limit" if self.verdict == "error" else "above the safe zone"
        fix = f"Use at least {need_videos:.0f} training videos, or at most {max_steps} steps"
        if self.inherited:
            fix += ", or start from the base model (train.init: base)"
        return f"{head}: {word} of {limit:g}. {fix}."


def plan_exposures(
    buckets: list[str],
    steps: int,
    batch_size: int,
    grad_accum: int,
    world_size: int,
    seed: int,
    max_exposures: float,
    warn_exposures: float,
    inherited: list[int] | None = None,
    contents: list[str] | None = None,
) -> ExposurePlan:
    """Replay the ResolutionSampler for the planned run and judge the counts per content (or
    refuse from the mean when it alone is far above the limit). `inherited` holds each clip's
    exposures in the lineage a warm start continues, which count too; `contents` each clip's
    near-duplicate group (None: every clip its own), whose clips' exposures add up."""
    if not buckets:
        raise ValueError("no training videos: the manifest has no clip in the train split")
    contents = contents or list(range(len(buckets)))
    groups = {content: i for i, content in enumerate(dict.fromkeys(contents))}

    def per_content(counts: list[int]) -> list[int]:
        total = [0] * len(groups)
        for content, count in zip(contents, counts, strict=True):
            total[groups[content]] += count
        return total

    step_batch = batch_size * grad_accum * world_size
    sampler = ResolutionSampler(buckets, step_batch, seed=seed)
    unused = sum(len(members) for members in sampler.skipped.values())
    per_video = None
    if steps * step_batch / len(groups) <= REPLAY_LIMIT * max_exposures:
        per_clip = count_exposures(buckets, step_batch, steps, seed)
        if inherited:
            per_clip = [n + before for n, before in zip(per_clip, inherited, strict=True)]
        per_video = per_content(per_clip)
    return ExposurePlan(
        videos=len(groups),
        steps=steps,
        samples_per_step=step_batch,
        per_video=per_video,
        unused=unused,
        max_exposures=max_exposures,
        warn_exposures=warn_exposures,
        inherited=sum(inherited) / len(groups) if inherited else 0.0,
        clips=len(buckets),
    )


def world_size(train: TrainParams) -> int:
    """Processes of the run `train` describes, over every node."""
    return train.nproc_per_node * train.launch.nnodes


def samples_per_step(train: TrainParams) -> int:
    """Clips per optimizer step of a run of `train`: batch x accumulation x processes."""
    return train.batch_size * train.grad_accum * world_size(train)


def trained_exposures(buckets: list[str], train: TrainParams, steps: int) -> list[int]:
    """Exposures per clip (of `buckets`, the trainer's clips) over the `steps` a run of
    `train` trained (it may have stopped early)."""
    return count_exposures(buckets, samples_per_step(train), steps, train.seed)


def plan_run(
    manifest: Path, train: TrainParams, guard: GuardParams, inherited: dict[str, int] | None = None
) -> ExposurePlan:
    """The exposure plan of the run `train` describes, over the manifest's training clips;
    `inherited` maps a clip's sha256 to its exposures in the lineage a warm start continues."""
    clips = split_clips(pl.read_parquet(manifest), "train")
    return plan_exposures(
        clips["bucket"].to_list(),
        steps=train.steps,
        batch_size=train.batch_size,
        grad_accum=train.grad_accum,
        world_size=world_size(train),
        seed=train.seed,
        max_exposures=guard.max_exposures,
        warn_exposures=guard.warn_exposures,
        inherited=[inherited.get(sha, 0) for sha in clips["sha256"]] if inherited else None,
        contents=clips["content"].to_list(),
    )

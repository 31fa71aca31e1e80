"""The exposure guard: refuse a run that would show each training video too many times.

Counted at two levels: per sample (a window of a content: near-duplicate clips' windows at the
same start count as one, and a short clip is one window), against `guard.max_exposures`, and
per content (all its windows, all its copies), against `guard.max_clip_exposures`: a 60 s clip
seen once in each of 20 windows is 20 exposures of its content, not 20 of any one sample.
"""

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
    samples: int | None = None  # training windows, when clips have more than one
    per_content: list[int] | None = None  # exposures of each content, all its windows
    max_clip_exposures: float = float("inf")

    @property
    def mean(self) -> float:
        return self.steps * self.samples_per_step / self.videos + self.inherited

    @property
    def worst(self) -> float:
        """The most any clip is seen (exact), or the mean when not replayed (at least that)."""
        return max(self.per_video) if self.per_video is not None else self.mean

    @property
    def windowed(self) -> bool:
        """Whether some clip gives more than one training window."""
        return self.samples is not None and self.samples != self.clips

    @property
    def worst_content(self) -> float:
        return max(self.per_content) if self.per_content else 0.0

    @property
    def binding(self) -> Literal["sample", "content"] | None:
        """Which limit the plan breaks: the per-sample or the per-content one (None: neither)."""
        if self.worst > self.max_exposures:
            return "sample"
        return "content" if self.worst_content > self.max_clip_exposures else None

    @property
    def verdict(self) -> Literal["ok", "warn", "error"]:
        if self.binding is not None:
            return "error"
        return "warn" if self.worst > self.warn_exposures or self.unused else "ok"

    def summary(self) -> dict[str, float]:
        if self.per_video is None:
            return {"mean": round(self.mean, 2)}
        summary = {
            "min": min(self.per_video),
            "median": median(self.per_video),
            "max": max(self.per_video),
            "mean": round(self.mean, 2),
        }
        if self.windowed:
            summary["content_max"] = self.worst_content
        return summary

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
        if self.windowed:
            contents = len(self.per_content or []) or self.videos
            head = (
                f"{self.steps} steps x {self.samples_per_step} samples/step over {self.videos} "
                f"training windows of {contents} videos{copies} shows each window "
                f"{self.mean:.1f} times on average ({exact}) and each video "
                f"{self.steps * self.samples_per_step / contents:.1f} times (max "
                f"{self.worst_content:g}, all its windows)"
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
        if self.binding == "content":
            limit = self.max_clip_exposures
            contents = len(self.per_content or [])
            max_steps = int(limit * contents // self.samples_per_step)
            return (
                f"{head}: above the per-video limit of {limit:g} (guard.max_clip_exposures: "
                f"the binding limit, each window stays within {self.max_exposures:g}). Use more "
                f"videos, or at most {max_steps} steps."
            )
        limit = self.max_exposures if self.verdict == "error" else self.warn_exposures
        need_videos = -(-self.steps * self.samples_per_step // limit)
        max_steps = max(0, int((limit - self.inherited) * self.videos // self.samples_per_step))
        word = "above the limit" if self.verdict == "error" else "above the safe zone"
        if self.windowed:  # the per-window limit binds
            word += " per window (guard.max_exposures; the binding limit)"
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
    windows: list[int] | None = None,
    max_clip_exposures: float = float("inf"),
    clip_ids: list[str] | None = None,
) -> ExposurePlan:
    """Replay the ResolutionSampler for the planned run over its samples (`buckets`: one per
    training window) and judge the counts per sample (a content's window: `contents` each
    sample's near-duplicate group, None: every sample its own; `windows` each sample's start,
    None: all 0) and per content, or refuse from the mean when it alone is far above the limit.
    `inherited` holds each sample's exposures in the lineage a warm start continues, which
    count too; `clip_ids` names each sample's clip (None: every sample its own clip)."""
    if not buckets:
        raise ValueError("no training videos: the manifest has no clip in the train split")
    contents = contents or list(range(len(buckets)))
    windows = windows or [0] * len(buckets)
    keys = list(zip(contents, windows, strict=True))
    groups = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    content_ids = {content: i for i, content in enumerate(dict.fromkeys(contents))}

    def total(counts: list[int], of: list, ids: dict) -> list[int]:
        sums = [0] * len(ids)
        for key, count in zip(of, counts, strict=True):
            sums[ids[key]] += count
        return sums

    step_batch = batch_size * grad_accum * world_size
    sampler = ResolutionSampler(buckets, step_batch, seed=seed)
    unused = sum(len(members) for members in sampler.skipped.values())
    per_video = per_content = None
    if steps * step_batch / len(groups) <= REPLAY_LIMIT * max_exposures:
        per_sample = count_exposures(buckets, step_batch, steps, seed)
        if inherited:
            per_sample = [n + before for n, before in zip(per_sample, inherited, strict=True)]
        per_video = total(per_sample, keys, groups)
        per_content = total(per_sample, contents, content_ids)
    return ExposurePlan(
        videos=len(groups),
        steps=steps,
        samples_per_step=step_batch,
        per_video=per_video,
        unused=unused,
        max_exposures=max_exposures,
        warn_exposures=warn_exposures,
        inherited=sum(inherited) / len(groups) if inherited else 0.0,
        clips=len(set(clip_ids)) if clip_ids else len(buckets),
        samples=len(buckets),
        per_content=per_content,
        max_clip_exposures=max_clip_exposures,
    )


def world_size(train: TrainParams) -> int:
    """Processes of the run `train` describes, over every node."""
    return train.nproc_per_node * train.launch.nnodes


def samples_per_step(train: TrainParams) -> int:
    """Clips per optimizer step of a run of `train`: batch x accumulation x processes."""
    return train.batch_size * train.grad_accum * world_size(train)


def trained_exposures(samples: pl.DataFrame, train: TrainParams, steps: int) -> dict[str, int]:
    """Exposures per clip (sha256: all its windows) over the `steps` a run of `train` trained
    (it may have stopped early); `samples` are the trainer's (a `clip_table`: one row per
    window)."""
    per_sample = count_exposures(
        samples["bucket"].to_list(), samples_per_step(train), steps, train.seed
    )
    per_clip: dict[str, int] = {}
    for sha, count in zip(samples["sha256"], per_sample, strict=True):
        per_clip[sha] = per_clip.get(sha, 0) + count
    return per_clip


def plan_run(
    manifest: Path, train: TrainParams, guard: GuardParams, inherited: dict[str, int] | None = None
) -> ExposurePlan:
    """The exposure plan of the run `train` describes, over the manifest's training clips and
    their windows; `inherited` maps a clip's sha256 to its exposures in the lineage a warm
    start continues (spread over the clip's windows)."""
    clips = split_clips(pl.read_parquet(manifest), "train")
    windows = clips["windows"] if "windows" in clips.columns else pl.Series([1] * clips.height)
    samples = (
        clips.select("sha256", "bucket", "content")
        .with_columns(window=pl.int_ranges(0, windows))
        .explode("window")
    )  # one row per window, in the order clip_table has them
    before = None
    if inherited:
        share = {sha: inherited.get(sha, 0) for sha in clips["sha256"]}
        count = dict(zip(clips["sha256"], windows, strict=True))
        before = [-(-share[sha] // count[sha]) for sha in samples["sha256"]]
    return plan_exposures(
        samples["bucket"].to_list(),
        steps=train.steps,
        batch_size=train.batch_size,
        grad_accum=train.grad_accum,
        world_size=world_size(train),
        seed=train.seed,
        max_exposures=guard.max_exposures,
        warn_exposures=guard.warn_exposures,
        inherited=before,
        contents=samples["content"].to_list(),
        windows=samples["window"].to_list(),
        max_clip_exposures=guard.max_clip_exposures,
        clip_ids=samples["sha256"].to_list(),
    )

"""Resolution buckets: (frames, height, width) shapes that batches are grouped by."""

from __future__ import annotations

import math
from typing import NamedTuple

from dagster_project.models.families import FamilySpec
from dagster_project.params import ParamsError


class Bucket(NamedTuple):
    frames: int
    height: int
    width: int

    @property
    def name(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"

    @classmethod
    def parse(cls, name: str) -> Bucket:
        frames, height, width = (int(part) for part in name.split("x"))
        return cls(frames, height, width)


def parse_buckets(sizes: list[tuple[int, int, int]], family: FamilySpec) -> list[Bucket]:
    """Validate the buckets of params.yaml against the model family's shape constraints."""
    buckets = []
    for i, size in enumerate(sizes):
        bucket = Bucket(*size)
        problem = family.check_bucket(*bucket)
        if problem:
            raise ParamsError(
                f"buckets.sizes.{i}: {bucket.name} does not fit {family.name}: {problem}"
            )
        buckets.append(bucket)
    if len(set(buckets)) != len(buckets):
        raise ParamsError("buckets.sizes: the same bucket is listed twice")
    return buckets


def generate_buckets(
    frames: list[int], areas: list[int], aspect_ratios: list[float], family: FamilySpec
) -> list[Bucket]:
    """Buckets from rules: for each area and aspect ratio (width / height), the sides closest
    to it that are multiples of the family's spatial multiple; each frame count must fit."""
    for i, count in enumerate(frames):
        if (count - 1) % family.frame_multiple:
            raise ParamsError(
                f"buckets.rules.frames.{i}: {count} is not {family.frame_multiple}k+1 "
                f"({family.name})"
            )
    step = family.spatial_multiple
    buckets = set()
    for area in areas:
        for ratio in aspect_ratios:
            height = max(step, round(math.sqrt(area / ratio) / step) * step)
            width = max(step, round(math.sqrt(area * ratio) / step) * step)
            buckets |= {Bucket(count, height, width) for count in frames}
    return sorted(buckets)


def buckets_from_params(
    sizes: list[tuple[int, int, int]] | None, rules: object | None, family: FamilySpec
) -> list[Bucket]:
    """The bucket list of params.yaml (`buckets.sizes` or `buckets.rules`), validated."""
    if rules is not None:
        return generate_buckets(rules.frames, rules.areas, rules.aspect_ratios, family)
    return parse_buckets(sizes, family)


def assign_bucket(
    frames_available: int, width: int, height: int, buckets: list[Bucket]
) -> Bucket | None:
    """The longest frame bucket the clip fills, then the nearest aspect ratio in log space.

    None when the clip is shorter than every bucket.
    """
    fitting = [b for b in buckets if b.frames <= frames_available]
    if not fitting:
        return None
    longest = max(b.frames for b in fitting)
    aspect = math.log(width / height)
    return min(
        (b for b in fitting if b.frames == longest),
        key=lambda b: (abs(math.log(b.width / b.height) - aspect), -b.height * b.width),
    )

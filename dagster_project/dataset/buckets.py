"""Resolution buckets: (frames, height, width) shapes that batches are grouped by."""

from __future__ import annotations

import math
from typing import NamedTuple

from dagster_project.models.wan import FamilySpec
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

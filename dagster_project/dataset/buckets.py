"""Which resolution bucket a clip goes to (the buckets themselves: `core/shapes.py`)."""

from __future__ import annotations

import math

from dagster_project.core.shapes import Bucket


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

"""Shape rules of the model families and the resolution buckets they allow, as plain data.

They sit on the ground floor so params.yaml can be validated without importing any model
code: a family's spec in `models/` reads its rules from here. Bucket errors are plain
`BucketError`s naming the entry (``sizes.1``); params.py puts the section name in front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class FamilyShape:
    """What a model family's architecture fixes about its inputs."""

    name: str
    frame_multiple: int  # frames = frame_multiple * k + 1 (the VAE's time factor)
    spatial_multiple: int  # VAE spatial factor x transformer patch size
    fps: float  # the frame rate the family was trained at
    text_len: int | None = None  # caption tokens, where the architecture fixes the length
    # the transformers that split the noise levels between them (Wan 2.2 A14B: the high-noise
    # expert above a boundary, the low-noise one below); empty: one transformer
    experts: tuple[str, ...] = ()
    # what it trains: text-to-video, and image-to-video from the clip's first frame
    tasks: tuple[str, ...] = ("t2v",)
    # i2v: whether the same model also runs without the first frame (train.first_frame_p)
    drops_first_frame: bool = False
    # i2v: caption tokens, where the image-to-video transformer fixes them (Wan 2.1 I2V's 512)
    i2v_text_len: int | None = None

    def check_bucket(self, frames: int, height: int, width: int) -> str | None:
        """Return why (frames, height, width) does not fit this family, or None."""
        if (frames - 1) % self.frame_multiple:
            return f"frames {frames} is not {self.frame_multiple}k+1"
        for side, value in (("height", height), ("width", width)):
            if value % self.spatial_multiple:
                return f"{side} {value} is not a multiple of {self.spatial_multiple}"
        return None


FAMILY_SHAPES = {
    shape.name: shape
    for shape in (
        FamilyShape(
            "wan",
            frame_multiple=4,
            spatial_multiple=16,
            fps=16.0,
            tasks=("t2v", "i2v"),
            i2v_text_len=512,
        ),
        FamilyShape(
            "wan22",
            frame_multiple=4,
            spatial_multiple=16,
            fps=16.0,
            experts=("high", "low"),
            tasks=("t2v", "i2v"),
        ),
        # TI2V 5B: the Wan 2.2 VAE's 16x times the transformer's patch of 2; made at 24 fps
        FamilyShape(
            "wan22_ti2v",
            frame_multiple=4,
            spatial_multiple=32,
            fps=24.0,
            tasks=("t2v", "i2v"),
            drops_first_frame=True,
        ),
        FamilyShape("hunyuan", frame_multiple=4, spatial_multiple=16, fps=24.0),
        # HunyuanVideo 1.5: its VAE's 16x (patch size 1), 121 frames at 24 fps; its I2V
        # transformer tells the tasks apart by all-zero image embeddings over the whole batch,
        # so a batch cannot mix samples with and without the first frame
        FamilyShape(
            "hunyuan15", frame_multiple=4, spatial_multiple=16, fps=24.0, tasks=("t2v", "i2v")
        ),
        FamilyShape(
            "ltx",
            frame_multiple=8,
            spatial_multiple=32,
            fps=24.0,
            tasks=("t2v", "i2v"),
            drops_first_frame=True,
        ),
        # LTX-2: its video VAE's 32x and 8x (patch size 1), as LTX-Video's; made at 24 fps
        FamilyShape(
            "ltx2",
            frame_multiple=8,
            spatial_multiple=32,
            fps=24.0,
            tasks=("t2v", "i2v"),
            drops_first_frame=True,
        ),
        # CogVideoX's transformer has a fixed text length (max_text_seq_length)
        FamilyShape("cogvideox", frame_multiple=4, spatial_multiple=16, fps=8.0, text_len=226),
    )
}


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


class BucketError(ValueError):
    """A bucket entry does not fit the family; `key` names the entry (``sizes.1``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def parse_buckets(sizes: list[tuple[int, int, int]], shape: FamilyShape) -> list[Bucket]:
    """An explicit bucket list, each checked against the family's shape rules."""
    buckets = []
    for i, size in enumerate(sizes):
        bucket = Bucket(*size)
        problem = shape.check_bucket(*bucket)
        if problem:
            raise BucketError(f"sizes.{i}", f"{bucket.name} does not fit {shape.name}: {problem}")
        buckets.append(bucket)
    if len(set(buckets)) != len(buckets):
        raise BucketError("sizes", "the same bucket is listed twice")
    return buckets


def generate_buckets(
    frames: list[int], areas: list[int], aspect_ratios: list[float], shape: FamilyShape
) -> list[Bucket]:
    """Buckets from rules: for each area and aspect ratio (width / height), the sides closest
    to it that are multiples of the family's spatial multiple; each frame count must fit."""
    for i, count in enumerate(frames):
        if (count - 1) % shape.frame_multiple:
            raise BucketError(
                f"rules.frames.{i}", f"{count} is not {shape.frame_multiple}k+1 ({shape.name})"
            )
    step = shape.spatial_multiple
    buckets = set()
    for area in areas:
        for ratio in aspect_ratios:
            height = max(step, round(math.sqrt(area / ratio) / step) * step)
            width = max(step, round(math.sqrt(area * ratio) / step) * step)
            buckets |= {Bucket(count, height, width) for count in frames}
    return sorted(buckets)

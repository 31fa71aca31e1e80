"""Pixel-space similarity of decoded clips: SSIM (torchmetrics) on a common small grid.

Clips of different buckets compare after resampling to `FRAMES` frames of `SIDE` x `SIDE`
pixels; the SSIM of two clips is the mean over their frame pairs (1 = identical).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

FRAMES, SIDE = 8, 64


def clip_pixels(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames [F, H, W, 3] -> float [FRAMES, 3, SIDE, SIDE] in [0, 1]."""
    video = frames.permute(0, 3, 1, 2).float() / 255
    picks = torch.linspace(0, len(video) - 1, FRAMES).round().long()
    return F.interpolate(video[picks], size=(SIDE, SIDE), mode="bilinear", align_corners=False)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two `clip_pixels` clips, averaged over frames."""
    return float(structural_similarity_index_measure(a, b, data_range=1.0))


def ssim_to_each(clip: torch.Tensor, references: list[torch.Tensor]) -> list[float]:
    """SSIM of `clip` to every reference clip."""
    return [ssim(clip, reference) for reference in references]


def pixel_diversity(clips: list[torch.Tensor]) -> float:
    """Mean 1 - SSIM over all pairs of clips (0 = identical outputs)."""
    pairs = list(itertools.combinations(clips, 2))
    return sum(1 - ssim(a, b) for a, b in pairs) / len(pairs)

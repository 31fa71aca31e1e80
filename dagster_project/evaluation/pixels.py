"""Pixel-space similarity of decoded clips: SSIM (torchmetrics) on a common small grid.

Clips of different buckets compare after resampling to `FRAMES` frames of `SIDE` x `SIDE`
pixels; the SSIM of two clips is the mean over their frame pairs (1 = identical).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from dagster_project.evaluation.diversity import grouped_pairs

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


def pixel_diversity(groups: list[list[torch.Tensor]]) -> tuple[float, float | None]:
    """(within, across): mean 1 - SSIM over pairs of clips of one group (one prompt's samples),
    and over pairs from different groups (None with one group); 0 = identical outputs."""
    within, across = ([1 - ssim(a, b) for a, b in pairs] for pairs in grouped_pairs(groups))
    return sum(within) / len(within), sum(across) / len(across) if across else None

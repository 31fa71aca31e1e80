"""Output diversity and similarity to training clips, measured on generated latents.

Samples and clips are compared as features: the normalized latent average-pooled to a fixed
(2, 4, 4) grid per channel, so clips of different buckets compare, minus the mean feature of the
run's clips (what every clip shares: a VAE's offsets, the data's common look; without it every
clip of a random-init VAE is 0.99 similar to every other), then unit-normalized.
Diversity is the mean pairwise cosine distance between samples of one prompt (0 = identical);
memorization is each sample's cosine similarity to its nearest training clip (1 = a copy).
"""

from __future__ import annotations

import itertools
from typing import TypeVar

import torch
import torch.nn.functional as F

T = TypeVar("T")


def pooled(latent: torch.Tensor) -> torch.Tensor:
    """[C, f, h, w] latent -> its (2, 4, 4) average per channel, flattened."""
    return F.adaptive_avg_pool3d(latent.unsqueeze(0).float(), (2, 4, 4)).flatten()


def clip_features(latent: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """[C, f, h, w] latent -> unit feature vector, `center` (a mean of `pooled`) taken off."""
    vector = pooled(latent)
    return F.normalize(vector if center is None else vector - center, dim=0)


def grouped_pairs(groups: list[list[T]]) -> tuple[list[tuple[T, T]], list[tuple[T, T]]]:
    """(pairs within a group, pairs across groups) of items grouped by prompt."""
    within = [pair for group in groups for pair in itertools.combinations(group, 2)]
    across = [
        (a, b) for first, second in itertools.combinations(groups, 2) for a in first for b in second
    ]
    return within, across


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean cosine distance over all pairs of rows of a [N, D] unit-feature matrix (N >= 2)."""
    pairs = list(itertools.combinations(range(len(features)), 2))
    return sum(1 - float(features[i] @ features[j]) for i, j in pairs) / len(pairs)


def nearest_similarity(samples: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each sample row to its nearest reference row."""
    return (samples @ references.T).max(dim=1).values

"""Output diversity and similarity to training clips, measured on generated latents.

Samples and clips are compared as features: the normalized latent average-pooled to a fixed
(2, 4, 4) grid per channel, then unit-normalized, so clips of different buckets compare.
Diversity is the mean pairwise cosine distance between samples of one prompt (0 = identical);
memorization is each sample's cosine similarity to its nearest training clip (1 = a copy).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from dagster_project.shapes import Bucket


def clip_features(latent: torch.Tensor) -> torch.Tensor:
    """[C, f, h, w] latent -> unit feature vector."""
    pooled = F.adaptive_avg_pool3d(latent.unsqueeze(0).float(), (2, 4, 4)).flatten()
    return F.normalize(pooled, dim=0)


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean cosine distance over all pairs of rows of a [N, D] unit-feature matrix (N >= 2)."""
    pairs = list(itertools.combinations(range(len(features)), 2))
    return sum(1 - float(features[i] @ features[j]) for i, j in pairs) / len(pairs)


def nearest_similarity(samples: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each sample row to its nearest reference row."""
    return (samples @ references.T).max(dim=1).values


@torch.no_grad()
def generate_latents(
    pipeline: torch.nn.Module,
    prompt_embeds: torch.Tensor,
    bucket: Bucket,
    seeds: list[int],
    steps: int,
    guidance_scale: float,
) -> list[torch.Tensor]:
    """One generated (normalized) latent per seed for one prompt, through WanPipeline."""
    negative = torch.zeros_like(prompt_embeds) if guidance_scale > 1 else None
    samples = []
    for seed in seeds:
        output = pipeline(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative,
            height=bucket.height,
            width=bucket.width,
            num_frames=bucket.frames,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=torch.Generator().manual_seed(seed),
            output_type="latent",
        )
        samples.append(output.frames[0])
    return samples

"""Validation loss at fixed noise levels with fixed noise: comparable across checkpoints."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import torch

from dagster_project.dataset.cache import load_entry
from dagster_project.models.spec import ModelSpec


def load_clip_latents(table: pl.DataFrame, spec: ModelSpec) -> list[torch.Tensor]:
    """The normalized posterior mean of each clip in a `clip_table` (no sampling)."""
    latents = []
    for clip, path in zip(table["path"], table["latent_file"], strict=True):
        entry = load_entry(Path(path), f"clip {clip}: its latents")
        moments = {key: value.unsqueeze(0) for key, value in entry.items()}
        latents.append(spec.latents(moments, generator=None)[0])
    return latents


def load_clip_conditioning(table: pl.DataFrame) -> list[dict[str, torch.Tensor]]:
    """The cached caption conditioning of each clip in a `clip_table`, batched by one."""
    return [
        {
            key: value.unsqueeze(0)
            for key, value in load_entry(Path(path), f"clip {clip}: its caption").items()
        }
        for clip, path in zip(table["path"], table["text_file"], strict=True)
    ]


@torch.no_grad()
def fixed_sigma_loss(
    spec: ModelSpec,
    transformer: torch.nn.Module,
    latents: list[torch.Tensor],
    conditioning: list[dict[str, torch.Tensor]],
    sigmas: list[float],
    seed: int,
) -> dict[float, float]:
    """Mean loss per noise level over the clips; noise is fixed by (seed, clip index).

    Uses the posterior mean (no sampling), so two checkpoints see exactly the same inputs.
    """
    transformer.eval()
    totals = torch.zeros(len(sigmas))
    levels = torch.tensor(sigmas)
    for index, (latent, cond) in enumerate(zip(latents, conditioning, strict=True)):
        generator = torch.Generator().manual_seed(seed * 100_003 + index)
        noise = torch.randn((len(sigmas), *latent.shape), generator=generator)
        batch = latent.unsqueeze(0).expand(len(sigmas), *latent.shape)
        cond_batch = {k: v.expand(len(sigmas), *v.shape[1:]) for k, v in cond.items()}
        totals += spec.loss(transformer, batch, cond_batch, levels, noise)
    return {s: float(v) for s, v in zip(sigmas, totals / max(1, len(latents)), strict=True)}

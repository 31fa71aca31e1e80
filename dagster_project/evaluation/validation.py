"""Validation loss at fixed noise levels with fixed noise: comparable across checkpoints."""

from __future__ import annotations

import polars as pl
import torch
from safetensors.torch import load_file

from dagster_project.models.text_encoder import pad_embeddings
from dagster_project.training.flow_matching import flow_matching_loss


def load_clip_latents(
    table: pl.DataFrame, latents_mean: torch.Tensor, latents_std: torch.Tensor
) -> list[torch.Tensor]:
    """The normalized posterior mean of each clip in a `clip_table` ([C, f, h, w] each)."""
    return [
        ((load_file(path)["mean"].unsqueeze(0) - latents_mean) / latents_std)[0]
        for path in table["latent_file"]
    ]


def load_clip_text(table: pl.DataFrame, text_len: int) -> list[torch.Tensor]:
    """The padded caption embedding of each clip in a `clip_table` ([1, text_len, D] each)."""
    return [pad_embeddings([load_file(path)["embedding"]], text_len) for path in table["text_file"]]


@torch.no_grad()
def fixed_sigma_loss(
    transformer: torch.nn.Module,
    latents: list[torch.Tensor],
    texts: list[torch.Tensor],
    sigmas: list[float],
    seed: int,
) -> dict[float, float]:
    """Mean flow-matching loss per sigma over the clips; noise is fixed by (seed, clip index).

    Uses the posterior mean (no sampling), so two checkpoints see exactly the same inputs.
    """
    transformer.eval()
    totals = torch.zeros(len(sigmas))
    sigma_batch = torch.tensor(sigmas)
    for index, (latent, text) in enumerate(zip(latents, texts, strict=True)):
        generator = torch.Generator().manual_seed(seed * 100_003 + index)
        noise = torch.randn((len(sigmas), *latent.shape), generator=generator)
        batch = latent.unsqueeze(0).expand(len(sigmas), *latent.shape)
        text_batch = text.expand(len(sigmas), *text.shape[1:])
        totals += flow_matching_loss(transformer, batch, text_batch, sigma_batch, noise)
    return {s: float(v) for s, v in zip(sigmas, totals / max(1, len(latents)), strict=True)}

"""Rectified flow (flow matching), as diffusers' training scripts train Wan, LTX-Video and
HunyuanVideo: sigmas drawn from a density and mapped through the family's (shifted) scheduler,
velocity target `noise - latents`, SD3 loss weighting."""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import (
    compute_density_for_timestep_sampling,
    compute_loss_weighting_for_sd3,
)

FULL_SPAN = (0.0, 1.0)
REDRAWS = 64  # rounds of drawing before the rest of a narrow span is drawn uniformly


def sample_sigmas(
    scheduler: FlowMatchEulerDiscreteScheduler,
    count: int,
    weighting_scheme: str,
    generator: torch.Generator,
    span: tuple[float, float] = FULL_SPAN,
) -> torch.Tensor:
    """Noise levels for `count` samples: u from the density (logit-normal by default), then the
    scheduler's sigma at that position, so the family's shift applies as in its training.

    `span` [low, high) keeps the levels one expert owns (high included where it is 1): levels
    outside it are drawn again, so the density inside keeps its shape."""
    steps = scheduler.config.num_train_timesteps
    sigmas = scheduler.sigmas.to(generator.device)[:steps]
    low, high = span
    inside = (sigmas >= low) & ((sigmas < high) | (high >= 1.0))
    if not inside.any():
        raise ValueError(f"no training noise level in [{low}, {high})")
    kept = torch.empty(0, device=generator.device)
    for _ in range(REDRAWS if span != FULL_SPAN else 1):
        u = compute_density_for_timestep_sampling(
            weighting_scheme,
            count,
            logit_mean=0.0,
            logit_std=1.0,
            mode_scale=1.29,
            device=generator.device,
            generator=generator,
        )
        indices = (u * steps).long().clamp(0, steps - 1).to(generator.device)
        kept = torch.cat([kept, sigmas[indices][inside[indices]]])[:count]
        if len(kept) == count:
            return kept
    # a span the density almost never reaches: the rest uniformly among its levels
    choices = inside.nonzero()[:, 0]
    picks = torch.randint(
        len(choices), (count - len(kept),), generator=generator, device=generator.device
    )
    return torch.cat([kept, sigmas[choices[picks]]])


def noisy_latents(
    latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the noisy input at each sample's sigma, the velocity target `noise - latents`)."""
    s = sigmas.view(-1, *[1] * (latents.ndim - 1)).to(latents.dtype)
    return (1 - s) * latents + s * noise, noise - latents


def weighted_mse(
    prediction: torch.Tensor,
    target: torch.Tensor,
    sigmas: torch.Tensor,
    weighting_scheme: str,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample MSE, weighted as diffusers' SD3 scripts weight it; with a `mask` (1: scored,
    broadcast over the prediction), the mean over the scored elements only (a clean first
    frame is given, not predicted)."""
    weights = compute_loss_weighting_for_sd3(weighting_scheme, sigmas.float())
    error = (prediction.float() - target.float()).pow(2)
    if mask is None:
        return error.flatten(1).mean(1) * weights
    mask = mask.float().expand_as(error)
    return (error * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1) * weights


def weighted_total(parts: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The per-sample loss from per-modality ones: their weighted sum, a modality a sample
    lacks (NaN: a clip without audio) counting 0."""
    return sum(weights[name] * part.nan_to_num(0.0) for name, part in parts.items())

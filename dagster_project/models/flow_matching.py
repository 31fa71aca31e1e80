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


def sample_sigmas(
    scheduler: FlowMatchEulerDiscreteScheduler,
    count: int,
    weighting_scheme: str,
    generator: torch.Generator,
) -> torch.Tensor:
    """Noise levels for `count` samples: u from the density (logit-normal by default), then the
    scheduler's sigma at that position, so the family's shift applies as in its training."""
    u = compute_density_for_timestep_sampling(
        weighting_scheme,
        count,
        logit_mean=0.0,
        logit_std=1.0,
        mode_scale=1.29,
        device=generator.device,
        generator=generator,
    )
    steps = scheduler.config.num_train_timesteps
    indices = (u * steps).long().clamp(0, steps - 1)
    return scheduler.sigmas.to(generator.device)[indices.to(generator.device)]


def noisy_latents(
    latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the noisy input at each sample's sigma, the velocity target `noise - latents`)."""
    s = sigmas.view(-1, *[1] * (latents.ndim - 1)).to(latents.dtype)
    return (1 - s) * latents + s * noise, noise - latents


def weighted_mse(
    prediction: torch.Tensor, target: torch.Tensor, sigmas: torch.Tensor, weighting_scheme: str
) -> torch.Tensor:
    """Per-sample MSE, weighted as diffusers' SD3 scripts weight it."""
    weights = compute_loss_weighting_for_sd3(weighting_scheme, sigmas.float())
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(1) * weights

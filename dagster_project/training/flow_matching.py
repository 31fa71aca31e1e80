"""Rectified-flow (flow-matching) objective, as Wan is trained."""

from __future__ import annotations

import torch
from diffusers.training_utils import compute_density_for_timestep_sampling


def sample_sigmas(
    batch_size: int, weighting_scheme: str, generator: torch.Generator
) -> torch.Tensor:
    """Noise levels in (0, 1) from the chosen density (logit-normal by default), on the
    generator's device."""
    u = compute_density_for_timestep_sampling(
        weighting_scheme,
        batch_size,
        logit_mean=0.0,
        logit_std=1.0,
        mode_scale=1.29,
        device=generator.device,
        generator=generator,
    )
    return u.clamp(1e-3, 1 - 1e-3)


def flow_matching_loss(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    text: torch.Tensor,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Per-sample MSE between the predicted and the true velocity (noise - latents)."""
    s = sigmas.view(-1, 1, 1, 1, 1).to(latents.dtype)
    noisy = (1 - s) * latents + s * noise
    prediction = transformer(
        hidden_states=noisy,
        timestep=sigmas * 1000,
        encoder_hidden_states=text,
        return_dict=False,
    )[0]
    target = noise - latents
    return (prediction.float() - target.float()).pow(2).mean(dim=(1, 2, 3, 4))

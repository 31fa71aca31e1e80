"""Validation loss at fixed noise levels with fixed noise: comparable across checkpoints."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import torch

from dagster_project.dataset.cache import load_entry
from dagster_project.models import flow_matching
from dagster_project.models.spec import ModelSpec
from dagster_project.training.data import MOMENTS

CPU = torch.device("cpu")


def load_clip_latents(table: pl.DataFrame, spec: ModelSpec) -> list[torch.Tensor]:
    """The normalized posterior mean of each clip in a `clip_table` (no sampling)."""
    latents = []
    for clip, path in zip(table["path"], table["latent_file"], strict=True):
        entry = load_entry(Path(path), f"clip {clip}: its latents")
        moments = {key: entry[key].unsqueeze(0) for key in MOMENTS}
        latents.append(spec.latents(moments, generator=None)[0])
    return latents


def load_clip_conditioning(table: pl.DataFrame) -> list[dict[str, torch.Tensor]]:
    """The cached conditioning of each clip in a `clip_table`, batched by one: its caption's
    and, for image-to-video, its first frame's (kept in its latent entry)."""
    conditioning = []
    rows = zip(table["path"], table["text_file"], table["latent_file"], strict=True)
    for clip, text, latent in rows:
        entry = load_entry(Path(text), f"clip {clip}: its caption")
        frame = load_entry(Path(latent), f"clip {clip}: its latents")
        entry |= {key: value for key, value in frame.items() if key not in MOMENTS}
        conditioning.append({key: value.unsqueeze(0) for key, value in entry.items()})
    return conditioning


@torch.no_grad()
def fixed_sigma_losses(
    spec: ModelSpec,
    transformer: torch.nn.Module,
    latents: list[torch.Tensor],
    conditioning: list[dict[str, torch.Tensor]],
    sigmas: list[float],
    seed: int,
    device: torch.device = CPU,
) -> dict[str, dict[float, float]]:
    """Mean loss per noise level over the clips: `"loss"` as training weighs it, and where the
    family has several modalities (LTX-2: video, audio) each one's over the clips that have it
    (none recorded where no clip has it). Noise is fixed by (seed, clip index), drawn on the
    CPU; the transformer computes on `device` (where training placed it).

    Uses the posterior mean (no sampling), so two checkpoints see exactly the same inputs.
    """
    transformer.eval()
    levels = torch.tensor(sigmas)
    total = torch.zeros(len(sigmas))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    for index, (latent, cond) in enumerate(zip(latents, conditioning, strict=True)):
        generator = torch.Generator().manual_seed(seed * 100_003 + index)
        noise = torch.randn((len(sigmas), *latent.shape), generator=generator)
        batch = latent.unsqueeze(0).expand(len(sigmas), *latent.shape)
        cond_batch = {k: v.expand(len(sigmas), *v.shape[1:]).to(device) for k, v in cond.items()}
        parts = spec.modality_losses(
            transformer, batch.to(device), cond_batch, levels.to(device), noise.to(device)
        )
        parts = {name: part.float().cpu() for name, part in parts.items()}
        total += flow_matching.weighted_total(parts, spec.modality_weights)
        for name, part in parts.items():
            sums[name] = sums.get(name, 0) + part.nan_to_num(0.0)
            counts[name] = counts.get(name, 0) + (~part.isnan()).float()
    per_level = {"loss": total / max(1, len(latents))}
    if len(sums) > 1:
        per_level |= {name: sums[name] / counts[name] for name in sums if counts[name].all()}
    return {
        name: {s: float(v) for s, v in zip(sigmas, values, strict=True)}
        for name, values in per_level.items()
    }


def fixed_sigma_loss(
    spec: ModelSpec,
    transformer: torch.nn.Module,
    latents: list[torch.Tensor],
    conditioning: list[dict[str, torch.Tensor]],
    sigmas: list[float],
    seed: int,
    device: torch.device = CPU,
) -> dict[float, float]:
    """The mean loss per noise level as training weighs it (`fixed_sigma_losses`' "loss")."""
    losses = fixed_sigma_losses(spec, transformer, latents, conditioning, sigmas, seed, device)
    return losses["loss"]

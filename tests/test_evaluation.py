"""Evaluation numbers are reproducible and mean what they say at their extremes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dagster_project.evaluation.diversity import (
    clip_features,
    mean_pairwise_distance,
    nearest_similarity,
)
from dagster_project.evaluation.validation import fixed_sigma_loss
from dagster_project.models.text_encoder import TextEncoder
from tests.test_families import tiny_spec


def test_evaluating_the_same_checkpoint_twice_gives_identical_numbers(tmp_path: Path) -> None:
    spec = tiny_spec("wan", tmp_path / "base")
    transformer = spec.load_transformer()
    generator = torch.Generator().manual_seed(3)
    moments = {"mean": torch.randn(2, 16, 5, 8, 8, generator=generator)}
    moments["logvar"] = torch.full_like(moments["mean"], -4.0)
    latents = list(spec.latents(moments, None))
    [text] = spec.prompt_encoder(TextEncoder(None), 16).encode(["a red square"])
    conditioning = [{k: v.unsqueeze(0) for k, v in text.items()}] * 2
    sigmas = [0.1, 0.5, 0.9]
    first = fixed_sigma_loss(spec, transformer, latents, conditioning, sigmas, seed=0)
    again = fixed_sigma_loss(spec, spec.load_transformer(), latents, conditioning, sigmas, seed=0)
    assert first == again and list(first) == sigmas
    other_noise = fixed_sigma_loss(spec, transformer, latents, conditioning, sigmas, seed=1)
    assert other_noise != first  # the numbers come from the fixed noise, not from nothing


def test_identical_outputs_have_diversity_0_and_similarity_1() -> None:
    latent = torch.randn(16, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    same = torch.stack([clip_features(latent)] * 3)
    assert mean_pairwise_distance(same) == pytest.approx(0.0, abs=1e-6)
    assert nearest_similarity(same, same).tolist() == pytest.approx([1.0] * 3)
    other = torch.stack([clip_features(torch.randn_like(latent)) for _ in range(3)])
    assert mean_pairwise_distance(other) > 0.01

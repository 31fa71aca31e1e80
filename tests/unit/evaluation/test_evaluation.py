"""Evaluation numbers are reproducible and mean what they say at their extremes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dagster_project.core.params import EarlyStoppingParams, EvalParams
from dagster_project.evaluation.diversity import (
    clip_features,
    mean_pairwise_distance,
    nearest_similarity,
)
from dagster_project.evaluation.validation import fixed_sigma_loss
from dagster_project.evaluation.verdict import early_stopping, judge, verdict
from dagster_project.models.text_encoder import TextEncoder
from tests.unit.models.test_families import tiny_spec


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


def _record(step: int, val: float, train: float, diversity: float, memorized: int) -> dict:
    return {"step": step, "val_loss": val, "train_fixed_loss": train, "diversity": diversity,
            "memorized": memorized, "samples": 10}  # fmt: skip


def test_each_sign_is_read_as_a_change_and_names_its_level() -> None:
    cfg = EvalParams()
    start = _record(0, 2.0, 2.0, 0.5, 3)  # a random base: some samples near clips by chance
    # learning lowers both losses alike: healthy, whatever the absolute values
    assert verdict([start, _record(10, 1.0, 1.0, 0.45, 3)], cfg).level == "healthy"
    # validation 30% above the training clips, 0% at step 0: the gap sign, overfitting
    judged = verdict([start, _record(10, 1.3, 1.0, 0.45, 3)], cfg)
    assert judged.level == "overfitting" and judged.reasons[0].startswith("gap:")
    # diversity at 40% of step 0's: watch; at 10%: overfitting
    assert verdict([start, _record(10, 1.0, 1.0, 0.2, 3)], cfg).level == "watch"
    assert verdict([start, _record(10, 1.0, 1.0, 0.05, 3)], cfg).level == "overfitting"
    # memorized share 30% -> 90%: overfitting; the same 30% as step 0: healthy
    assert verdict([start, _record(10, 1.0, 1.0, 0.5, 9)], cfg).level == "overfitting"
    # validation loss back up 10% from its best while the training clips still improve
    rising = [start, _record(10, 1.0, 0.95, 0.5, 3), _record(20, 1.1, 0.9, 0.5, 3)]
    assert "val_loss" in [s.name for s in judge(rising, 2, cfg) if s.level == "watch"]


def test_early_stopping_exports_the_best_clean_checkpoint_after_patience() -> None:
    cfg = EvalParams(early_stopping=EarlyStoppingParams(patience=2))
    history = [
        _record(0, 2.0, 2.0, 0.5, 0),
        _record(10, 1.5, 1.5, 0.5, 0),
        _record(20, 1.2, 1.2, 0.5, 0),  # the best clean one
        _record(30, 1.1, 0.8, 0.5, 0),  # lower validation loss, but gap 37%: not clean
        _record(40, 1.15, 0.7, 0.5, 0),
    ]
    decision = early_stopping(history, cfg)
    assert (decision.best_step, decision.since_best, decision.stop) == (20, 2, True)
    assert decision.chosen == 20 and "gap at the overfitting level since step 30" in decision.reason
    assert not early_stopping(history[:4], cfg).stop
    off = EvalParams(early_stopping=EarlyStoppingParams(enabled=False))
    assert early_stopping(history, off).chosen is None  # the last step's weights

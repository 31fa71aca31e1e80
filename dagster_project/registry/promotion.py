"""The promotion gate: a new model replaces the promoted one only when, both re-scored now on
the current validation clips (the same fixed noise levels and noise as the in-loop
evaluation), its validation loss is not worse than the promoted one's by more than the margin,
and its verdict is not worse."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import torch

from dagster_project.core.params import EvalParams
from dagster_project.evaluation.validation import (
    fixed_sigma_loss,
    load_clip_conditioning,
    load_clip_latents,
)
from dagster_project.evaluation.verdict import LEVELS
from dagster_project.models.placement import InferencePlacement
from dagster_project.models.spec import ModelSpec
from dagster_project.registry.model_registry import ModelRegistry
from dagster_project.registry.records import Lineage, Promotion


@torch.no_grad()
def rescore(
    spec: ModelSpec,
    models: list[Path],
    val: pl.DataFrame,
    sigmas: list[float],
    seed: int,
    placement: InferencePlacement,
) -> list[float]:
    """The mean fixed-level validation loss of each trained model folder on the clips of `val`
    (a `clip_table`), every model seeing exactly the same inputs, each placed (one at a time)
    as training placed it: on its GPU where there is one."""
    if val.height == 0:
        raise ValueError("no validation clips to re-score the models on: nothing is promoted")
    latents, conditioning = load_clip_latents(val, spec), load_clip_conditioning(val)
    losses = []
    for folder in models:
        model = placement.place(spec.load_trained(folder))
        with placement.autocast():
            per_level = fixed_sigma_loss(
                spec, model, latents, conditioning, sigmas, seed, placement.device
            )
        del model  # the next one takes its place
        losses.append(sum(per_level.values()) / len(per_level))
    return losses


def promotion_gate(
    val_loss: float,
    verdict: str,
    promoted: Lineage | None,
    promoted_val_loss: float | None,
    margin: float,
) -> Promotion:
    """Decide on a new model (its re-scored `val_loss` and its run's `verdict`) against the
    `promoted` version's lineage (None: nothing promoted yet), re-scored at
    `promoted_val_loss` (None: it came from another base model, so it cannot be compared)."""
    new = {"val_loss": val_loss, "verdict": verdict}
    if not math.isfinite(val_loss):
        return Promotion(
            promote=False, reason=f"not promoted: its validation loss is {val_loss}", **new
        )
    if promoted is None:
        return Promotion(
            promote=True, reason="promoted: the first model, nothing promoted yet", **new
        )
    if promoted_val_loss is None:
        return Promotion(
            promote=True,
            reason=f"promoted: {promoted.version} was trained from another base model "
            "(not comparable)",
            **new,
        )
    against = {
        "against": promoted.version,
        "against_val_loss": promoted_val_loss,
        "against_verdict": promoted.evaluation.verdict,
    }
    limit = promoted_val_loss * (1 + margin)
    loss_text = (
        f"validation loss {val_loss:.4f} vs {promoted_val_loss:.4f} for {promoted.version} "
        f"(limit {limit:.4f}, margin {margin:g})"
    )
    if not val_loss <= limit:  # a promoted model's NaN makes the limit NaN: not promoted
        return Promotion(
            promote=False, reason=f"not promoted: {loss_text} is worse", **new, **against
        )
    if LEVELS.index(verdict) > LEVELS.index(promoted.evaluation.verdict):
        return Promotion(
            promote=False,
            reason=f"not promoted: verdict {verdict} is worse than "
            f"{promoted.evaluation.verdict} of {promoted.version} ({loss_text})",
            **new,
            **against,
        )
    return Promotion(
        promote=True, reason=f"promoted: {loss_text}, verdict {verdict}", **new, **against
    )


def judge_new_model(
    spec: ModelSpec,
    model: Path,
    lineage: Lineage,
    registry: ModelRegistry,
    val: pl.DataFrame,
    cfg: EvalParams,
    margin: float,
    placement: InferencePlacement,
) -> Promotion:
    """The gate for the trained `model` (its `lineage`: the run's verdict and base model)
    against the registry's promoted version, both re-scored on `val` at the in-loop
    evaluation's fixed levels and noise (`cfg.sigmas`, `cfg.seed`), placed by `placement`."""
    promoted = registry.promoted()
    comparable = promoted is not None and promoted.base_identity == lineage.base_identity
    models = [model] + ([registry.model(promoted.version)] if comparable else [])
    scores = rescore(spec, models, val, cfg.sigmas, cfg.seed, placement)
    verdict = lineage.evaluation.verdict
    return promotion_gate(scores[0], verdict, promoted, scores[1] if comparable else None, margin)

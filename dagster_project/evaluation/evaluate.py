"""Evaluate every checkpoint of a training run and the final model; write the report."""

from __future__ import annotations

import csv
from collections.abc import Callable

import polars as pl
import torch

from dagster_project.atomic import atomic_path, write_json, write_text
from dagster_project.evaluation.diversity import (
    clip_features,
    mean_pairwise_distance,
    nearest_similarity,
)
from dagster_project.evaluation.report import markdown_report, plot_sigma_losses
from dagster_project.evaluation.validation import (
    fixed_sigma_loss,
    load_clip_conditioning,
    load_clip_latents,
)
from dagster_project.models.spec import ModelSpec
from dagster_project.params import EvalParams
from dagster_project.paths import EvalOutputs, TrainOutputs
from dagster_project.shapes import Bucket
from dagster_project.training.loss_plot import plot_losses

TRAIN_SUBSET = 8  # training clips whose fixed-sigma loss is tracked beside the validation loss


def sigma_column(name: str, sigma: float) -> str:
    """The column of one noise level's loss, e.g. `val_loss@0.3`."""
    return f"{name}@{sigma:g}"


def evaluate(
    cfg: EvalParams,
    spec: ModelSpec,
    train: pl.DataFrame,
    val: pl.DataFrame,
    trained: TrainOutputs,
    out: EvalOutputs,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Validation loss per checkpoint of `trained`, diversity and memorization of its final
    model; `train` and `val` are `clip_table`s. Writes the report under `out`."""
    if val.height == 0:
        raise RuntimeError(
            "no validation clips: put some under a validation/ folder, list them in "
            "data.val_files or raise data.val_fraction"
        )
    val_latents, val_text = load_clip_latents(val, spec), load_clip_conditioning(val)
    train_latents = load_clip_latents(train, spec)
    sub_latents = train_latents[:TRAIN_SUBSET]
    sub_text = load_clip_conditioning(train.head(TRAIN_SUBSET))

    def losses(transformer: torch.nn.Module, latents: list, text: list) -> dict[float, float]:
        return fixed_sigma_loss(spec, transformer, latents, text, cfg.sigmas, cfg.seed)

    checkpoints = []
    for folder in trained.checkpoint_folders():
        transformer = spec.load_trained(folder / trained.CHECKPOINT_MODEL)
        val_loss = losses(transformer, val_latents, val_text)
        train_loss = losses(transformer, sub_latents, sub_text)
        step = trained.checkpoint_step(folder)
        row = {
            "step": step,
            "val_loss": sum(val_loss.values()) / len(val_loss),
            "train_fixed_loss": sum(train_loss.values()) / len(train_loss),
        }
        row["gap"] = row["val_loss"] - row["train_fixed_loss"]  # grows as a run overfits
        # per noise level too: overfitting shows first where the clip's detail is decided
        row |= {sigma_column("val_loss", s): v for s, v in val_loss.items()}
        row |= {sigma_column("train_fixed_loss", s): v for s, v in train_loss.items()}
        checkpoints.append(row)
        log(f"checkpoint {step}: validation loss {checkpoints[-1]['val_loss']:.4f}")
    if not checkpoints:
        raise RuntimeError(f"no checkpoints under {trained.checkpoints}: train first")

    # diversity and memorization of the final model, on validation prompts
    final = spec.load_trained(trained.model).eval()
    train_features = torch.stack([clip_features(x) for x in train_latents])
    diversities, similarities = [], []
    seeds = [cfg.seed + i for i in range(cfg.samples_per_prompt)]
    for row, text in zip(val.head(cfg.max_prompts).iter_rows(named=True), val_text, strict=False):
        bucket = Bucket.parse(row["bucket"])
        samples = [
            spec.generate(final, text, bucket, seed, cfg.inference_steps, cfg.guidance_scale)
            for seed in seeds
        ]
        features = torch.stack([clip_features(s) for s in samples])
        diversities.append(mean_pairwise_distance(features))
        similarities += nearest_similarity(features, train_features).tolist()
    log(f"diversity {sum(diversities) / len(diversities):.4f} over {len(diversities)} prompts")

    best = min(checkpoints, key=lambda c: c["val_loss"])
    metrics = {
        "val_loss": checkpoints[-1]["val_loss"],
        "val_loss_best": best["val_loss"],
        "best_step": best["step"],
        "train_fixed_loss": checkpoints[-1]["train_fixed_loss"],
        "val_train_gap": checkpoints[-1]["gap"],
        "diversity": sum(diversities) / len(diversities),
        "nearest_train_similarity_mean": sum(similarities) / len(similarities),
        "nearest_train_similarity_max": max(similarities),
        "val_clips": val.height,
        "prompts": len(diversities),
    }
    _write_outputs(out, trained, metrics, checkpoints)
    return metrics


def _write_outputs(
    out: EvalOutputs, trained: TrainOutputs, metrics: dict, checkpoints: list[dict]
) -> None:
    with trained.loss_csv.open() as handle:
        train_curve = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(handle)]
    plot_losses(train_curve, checkpoints, out.plot)
    with atomic_path(out.checkpoints_csv) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(checkpoints[0]))
        writer.writeheader()
        writer.writerows(checkpoints)
    plot_sigma_losses(checkpoints, out.sigma_plot)
    write_text(
        markdown_report(metrics, checkpoints, out.plot.name, out.sigma_plot.name), out.report
    )
    write_json(metrics, out.metrics)

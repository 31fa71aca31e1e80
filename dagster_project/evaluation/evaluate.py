"""Summarize what a training run's in-loop evaluations recorded: the verdict, decoded samples
(mp4 and an animated preview) with pixel metrics at step 0 and the chosen and last steps, the
report, its plots and the DVC metrics.

Decoding and ffmpeg run here, once, not inside the training loop: the loop stays in latent
space and saves its samples' latents, which are decoded here as they were generated.
"""

from __future__ import annotations

import csv
from collections.abc import Callable

import polars as pl
from safetensors.torch import load_file

from dagster_project.core.atomic import atomic_path, write_json, write_text
from dagster_project.core.params import EvalParams, TrainParams
from dagster_project.core.paths import EvalOutputs, TrainOutputs
from dagster_project.dataset.exposure import trained_exposures
from dagster_project.evaluation.monitor import output_key, sample_key
from dagster_project.evaluation.pixels import clip_pixels, pixel_diversity, ssim_to_each
from dagster_project.evaluation.preview import write_preview
from dagster_project.evaluation.report import (
    markdown_report,
    plot_exposures,
    plot_sigma_losses,
    plot_signs,
    sigma_levels,
)
from dagster_project.evaluation.validation import load_clip_latents
from dagster_project.evaluation.verdict import (
    LEVELS,
    Verdict,
    memorized_share,
    verdict,
)
from dagster_project.models.spec import ModelSpec
from dagster_project.training.loss_plot import plot_losses
from dagster_project.training.run_evaluations import RunEvaluations
from dagster_project.video.write import write_mp4


def evaluate(
    cfg: EvalParams,
    spec: ModelSpec,
    train: pl.DataFrame,
    val: pl.DataFrame,
    trained: TrainOutputs,
    out: EvalOutputs,
    train_cfg: TrainParams,
    fps: float,
    log: Callable[[str], None] = print,
) -> dict[str, float | str]:
    """The run's verdict and report under `out`; `train` and `val` are `clip_table`s and
    `train_cfg` the run's settings (its exposures per clip are replayed over the steps it
    trained). Returns the metrics."""
    run = RunEvaluations.of(trained)
    history, chosen, last = run.history, run.chosen_step, run.last_step
    exposures = list(trained_exposures(train, train_cfg, last).values())
    judged = verdict(history, cfg)
    log(judged.message())

    # pixels: every clip decoded through the VAE, as the samples are
    references = {
        "train": [clip_pixels(spec.decode_video(x)) for x in load_clip_latents(train, spec)],
        "val": [clip_pixels(spec.decode_video(x)) for x in load_clip_latents(val, spec)],
    }
    train_names = train["path"].to_list()
    # the latent-nearest clip by name: NaN if the training clips changed since the run
    by_name = dict(zip(train_names, range(len(train_names)), strict=True))
    by_step = {r["step"]: r for r in history}
    samples, preview, pixel = [], [], {}
    for step in sorted({0, chosen, last}):
        latents = load_file(str(trained.samples(step)))
        row, clips = [], {}
        for s in by_step[step]["sample_rows"]:
            key = sample_key(s["prompt"], s["seed"])
            frames = spec.decode_video(latents[key])
            video = out.videos / f"step-{step:06d}" / f"{key}.mp4"
            sound = {}  # the sample's soundtrack, where the family generates one (LTX-2)
            if output_key(key, "audio") in latents:
                waveform, rate = spec.decode_audio(latents[output_key(key, "audio")])
                sound = {"audio": waveform.numpy(), "sample_rate": rate}
            write_mp4(frames.numpy(), video, fps, **sound)
            row.append(frames.numpy())
            pixels = clip_pixels(frames)
            clips.setdefault(s["prompt"], []).append(pixels)
            to_train = ssim_to_each(pixels, references["train"])
            nearest = by_name.get(s["nearest_train_clip"])
            samples.append(
                {
                    "step": step,
                    **s,
                    "video": str(video.relative_to(out.root)),
                    "nearest_train_ssim": float("nan") if nearest is None else to_train[nearest],
                    "pixel_nearest_train_clip": train_names[max(range(len(to_train)),
                                                                key=to_train.__getitem__)],
                    "pixel_nearest_train": max(to_train),
                    "pixel_nearest_val": max(ssim_to_each(pixels, references["val"])),
                }
            )  # fmt: skip
        preview.append(row)
        pixel[step] = pixel_diversity(list(clips.values()))
    log(f"decoded {len(samples)} samples at steps {sorted(pixel)} to {out.videos}")
    write_preview(preview, out.preview, fps)

    at = [s for s in samples if s["step"] == last]
    final, start = by_step[last], history[0]
    metrics: dict[str, float | str] = {
        "verdict": judged.level,
        "verdict_level": LEVELS.index(judged.level),  # 0 healthy, 1 watch, 2 overfitting
        "chosen_step": chosen,
        "last_step": last,
        "stopped_early": int(run.stopped_early),
        "val_loss": by_step[chosen]["val_loss"],
        "val_loss_last": final["val_loss"],
        "train_fixed_loss": final["train_fixed_loss"],
        "val_train_gap": final["gap"],
        "diversity": final["diversity"],
        "diversity_change": final["diversity"] / start["diversity"] - 1
        if start["diversity"]
        else 0.0,
        "diversity_across": final["diversity_across"],
        "pixel_diversity": pixel[last][0],
        "pixel_diversity_change": pixel[last][0] / pixel[0][0] - 1 if pixel[0][0] else 0.0,
        "pixel_diversity_across": pixel[last][1],
        "nearest_train_similarity_mean": final["nearest_train"],
        "nearest_val_similarity_mean": final["nearest_val"],
        "nearest_train_ssim_mean": sum(s["pixel_nearest_train"] for s in at) / len(at),
        "memorized_share": memorized_share(final),
        "exposures_mean": sum(exposures) / len(exposures),
        "exposures_max": max(exposures),
        "evaluations": len(history),
    }
    metrics = {k: v for k, v in metrics.items() if v is not None}  # across: one prompt has none
    _write_outputs(spec, trained, out, run, metrics, samples, exposures, judged)
    return metrics


def _write_outputs(
    spec: ModelSpec,
    trained: TrainOutputs,
    out: EvalOutputs,
    run: RunEvaluations,
    metrics: dict,
    samples: list[dict],
    exposures: list[int],
    judged: Verdict,
) -> None:
    """The tables, plots, report and metrics of `evaluate`."""
    history = run.history
    scalar = [{k: v for k, v in r.items() if k != "sample_rows"} for r in history]
    for path, rows in ((out.evaluations_csv, scalar), (out.samples_csv, samples)):
        with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    with trained.loss_csv.open() as handle:
        train_curve = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(handle)]
    plot_losses(train_curve, scalar, out.plot)
    labels = {level: spec.evaluation_point(float(level)) for level in sigma_levels(history)}
    plot_sigma_losses(scalar, labels, out.sigma_plot)
    plot_signs(history, run.chosen_step, out.signs_plot)
    plot_exposures(exposures, out.exposure_plot)
    summary = {
        "mean": metrics["exposures_mean"],
        "max": metrics["exposures_max"],
        "steps": run.last_step,
        "chosen_step": run.chosen_step,
    }
    plots = {
        "loss curves": EvalOutputs.plot.name,
        "loss per noise level": EvalOutputs.sigma_plot.name,
        "signs by step": EvalOutputs.signs_plot.name,
        "exposures per clip": EvalOutputs.exposure_plot.name,
        "samples (rows: steps)": EvalOutputs.preview.name,
    }
    report = markdown_report(judged, run.decision, summary, history, samples, labels, plots)
    write_text(report, out.report)
    write_json(metrics, out.metrics)

"""Evaluation: the run's verdict, decoded samples and the report, from what training recorded."""

import dagster as dg
import polars as pl

from dagster_project.core.paths import EvalOutputs
from dagster_project.shell import ui
from dagster_project.shell.dvc.declare import dvc_metadata
from dagster_project.shell.resources import TRAINING_POOL, ParamsResource


@dg.asset(
    pool=TRAINING_POOL,
    group_name="evaluate",
    deps=["trained_model", "manifest", "text_embeddings", "video_latents", "base_model"],
    metadata=dvc_metadata(
        outs=EvalOutputs.dvc(
            EvalOutputs.report,
            EvalOutputs.plot,
            EvalOutputs.preview,
            EvalOutputs.videos,
            EvalOutputs.samples_csv,
        ),
        params=["eval", "model.family", "train.task", "buckets.fps"],
        metrics=EvalOutputs.dvc(EvalOutputs.metrics),
        plots=EvalOutputs.dvc(
            EvalOutputs.evaluations_csv,
            EvalOutputs.sigma_plot,
            EvalOutputs.signs_plot,
            EvalOutputs.exposure_plot,
        ),
    ),
)
def evaluation(context: dg.AssetExecutionContext, params: ParamsResource) -> dg.MaterializeResult:
    """The run's verdict (healthy / watch / overfitting) and its signs, samples decoded to mp4
    at step 0 and the chosen and last steps, and the report."""
    # torch, diffusers, matplotlib: loaded when the asset runs, not with the definitions
    from dagster_project.evaluation.evaluate import evaluate
    from dagster_project.models.families import family_spec
    from dagster_project.models.placement import process_device
    from dagster_project.training.data import clip_table

    p = params.load()
    out = p.eval_outputs
    spec = family_spec(p.model.family, p.base_model, p.train.task, p.train.audio_loss_weight)
    spec.place_on(process_device())  # every clip and sample is decoded: on the GPU if any
    metrics = evaluate(
        p.eval,
        spec,
        train=clip_table(p.cache_files, "train"),
        val=clip_table(p.cache_files, "val"),
        trained=p.train_outputs,
        out=out,
        train_cfg=p.train,
        fps=p.fps,
        log=context.log.info,
    )
    samples = pl.read_csv(out.samples_csv).select(
        "step", "caption", "seed", "video", "nearest_train_clip", "nearest_train", "memorized"
    )
    return dg.MaterializeResult(
        metadata={
            **metrics,
            "report": dg.MetadataValue.md(out.report.read_text()),
            "samples": ui.image(out.preview, "gif"),
            "videos": dg.MetadataValue.path(str(out.videos)),
            "sample_table": ui.table(samples),
            "loss_curve": ui.image(out.plot),
            "loss_per_sigma": ui.image(out.sigma_plot),
            "signs": ui.image(out.signs_plot),
            "exposures": ui.image(out.exposure_plot),
        }
    )

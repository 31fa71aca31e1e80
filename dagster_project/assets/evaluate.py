"""Evaluation: validation loss per checkpoint, output diversity, memorization; the report."""

import dagster as dg

from dagster_project.assets import ui
from dagster_project.assets.dvc import dvc_metadata
from dagster_project.assets.encode import text_embeddings, video_latents
from dagster_project.assets.model import base_model
from dagster_project.assets.train import trained_model
from dagster_project.evaluation.evaluate import EvalOutputs, evaluate
from dagster_project.resources import ParamsResource


@dg.asset(
    group_name="evaluate",
    deps=[trained_model, "manifest", text_embeddings, video_latents, base_model],
    metadata=dvc_metadata(
        outs=["${eval.output_dir}/report.md", "${eval.output_dir}/loss_curve.png"],
        params=["eval", "model.text_len"],
        code=["dagster_project/evaluation", "dagster_project/models"],
        metrics=["${eval.output_dir}/metrics.json"],
        plots=["${eval.output_dir}/checkpoints.csv"],
    ),
)
def evaluation(context: dg.AssetExecutionContext, params: ParamsResource) -> dg.MaterializeResult:
    """Score every checkpoint on held-out clips and sample the final model for diversity."""
    p = params.load()
    metrics = evaluate(p, log=context.log.info)
    out = EvalOutputs(p.path(p.eval.output_dir))
    return dg.MaterializeResult(
        metadata={
            **metrics,
            "report": dg.MetadataValue.md(out.report.read_text()),
            "loss_curve": ui.image(out.plot),
        }
    )

"""Evaluation: validation loss per checkpoint, output diversity, memorization; the report."""

import dagster as dg

from dagster_project.assets import ui
from dagster_project.assets.dvc import dvc_metadata
from dagster_project.assets.encode import text_embeddings, video_latents
from dagster_project.assets.model import base_model
from dagster_project.assets.train import trained_model
from dagster_project.evaluation.evaluate import evaluate
from dagster_project.models.families import family_spec
from dagster_project.paths import EvalOutputs
from dagster_project.resources import ParamsResource
from dagster_project.training.data import clip_table


@dg.asset(
    group_name="evaluate",
    deps=[trained_model, "manifest", text_embeddings, video_latents, base_model],
    metadata=dvc_metadata(
        outs=EvalOutputs.dvc(EvalOutputs.REPORT, EvalOutputs.PLOT, EvalOutputs.SIGMA_PLOT),
        params=["eval", "model.family"],
        code=["dagster_project/evaluation", "dagster_project/models"],
        metrics=EvalOutputs.dvc(EvalOutputs.METRICS),
        plots=EvalOutputs.dvc(EvalOutputs.CHECKPOINTS_CSV),
    ),
)
def evaluation(context: dg.AssetExecutionContext, params: ParamsResource) -> dg.MaterializeResult:
    """Score every checkpoint on held-out clips and sample the final model for diversity."""
    p = params.load()
    out = p.eval_outputs
    metrics = evaluate(
        p.eval,
        family_spec(p.model.family, p.base_model),
        train=clip_table(p.cache_files, "train"),
        val=clip_table(p.cache_files, "val"),
        trained=p.train_outputs,
        out=out,
        log=context.log.info,
    )
    return dg.MaterializeResult(
        metadata={
            **metrics,
            "report": dg.MetadataValue.md(out.report.read_text()),
            "loss_curve": ui.image(out.plot),
            "loss_per_sigma": ui.image(out.sigma_plot),
        }
    )

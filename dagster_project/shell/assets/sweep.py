"""The exposure sweep, on demand only: not in the `pipeline` job, not automated, not in
dvc.yaml. Launch it from the UI (the asset's Materialize button) when the guard's rules of
thumb are not enough and the data should say where it starts to overfit."""

import dagster as dg
import polars as pl

from dagster_project.shell import ui
from dagster_project.shell.resources import TRAINING_POOL, ParamsResource

# the group of assets run on demand only: not in the `pipeline` job
ON_DEMAND_GROUP = "sweep"


@dg.asset(
    pool=TRAINING_POOL,
    group_name=ON_DEMAND_GROUP,
    deps=["manifest", "text_embeddings", "video_latents", "base_model"],
)
def exposure_sweep(
    context: dg.AssetExecutionContext, params: ParamsResource
) -> dg.MaterializeResult:
    """One long run per subset of the training contents (sweep.subsets), evaluated in the loop
    at sweep.milestones exposures per content: the validation-loss gap, diversity change and
    memorization against exposures, the onset of overfitting, and a step budget."""
    # torch and the model: loaded when the asset runs, not with the definitions
    from dagster_project.evaluation.sweep import run_sweep
    from dagster_project.models.families import family_spec
    from dagster_project.training.data import clip_table

    p = params.load()
    out = p.sweep_outputs
    result = run_sweep(
        p.sweep,
        p.train,
        p.eval,
        p.guard,
        family_spec(p.model.family, p.base_model, p.train.task, p.train.audio_loss_weight),
        clip_table(p.cache_files, "train"),
        clip_table(p.cache_files, "val"),
        out,
        log=context.log.info,
    )
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in result.items() if v is not None},
            "report": dg.MetadataValue.md(out.report.read_text()),
            "curve": ui.image(out.plot),
            "table": ui.table(pl.read_csv(out.table)),
        }
    )

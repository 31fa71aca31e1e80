"""The model registry: every trained model registered with its lineage, and the promotion gate."""

import dagster as dg

from dagster_project.core.atomic import write_text
from dagster_project.registry.model_registry import ModelRegistry, promotion_markdown
from dagster_project.shell import ui
from dagster_project.shell.dvc.declare import dvc_metadata
from dagster_project.shell.dvc.sync import RAW_DVC_HASH
from dagster_project.shell.recorded import TRAINED, recorded, trained_on
from dagster_project.shell.resources import TRAINING_POOL, ParamsResource


@dg.asset(
    pool=TRAINING_POOL,  # re-scoring loads two models: not beside a training run
    group_name="registry",
    deps=[
        "trained_model",
        "evaluation",
        "manifest",
        "text_embeddings",
        "video_latents",
        "base_model",
    ],
    metadata=dvc_metadata(
        outs=[],
        # the versions accumulate: DVC keeps the folder between runs, and caches it
        keep=["${automation.registry_dir}"],
        params=[
            "automation.promotion_margin",
            "automation.registry_dir",
            "eval.sigmas",
            "eval.seed",
            "train.task",
        ],
    ),
)
def model_registry(
    context: dg.AssetExecutionContext, params: ParamsResource
) -> dg.MaterializeResult:
    """Register the trained model as a new version with its lineage (data, params, code,
    parent, evaluation, exposures), then promote it only if, re-scored beside the promoted
    version on the current validation clips, its validation loss is not worse (beyond
    automation.promotion_margin) and its verdict is not worse."""
    # torch and the model: loaded when the asset runs, not with the definitions
    from dagster_project.registry.registration import RunOrigin, register_run

    p = params.load()
    origin = RunOrigin(
        raw_dvc_md5=recorded(context.instance, TRAINED, RAW_DVC_HASH),
        raw_fingerprint=trained_on(context.instance),
        run_id=context.run.run_id,
    )
    try:
        version = register_run(p, origin, log=context.log.info)
    except RuntimeError as error:
        raise dg.Failure(str(error)) from error
    registry = ModelRegistry(p.registry_files)
    promoted = registry.promoted()
    report = promotion_markdown(version, promoted, registry.model(version.version))
    write_text(report, registry.files.report)
    return dg.MaterializeResult(
        metadata={
            "version": version.version,
            "promoted_version": promoted.version if promoted else "none",
            "promoted": promoted is not None and version.version == promoted.version,
            "decision": version.promotion.reason,
            "parent": version.parent or "base",
            "exposures_max_lineage": version.exposures_max,
            "versions": ui.table(registry.table().drop("model_sha256")),
            "report": dg.MetadataValue.md(report),
        }
    )

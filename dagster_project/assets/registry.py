"""The model registry: every trained model registered with its lineage, and the promotion gate."""

import json

import dagster as dg

from dagster_project.assets import ui
from dagster_project.assets.dvc import dvc_metadata
from dagster_project.assets.encode import text_embeddings, video_latents
from dagster_project.assets.evaluate import evaluation
from dagster_project.assets.model import base_model
from dagster_project.assets.train import TRAINING_POOL, trained_model
from dagster_project.atomic import write_text
from dagster_project.automation import TRAINED, recorded, trained_on
from dagster_project.dvc_sync import RAW_DVC_HASH
from dagster_project.evaluation.registry import ModelRegistry, promotion_markdown
from dagster_project.hashing import folder_sha256
from dagster_project.resources import ParamsResource


@dg.asset(
    pool=TRAINING_POOL,  # re-scoring loads two models: not beside a training run
    group_name="registry",
    deps=[trained_model, evaluation, "manifest", text_embeddings, video_latents, base_model],
    metadata=dvc_metadata(
        outs=[],
        # the versions accumulate: DVC keeps the folder between runs, and caches it
        keep=["${automation.registry_dir}"],
        params=[
            "automation.promotion_margin",
            "automation.registry_dir",
            "eval.sigmas",
            "eval.seed",
        ],
        code=["dagster_project/evaluation", "dagster_project/lineage.py"],
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
    from dagster_project.dataset.exposure import trained_exposures
    from dagster_project.evaluation.promotion import judge_new_model
    from dagster_project.lineage import build_lineage
    from dagster_project.models.families import family_spec
    from dagster_project.training.data import clip_table

    p = params.load()
    registry = ModelRegistry(p.registry_files)
    trained = p.train_outputs
    model_sha = folder_sha256(trained.model)
    known = registry.find(model_sha)
    if known is not None:  # re-materialized without a new model: nothing to decide
        context.log.info(f"the model is {known['version']} already; nothing to register")
        return _result(registry, known)

    if not trained.start.is_file():  # trained by a version before the registry
        raise dg.Failure(f"{trained.start} is missing: materialize trained_model again")
    evaluated = json.loads(p.eval_outputs.metrics.read_text())
    train = clip_table(p.cache_files, "train")
    per_clip = trained_exposures(train["bucket"].to_list(), p.train, evaluated["chosen_step"])
    lineage = build_lineage(
        p,
        model_sha=model_sha,
        start=json.loads(trained.start.read_text()),
        evaluation=evaluated,
        exposures=dict(zip(train["sha256"].to_list(), per_clip, strict=True)),
        contents=dict(zip(train["sha256"].to_list(), train["content"].to_list(), strict=True)),
        raw_dvc_md5=recorded(context.instance, TRAINED, RAW_DVC_HASH),
        raw_fingerprint=trained_on(context.instance),
        run_id=context.run.run_id,
    )
    # judged before registering: a failure here leaves the registry as it was
    decision = judge_new_model(
        family_spec(p.model.family, p.base_model),
        trained.model,
        evaluated["verdict"],
        lineage["base_identity"],
        registry,
        clip_table(p.cache_files, "val"),
        p.eval.sigmas,
        p.eval.seed,
        p.automation.promotion_margin,
    )
    version = registry.register(trained.model, lineage, decision.promote, decision.record())
    context.log.info(
        f"registered {version['version']} (parent: {version['parent'] or 'base'}): "
        f"{decision.reason}"
    )
    return _result(registry, version)


def _result(registry: ModelRegistry, version: dict) -> dg.MaterializeResult:
    """The asset's metadata, and the promotion report under the registry folder."""
    table = registry.table()
    promoted = registry.promoted()
    model = registry.files.version(version["version"]) / registry.files.MODEL
    report = promotion_markdown(version, promoted, model)
    write_text(report, registry.files.report)
    return dg.MaterializeResult(
        metadata={
            "version": version["version"],
            "promoted_version": promoted["version"] if promoted else "none",
            "promoted": version["version"] == (promoted or {}).get("version"),
            "decision": version["promotion"]["reason"],
            "parent": version["parent"] or "base",
            "exposures_max_lineage": version["exposures_max"],
            "versions": ui.table(table.drop("model_sha256")),
            "report": dg.MetadataValue.md(report),
        }
    )

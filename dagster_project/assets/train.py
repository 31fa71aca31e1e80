"""The training plan (guarded against overfitting) and the training run, through Dagster Pipes."""

import json

import dagster as dg
import polars as pl

from dagster_project.assets import ui
from dagster_project.assets.dvc import dvc_metadata
from dagster_project.assets.encode import text_embeddings, video_latents
from dagster_project.assets.model import base_model
from dagster_project.atomic import write_json
from dagster_project.dataset.exposure import ExposurePlan, plan_run
from dagster_project.params import Params
from dagster_project.paths import TrainOutputs
from dagster_project.resources import ParamsResource
from dagster_project.worker import launch_command

PLAN_PARAMS = [
    "train.steps",
    "train.batch_size",
    "train.grad_accum",
    "train.nproc_per_node",
    "train.seed",
    "guard",
]


def _plan(p: Params) -> ExposurePlan:
    return plan_run(p.path(p.data.manifest), p.train, p.guard)


@dg.asset(
    group_name="train",
    deps=["manifest"],
    metadata=dvc_metadata(outs=TrainOutputs.dvc(TrainOutputs.PLAN), params=PLAN_PARAMS),
)
def training_plan(params: ParamsResource) -> dg.MaterializeResult:
    """How many times the planned run shows each training video (replaying the sampler)."""
    p = params.load()
    plan = _plan(p)
    write_json(
        {**plan.summary(), "verdict": plan.verdict, "per_video": plan.per_video},
        p.train_outputs.plan,
    )
    exposures = pl.Series("exposures", plan.per_video or [], dtype=pl.Int64)
    counts = exposures.value_counts().sort("exposures")
    return dg.MaterializeResult(
        metadata={
            **{f"exposures_{k}": v for k, v in plan.summary().items()},
            "training_videos": plan.videos,
            "histogram": ui.table(counts),
            "verdict": plan.message(),
        }
    )


@dg.asset_check(asset=training_plan, blocking=True)
def exposure_guard(params: ParamsResource) -> dg.AssetCheckResult:
    """Fails above guard.max_exposures (ERROR: training is blocked) and above
    guard.warn_exposures (WARN: shown, not blocking)."""
    plan = _plan(params.load())
    error = plan.verdict == "error"
    return dg.AssetCheckResult(
        passed=plan.verdict == "ok",
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        description=plan.message(),
        metadata={**plan.summary(), "verdict": plan.verdict},
    )


@dg.asset(
    group_name="train",
    deps=[training_plan, "manifest", text_embeddings, video_latents, base_model],
    metadata=dvc_metadata(
        outs=TrainOutputs.dvc(TrainOutputs.LOSS_PLOT),
        keep=TrainOutputs.dvc(TrainOutputs.MODEL),
        persist=TrainOutputs.dvc(TrainOutputs.CHECKPOINTS),
        params=["train", "guard", "model.family"],
        code=[
            "dagster_project/training",
            "dagster_project/models",
            "dagster_project/dataset",
            "dagster_project/worker.py",
        ],
        metrics=TrainOutputs.dvc(TrainOutputs.METRICS),
        plots=TrainOutputs.dvc(
            TrainOutputs.LOSS_CSV,
            *(f"{TrainOutputs.DVCLIVE}/{c}" for c in TrainOutputs.LIVE_CURVES),
        ),
    ),
)
def trained_model(
    context: dg.AssetExecutionContext,
    params: ParamsResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """Run the training worker through Dagster Pipes (under torchrun for several processes or
    nodes); it resumes from the latest checkpoint of the same run and reports its metrics."""
    p = params.load()
    plan = _plan(p)  # the guard again: training never starts on an over-planned run
    if plan.verdict == "error":
        raise dg.Failure(description=plan.message())
    command = launch_command(params.path, p.train)
    reported = pipes_subprocess_client.run(command=command, context=context)
    outputs = p.train_outputs
    # what rank 0 reported; with several nodes, rank 0 may run on another node than this one
    results = reported.get_results()
    reported_metadata = (
        results[0].metadata or {} if results else json.loads(outputs.metrics.read_text())
    )
    return dg.MaterializeResult(
        metadata={
            **reported_metadata,
            "model": dg.MetadataValue.path(str(outputs.model)),
            "checkpoints": len(outputs.checkpoint_folders()),
            "loss_curve": ui.image(outputs.loss_plot),
        }
    )

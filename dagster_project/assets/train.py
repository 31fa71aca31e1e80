"""The training plan (guarded against overfitting) and the training run, through Dagster Pipes."""

import json

import dagster as dg
import polars as pl

from dagster_project.assets import ui
from dagster_project.assets.dvc import dvc_metadata
from dagster_project.assets.encode import text_embeddings, video_latents
from dagster_project.assets.model import base_model
from dagster_project.atomic import write_json
from dagster_project.automation import recorded, trained_on
from dagster_project.dataset.arrivals import RAW_FINGERPRINT
from dagster_project.dataset.exposure import ExposurePlan, plan_run
from dagster_project.dvc_sync import RAW_DVC_HASH
from dagster_project.evaluation.verdict import read_evaluations, verdict
from dagster_project.launch import launch_command
from dagster_project.lineage import inherited_exposures, parent_version
from dagster_project.params import Params
from dagster_project.paths import TrainOutputs
from dagster_project.resources import ParamsResource

# the Dagster concurrency pool of training and evaluation: dagster_home/dagster.yaml limits
# every pool to one op at a time, across runs
TRAINING_POOL = "training"
VIDEOS = dg.AssetKey("videos")

PLAN_PARAMS = [
    "train.steps",
    "train.batch_size",
    "train.grad_accum",
    "train.nproc_per_node",
    "train.seed",
    "train.init",
    "guard",
]


def _plan(p: Params, parent: dict | None) -> ExposurePlan:
    """The run's exposures; with a warm start (`parent`: the version it continues), on top of
    those its lineage already made."""
    return plan_run(p.path(p.data.manifest), p.train, p.guard, inherited_exposures(parent))


@dg.asset(
    group_name="train",
    deps=["manifest"],
    metadata=dvc_metadata(outs=TrainOutputs.dvc(TrainOutputs.PLAN), params=PLAN_PARAMS),
)
def training_plan(params: ParamsResource) -> dg.MaterializeResult:
    """How many times the planned run shows each training video (replaying the sampler)."""
    p = params.load()
    parent = parent_version(p)
    plan = _plan(p, parent)
    write_json(
        {
            **plan.summary(),
            "verdict": plan.verdict,
            "per_video": plan.per_video,
            "continues": parent["version"] if parent else None,
            "inherited_mean": plan.inherited,
        },
        p.train_outputs.plan,
    )
    exposures = pl.Series("exposures", plan.per_video or [], dtype=pl.Int64)
    counts = exposures.value_counts().sort("exposures")
    return dg.MaterializeResult(
        metadata={
            **{f"exposures_{k}": v for k, v in plan.summary().items()},
            "training_videos": plan.videos,
            "continues": parent["version"] if parent else "the base model",
            "histogram": ui.table(counts),
            "verdict": plan.message(),
        }
    )


@dg.asset_check(asset=training_plan, blocking=True)
def exposure_guard(params: ParamsResource) -> dg.AssetCheckResult:
    """Fails above guard.max_exposures (ERROR: training is blocked) and above
    guard.warn_exposures (WARN: shown, not blocking)."""
    p = params.load()
    plan = _plan(p, parent_version(p))
    error = plan.verdict == "error"
    return dg.AssetCheckResult(
        passed=plan.verdict == "ok",
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        description=plan.message(),
        metadata={**plan.summary(), "verdict": plan.verdict},
    )


@dg.asset(
    pool=TRAINING_POOL,
    group_name="train",
    deps=[training_plan, "manifest", text_embeddings, video_latents, base_model],
    metadata=dvc_metadata(
        outs=TrainOutputs.dvc(TrainOutputs.LOSS_PLOT, TrainOutputs.EVALUATIONS, TrainOutputs.START),
        keep=TrainOutputs.dvc(TrainOutputs.MODEL, TrainOutputs.LAST_MODEL),
        # a resumed run keeps its checkpoints and the samples of the evaluations before them
        persist=TrainOutputs.dvc(TrainOutputs.CHECKPOINTS, TrainOutputs.SAMPLES),
        # in-loop evaluation and early stopping shape the run
        params=["train", "guard", "model.family", "eval"],
        code=[
            "dagster_project/training",
            "dagster_project/evaluation",
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
    nodes); it resumes from the latest checkpoint of the same run, evaluates every eval.every
    steps, stops early when overfitting shows, and reports its metrics."""
    p = params.load()
    plan = _plan(p, parent_version(p))  # the guard again: never start an over-planned run
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
            "last_model": dg.MetadataValue.path(str(outputs.last_model)),
            # the raw folder the data came from (as `videos` read it), for the retrain schedule
            # and the lineage
            RAW_FINGERPRINT: trained_on(context.instance, VIDEOS) or "",
            RAW_DVC_HASH: recorded(context.instance, VIDEOS, RAW_DVC_HASH) or "",
            "checkpoints": len(outputs.checkpoint_folders()),
            "loss_curve": ui.image(outputs.loss_plot),
        }
    )


@dg.asset_check(asset=trained_model, blocking=False)
def overfitting_verdict(params: ParamsResource) -> dg.AssetCheckResult:
    """The run's verdict from its in-loop evaluations: WARN for watch, ERROR for overfitting.
    Not blocking: the model and its DVC stage are still recorded, and the UI shows why."""
    p = params.load()
    run = read_evaluations(p.train_outputs)
    judged = verdict(run["history"], p.eval)
    return dg.AssetCheckResult(
        passed=judged.level == "healthy",
        severity=dg.AssetCheckSeverity.ERROR
        if judged.level == "overfitting"
        else dg.AssetCheckSeverity.WARN,
        description=f"{judged.message()}. Model: step {run['chosen_step']} ({run['decision']})",
        metadata={
            "verdict": judged.level,
            "chosen_step": run["chosen_step"],
            "last_step": run["last_step"],
            **{f"sign_{s.name}": s.value for s in judged.signs},
        },
    )

"""The training plan (guarded against overfitting) and the training run, through Dagster Pipes."""

import json

import dagster as dg
import polars as pl

from dagster_project.core.atomic import write_json
from dagster_project.core.launch import launch_command
from dagster_project.core.params import Params
from dagster_project.core.paths import TrainOutputs
from dagster_project.dataset.arrivals import RAW_FINGERPRINT
from dagster_project.dataset.exposure import ExposurePlan, plan_run
from dagster_project.registry.lineage import inherited_exposures, parent_version
from dagster_project.registry.model_registry import ModelRegistry
from dagster_project.shell import ui
from dagster_project.shell.dvc.declare import dvc_metadata
from dagster_project.shell.dvc.sync import RAW_DVC_HASH
from dagster_project.shell.recorded import VIDEOS, recorded, trained_on
from dagster_project.shell.resources import TRAINING_POOL, ParamsResource

TRAIN_WORKER = "dagster_project.cli.worker"  # the worker this asset launches (python -m)

PLAN_PARAMS = [
    "train.steps",
    "train.batch_size",
    "train.grad_accum",
    "train.nproc_per_node",
    "train.seed",
    "train.init",
    "guard",
]


def planned_run(p: Params) -> ExposurePlan:
    """The run's exposures; with a warm start, on top of those its lineage already made."""
    parent = parent_version(p.train.init, ModelRegistry(p.registry_files))
    return plan_run(p.path(p.data.manifest), p.train, p.guard, inherited_exposures(parent))


@dg.asset(
    group_name="train",
    deps=["manifest"],
    metadata=dvc_metadata(outs=TrainOutputs.dvc(TrainOutputs.plan), params=PLAN_PARAMS),
)
def training_plan(params: ParamsResource) -> dg.MaterializeResult:
    """How many times the planned run shows each training video (replaying the sampler)."""
    p = params.load()
    parent = parent_version(p.train.init, ModelRegistry(p.registry_files))
    plan = planned_run(p)
    write_json(
        {
            **plan.summary(),
            "verdict": plan.verdict,
            "per_video": plan.per_video,
            "continues": parent.version if parent else None,
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
            "continues": parent.version if parent else "the base model",
            "histogram": ui.table(counts),
            "verdict": plan.message(),
        }
    )


@dg.asset(
    pool=TRAINING_POOL,
    group_name="train",
    deps=[training_plan, "manifest", "text_embeddings", "video_latents", "base_model"],
    metadata=dvc_metadata(
        outs=TrainOutputs.dvc(TrainOutputs.loss_plot, TrainOutputs.evaluations, TrainOutputs.start),
        keep=TrainOutputs.dvc(TrainOutputs.model, TrainOutputs.last_model),
        # a resumed run keeps its checkpoints and the samples of the evaluations before them
        persist=TrainOutputs.dvc(TrainOutputs.checkpoints, TrainOutputs.samples_folder),
        # in-loop evaluation and early stopping shape the run
        params=["train", "guard", "model.family", "eval"],
        metrics=TrainOutputs.dvc(TrainOutputs.metrics),
        plots=TrainOutputs.dvc(TrainOutputs.loss_csv, *TrainOutputs.LIVE_CURVES),
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
    plan = planned_run(p)  # the guard again: never start an over-planned run
    if plan.verdict == "error":
        raise dg.Failure(description=plan.message())
    command = launch_command(TRAIN_WORKER, params.path, p.train.nproc_per_node, p.train.launch)
    outputs = p.train_outputs
    try:
        reported = pipes_subprocess_client.run(command=command, context=context)
    except Exception as error:  # the worker says why in one line; its traceback is in a file
        if not outputs.failure.is_file():
            raise
        cause = outputs.failure.read_text().splitlines()[0]
        raise dg.Failure(
            f"the training worker failed: {cause} (traceback: {outputs.failure})"
        ) from error
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

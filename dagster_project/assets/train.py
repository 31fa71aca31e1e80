"""The training plan (guarded against overfitting) and the training run, through Dagster Pipes."""

import json
import sys

import dagster as dg
import polars as pl

from dagster_project.assets import ui
from dagster_project.assets.dvc import dvc_metadata
from dagster_project.assets.encode import text_embeddings, video_latents
from dagster_project.assets.model import base_model
from dagster_project.atomic import write_json
from dagster_project.dataset.exposure import plan_exposures
from dagster_project.params import Params
from dagster_project.resources import ParamsResource
from dagster_project.training.trainer import TrainOutputs

PLAN_PARAMS = [
    "train.steps",
    "train.batch_size",
    "train.grad_accum",
    "train.nproc_per_node",
    "train.seed",
    "guard",
]


def _plan(p: Params):
    clips = (
        pl.read_parquet(p.path(p.data.manifest)).filter(pl.col("split") == "train").sort("sha256")
    )
    return plan_exposures(
        clips["bucket"].to_list(),
        steps=p.train.steps,
        batch_size=p.train.batch_size,
        grad_accum=p.train.grad_accum,
        world_size=p.train.nproc_per_node,
        seed=p.train.seed,
        max_exposures=p.guard.max_exposures,
        warn_exposures=p.guard.warn_exposures,
    )


@dg.asset(
    group_name="train",
    deps=["manifest"],
    metadata=dvc_metadata(outs=["${train.output_dir}/plan.json"], params=PLAN_PARAMS),
)
def training_plan(params: ParamsResource) -> dg.MaterializeResult:
    """How many times the planned run shows each training video (replaying the sampler)."""
    p = params.load()
    plan = _plan(p)
    write_json(
        {**plan.summary(), "verdict": plan.verdict, "per_video": plan.per_video},
        p.path(p.train.output_dir) / "plan.json",
    )
    counts = pl.Series("exposures", plan.per_video).value_counts().sort("exposures")
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
    """Blocks training when a video would be seen more than guard.max_exposures times."""
    plan = _plan(params.load())
    return dg.AssetCheckResult(
        passed=plan.verdict != "error",
        severity=dg.AssetCheckSeverity.ERROR
        if plan.verdict == "error"
        else dg.AssetCheckSeverity.WARN,
        description=plan.message(),
        metadata={**plan.summary(), "verdict": plan.verdict},
    )


@dg.asset(
    group_name="train",
    deps=[training_plan, "manifest", text_embeddings, video_latents, base_model],
    metadata=dvc_metadata(
        outs=["${train.output_dir}/model", "${train.output_dir}/checkpoints"],
        params=["train", "guard", "model.text_len"],
        deps=["${data.cache_dir}"],
        code=["dagster_project/training", "dagster_project/models", "dagster_project/dataset"],
        metrics=["${train.output_dir}/metrics.json"],
        plots=["${train.output_dir}/loss.csv"],
    ),
)
def trained_model(
    context: dg.AssetExecutionContext,
    params: ParamsResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """Run the training worker (under torchrun when train.nproc_per_node > 1)."""
    p = params.load()
    plan = _plan(p)  # the guard again: training never starts on an over-planned run
    if plan.verdict == "error":
        raise dg.Failure(description=plan.message())
    worker = ["-m", "dagster_project.training.worker", params.path]
    if p.train.nproc_per_node > 1:
        torchrun = ["-m", "torch.distributed.run", "--standalone"]
        worker = [*torchrun, f"--nproc-per-node={p.train.nproc_per_node}", *worker]
    pipes_subprocess_client.run(command=[sys.executable, *worker], context=context)
    outputs = TrainOutputs(p.path(p.train.output_dir))
    metrics = json.loads(outputs.metrics.read_text())
    return dg.MaterializeResult(
        metadata={
            **metrics,
            "model": dg.MetadataValue.path(str(outputs.model)),
            "checkpoints": len(list(outputs.checkpoints.glob("step-*"))),
            "loss_curve": ui.image(outputs.loss_plot),
        }
    )

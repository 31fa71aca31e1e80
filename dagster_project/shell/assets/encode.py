"""Text-embedding and video-latent caches: encode only what is not cached yet."""

import dagster as dg
import polars as pl

from dagster_project.core.atomic import write_parquet
from dagster_project.core.launch import launch_command
from dagster_project.shell import ui
from dagster_project.shell.dvc.declare import dvc_metadata
from dagster_project.shell.resources import ParamsResource

ENCODE_WORKER = "dagster_project.cli.encode_worker"  # the worker this asset launches (python -m)


def _cache_metadata(stats, index: pl.DataFrame) -> dict:
    return {"entries": index.height, "encoded": stats.encoded, "already_cached": stats.cached}


@dg.asset(
    group_name="encode",
    deps=["manifest"],
    metadata=dvc_metadata(
        outs=["${data.text_index}"],
        params=["model.family", "model.text_encoder", "model.text_encoder_2", "model.text_len"],
        persist=["${data.cache_dir}"],
    ),
)
def text_embeddings(
    context: dg.AssetExecutionContext, params: ParamsResource
) -> dg.MaterializeResult:
    """Caption embeddings, keyed by caption text and encoder identity."""
    from dagster_project.dataset.cache import TensorCache  # torch: loaded when the asset runs
    from dagster_project.dataset.encode import cache_text_embeddings
    from dagster_project.models.families import family_spec
    from dagster_project.models.text_encoder import TextEncoder

    p = params.load()
    clips = pl.read_parquet(p.path(p.data.manifest))
    model = p.model
    text = TextEncoder(p.optional_path(model.text_encoder), p.optional_path(model.text_encoder_2))
    encoder = family_spec(model.family, p.base_model).prompt_encoder(text, model.text_len)
    cache = TensorCache(p.path(p.data.cache_dir), "text")
    index, stats = cache_text_embeddings(clips, cache, encoder)
    write_parquet(index, p.path(p.data.text_index))
    context.log.info(f"embedded {stats.encoded} captions, {stats.cached} already cached")
    return dg.MaterializeResult(
        metadata={**_cache_metadata(stats, index), "encoder": encoder.identity}
    )


@dg.asset(
    group_name="encode",
    deps=["manifest", "base_model"],
    metadata=dvc_metadata(
        outs=["${data.latent_index}"],
        params=[
            "buckets.fps",
            "model.family",
            "train.task",
            "data.frame_extraction",
            "data.max_windows_per_clip",
            "encode",
        ],
        deps=["${data.raw_dir}"],
        persist=["${data.cache_dir}"],
    ),
)
def video_latents(
    context: dg.AssetExecutionContext,
    params: ParamsResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """VAE posterior moments of every window of every clip at its bucket's shape, keyed by
    content + settings; with encode.nproc_per_node > 1, by that many processes under torchrun."""
    # torch: loaded when the asset runs
    from dagster_project.core.progress import Progress
    from dagster_project.dataset.cache import TensorCache
    from dagster_project.dataset.encode import LatentJob, cache_latents, read_errors
    from dagster_project.dataset.windows import WindowRule
    from dagster_project.models.families import family_spec
    from dagster_project.models.placement import process_device

    p = params.load()
    files = p.cache_files
    world = p.encode.nproc_per_node

    def on_workers(jobs: list[LatentJob]) -> dict[LatentJob, str]:
        """The encode worker under torchrun, one process per rank, through Pipes."""
        reports = [files.encode_errors(rank) for rank in range(world)]
        for report in reports:
            report.unlink(missing_ok=True)
        command = launch_command(ENCODE_WORKER, params.path, world)
        pipes_subprocess_client.run(command=command, context=context)
        return read_errors(reports, jobs)

    encoder = family_spec(p.model.family, p.base_model, p.train.task)
    encoder.place_on(process_device(0))  # where this process encodes (with world 1)
    index, stats = cache_latents(
        pl.read_parquet(files.manifest),
        p.path(p.data.raw_dir),
        TensorCache(files.cache_dir, "latents"),
        encoder,
        p.fps,
        WindowRule.of(p.data),
        progress=Progress("latents", 0, context.log.info, unit="windows"),
        workers=None if world == 1 else on_workers,
    )
    write_parquet(index, p.path(p.data.latent_index))
    failures = index.filter(pl.col("error").is_not_null())
    for error in failures["error"]:
        context.log.warning(f"left out of training: {error}")
    return dg.MaterializeResult(
        metadata={
            **_cache_metadata(stats, index),
            "clips": index["sha256"].n_unique(),
            "processes": world,
            "decode_failures": failures.height,
            "failures": ui.table(failures.select("sha256", "window", "error")),
        }
    )

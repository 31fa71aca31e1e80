"""Text-embedding and video-latent caches: encode only what is not cached yet."""

import dagster as dg
import polars as pl

from dagster_project.core.atomic import write_parquet
from dagster_project.shell import ui
from dagster_project.shell.dvc.declare import dvc_metadata
from dagster_project.shell.resources import ParamsResource


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
        params=["buckets.fps", "model.family"],
        deps=["${data.raw_dir}"],
        persist=["${data.cache_dir}"],
    ),
)
def video_latents(
    context: dg.AssetExecutionContext, params: ParamsResource
) -> dg.MaterializeResult:
    """VAE posterior moments of every clip at its bucket's shape, keyed by content + settings."""
    from dagster_project.dataset.cache import TensorCache  # torch: loaded when the asset runs
    from dagster_project.dataset.encode import cache_latents
    from dagster_project.models.families import family_spec

    p = params.load()
    clips = pl.read_parquet(p.path(p.data.manifest))
    cache = TensorCache(p.path(p.data.cache_dir), "latents")

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            context.log.info(f"latents: {done}/{total}")

    index, stats = cache_latents(
        clips,
        p.path(p.data.raw_dir),
        cache,
        family_spec(p.model.family, p.base_model),
        fps=p.fps,
        progress=progress,
    )
    write_parquet(index, p.path(p.data.latent_index))
    failures = index.filter(pl.col("error").is_not_null())
    for error in failures["error"]:
        context.log.warning(f"left out of training: {error}")
    return dg.MaterializeResult(
        metadata={
            **_cache_metadata(stats, index),
            "decode_failures": failures.height,
            "failures": ui.table(failures.select("sha256", "error")),
        }
    )

"""The base model folder every later stage loads (an embedded tiny model or a local checkpoint)."""

import dagster as dg

from dagster_project.core.atomic import atomic_dir
from dagster_project.core.hashing import folder_sha256
from dagster_project.core.paths import BaseModelFiles
from dagster_project.shell.dvc.declare import dvc_metadata
from dagster_project.shell.resources import ParamsResource


@dg.asset(
    group_name="model",
    metadata=dvc_metadata(outs=["${model.base_dir}"], params=["model", "train.task"]),
)
def base_model(context: dg.AssetExecutionContext, params: ParamsResource) -> dg.MaterializeResult:
    """Write the base model (transformer/ + vae/) as a diffusers folder."""
    # heavy libraries (torch, diffusers) load when an asset runs, not with the definitions
    from dagster_project.models.families import FAMILIES
    from dagster_project.models.text_encoder import text_embedding_dim

    p = params.load()
    text_dim = text_embedding_dim(p.optional_path(p.model.text_encoder))
    pretrained = p.optional_path(p.model.pretrained)
    out_dir = p.base_model.root
    with atomic_dir(out_dir) as tmp:
        FAMILIES[p.model.family].write_base_model(
            p.model, text_dim, BaseModelFiles(tmp), pretrained, p.train.task
        )
    source = str(pretrained or f"embedded tiny {p.model.family} {p.train.task} (random init)")
    context.log.info(f"base model from {source} -> {out_dir}")
    return dg.MaterializeResult(
        metadata={
            "source": source,
            "path": dg.MetadataValue.path(str(out_dir)),
            "vae_sha256": folder_sha256(p.base_model.vae),
            "identity": p.base_model.identity(),
            "text_dim": text_dim,
        }
    )

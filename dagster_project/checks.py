"""Asset checks on the data contract (the exposure guard lives beside the training plan)."""

import dagster as dg
import polars as pl
from pandera.errors import SchemaErrors

from dagster_project.dataset.schema import validate_manifest, validate_rejects
from dagster_project.resources import ParamsResource


@dg.asset_check(asset="manifest", blocking=True)
def manifest_contract(params: ParamsResource) -> dg.AssetCheckResult:
    """The manifest and rejects table match their pandera schemas; names the failing rows."""
    p = params.load()
    failures = []
    for name, path, validate in (
        ("manifest", p.data.manifest, validate_manifest),
        ("rejects", p.data.rejects, validate_rejects),
    ):
        try:
            validate(pl.read_parquet(p.path(path)))
        except SchemaErrors as exc:
            failures.append(f"{name} ({path}):\n{exc}")
    clips = pl.read_parquet(p.path(p.data.manifest))
    if clips.filter(pl.col("split") == "train").is_empty():
        failures.append("manifest: no clip in the train split")
    return dg.AssetCheckResult(
        passed=not failures,
        description="\n\n".join(failures) or "manifest and rejects match the contract",
        metadata={"clips": clips.height},
    )

"""Asset checks on the data contract (the exposure guard lives beside the training plan)."""

import dagster as dg
import polars as pl

from dagster_project.dataset.schema import (
    ManifestSchema,
    RejectsSchema,
    contract_errors,
    split_problems,
)
from dagster_project.resources import ParamsResource


@dg.asset_check(asset="manifest", blocking=True)
def manifest_contract(params: ParamsResource) -> dg.AssetCheckResult:
    """The manifest and rejects table match their pandera schemas; names the failing rows."""
    p = params.load()
    clips = pl.read_parquet(p.path(p.data.manifest))
    rejects = pl.read_parquet(p.path(p.data.rejects))
    failures = [f"{p.data.manifest}: {e}" for e in contract_errors(clips, ManifestSchema)]
    failures += [f"{p.data.rejects}: {e}" for e in contract_errors(rejects, RejectsSchema)]
    # an unusable split does not stop caching (ERROR would block it): a warning, before training
    split = [f"{p.data.manifest}: {e}" for e in split_problems(clips, p.data.val_files)]
    return dg.AssetCheckResult(
        passed=not failures and not split,
        severity=dg.AssetCheckSeverity.ERROR if failures else dg.AssetCheckSeverity.WARN,
        description="\n".join((failures + split)[:50]) or "manifest and rejects match the contract",
        metadata={"clips": clips.height, "rejects": rejects.height, "violations": len(failures)},
    )

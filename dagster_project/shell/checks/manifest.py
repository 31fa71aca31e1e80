"""Checks on the manifest: the data contract (blocking) and the captions (warnings)."""

import dagster as dg
import polars as pl

from dagster_project.dataset.caption_contract import (
    caption_table,
    caption_warnings,
    flagged,
)
from dagster_project.dataset.schema import (
    ManifestSchema,
    RejectsSchema,
    contract_errors,
    split_problems,
)
from dagster_project.dataset.token_counts import remembered_token_counts
from dagster_project.shell import ui
from dagster_project.shell.resources import ParamsResource


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


@dg.asset_check(asset="manifest", blocking=False)
def caption_contract(params: ParamsResource) -> dg.AssetCheckResult:
    """Captions the model will read badly (WARN, not blocking): shared by clips of different
    content, longer than model.text_len with the family's tokenizer and template (how many
    tokens are cut), fewer than three words."""
    # the tokenizer (transformers) loads when the check runs, not with the definitions
    from dagster_project.models.families import FAMILIES
    from dagster_project.models.text_encoder import load_tokenizer, tokenizer_identity

    p = params.load()
    clips = pl.read_parquet(p.path(p.data.manifest))
    path, family = p.optional_path(p.model.text_encoder), FAMILIES[p.model.family]
    tokens = remembered_token_counts(
        clips["caption"].to_list(),
        f"{p.model.family}:{tokenizer_identity(path)}",
        lambda captions: family.caption_tokens(load_tokenizer(path), captions),
        p.path(p.data.caption_tokens),
    )
    table = caption_table(clips, tokens, p.model.text_len)
    found = caption_warnings(table, p.model.text_len)
    shown = flagged(table)
    return dg.AssetCheckResult(
        passed=not found,
        severity=dg.AssetCheckSeverity.WARN,
        description="\n".join(found) or "every caption fits the contract",
        metadata={
            "clips": table.height,
            "flagged": shown.height,
            "tokens_max": int(table["tokens"].max() or 0),
            "text_len": p.model.text_len,
            "flagged_captions": ui.table(shown.drop("content")),
        },
    )

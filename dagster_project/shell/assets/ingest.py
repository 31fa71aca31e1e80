"""Ingestion and resolution probing: raw folder -> videos table -> manifest + rejects."""

import os

import dagster as dg
import polars as pl

from dagster_project.core.atomic import write_parquet
from dagster_project.dataset.arrivals import RAW_FINGERPRINT, fingerprint, observe
from dagster_project.dataset.ingest import discover_videos
from dagster_project.shell import ui
from dagster_project.shell.dvc.declare import dvc_metadata
from dagster_project.shell.dvc.raw_folder import refused_links
from dagster_project.shell.dvc.sync import RAW_DVC_HASH, raw_data_version, version_raw_data
from dagster_project.shell.resources import ParamsResource


@dg.asset(
    group_name="ingest",
    metadata=dvc_metadata(
        outs=["${data.videos}"],
        params=["data.raw_dir", "data.folders"],
        deps=["${data.raw_dir}"],
    ),
)
def videos(context: dg.AssetExecutionContext, params: ParamsResource) -> dg.MaterializeResult:
    """Every video file under data.raw_dir with its sidecar caption. Outside a DVC stage, the
    raw folder is first versioned with DVC (when it is tracked), after the link check."""
    p = params.load()
    for warning in p.warnings():
        context.log.warning(warning)
    raw_dir = p.path(p.data.raw_dir)
    if "DVC_STAGE" not in os.environ:  # inside `dvc repro`, DVC has versioned it already
        if bad := refused_links(p):
            raise dg.Failure(f"{p.data.raw_dir}: links leading outside it: {', '.join(bad[:10])}")
        version_raw_data(p.root.resolve(), raw_dir)
    raw_version = raw_data_version(raw_dir)
    seen = fingerprint(observe(raw_dir))  # what this run reads, for the retrain schedule
    folders = [(f.path, f.captions) for f in p.data.folders]
    found = discover_videos(raw_dir, folders)
    write_parquet(found, p.path(p.data.videos))
    usable = found.filter(pl.col("reason").is_null())
    context.log.info(f"found {found.height} inputs, {usable.height} with a caption")
    return dg.MaterializeResult(
        metadata={
            "inputs": found.height,
            RAW_DVC_HASH: raw_version or "(data.raw_dir is not tracked by DVC)",
            RAW_FINGERPRINT: seen,
            "with_caption": usable.height,
            "by_source": ui.table(found.group_by("source").len().sort("source")),
            "preview": ui.table(found),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "manifest",
            group_name="ingest",
            deps=["videos"],
            description="Usable clips: probe results, sha256, split and bucket.",
            metadata=dvc_metadata(
                outs=["${data.manifest}"],
                params=[
                    "data.val_fraction",
                    "data.val_files",
                    "data.min_frames",
                    "data.min_side",
                    "data.near_duplicate_threshold",
                    "data.frame_extraction",
                    "data.max_windows_per_clip",
                    "buckets",
                ],
                deps=["${data.raw_dir}"],
                # the caption check (same stage) keeps its token counts too
                persist=[
                    "${data.probe_cache}",
                    "${data.thumbnail_cache}",
                    "${data.caption_tokens}",
                ],
                # versioned (cached) too: a fresh clone keeps the splits of earlier runs
                keep=["${data.split_memory}"],
            ),
        ),
        dg.AssetSpec(
            "rejects",
            group_name="ingest",
            deps=["videos"],
            description="Inputs that cannot be used: path, reason code, message.",
            metadata=dvc_metadata(outs=["${data.rejects}"], params=[]),
        ),
    ]
)
def probe(context: dg.AssetExecutionContext, params: ParamsResource):
    """ffprobe every video into the manifest of usable clips and the rejects table."""
    # near-duplicate matching (torch): loaded when the asset runs, not with the definitions
    from dagster_project.dataset.manifest import (
        ManifestRules,
        ManifestStores,
        build_manifest,
        near_duplicate_table,
    )

    p = params.load()
    built = build_manifest(
        pl.read_parquet(p.path(p.data.videos)),
        p.path(p.data.raw_dir),
        ManifestRules.of(p.data, p.bucket_list, p.fps),
        ManifestStores(
            probe_cache=p.path(p.data.probe_cache),
            thumbnail_cache=p.path(p.data.thumbnail_cache),
            split_memory=p.path(p.data.split_memory),
        ),
        say=context.log.info,
    )
    clips, rejects = built.clips, built.rejects
    write_parquet(clips, p.path(p.data.manifest))
    write_parquet(rejects, p.path(p.data.rejects))
    context.log.info(
        f"{clips.height} usable clips ({clips['content'].n_unique()} contents), "
        f"{rejects.height} rejected, {built.probed_now} probed now"
    )
    for warning in built.warnings:
        context.log.warning(warning)
    histogram = clips.group_by("bucket", "split").len().sort("bucket", "split")
    copies = near_duplicate_table(clips, built.links)
    columns = [
        "path", "split", "bucket", "windows", "width", "height", "frame_count", "fps",
        "has_audio", "caption",
    ]  # fmt: skip
    yield dg.MaterializeResult(
        asset_key="manifest",
        metadata={
            "clips": clips.height,
            "contents": clips["content"].n_unique(),
            "near_duplicate_clips": copies.height,
            "probed_now": built.probed_now,
            "thumbnails_now": built.thumbnails_now,
            "pairs_matched_now": built.matched_now,
            "seconds_per_phase": ui.table(
                pl.DataFrame(
                    {"phase": list(built.seconds), "seconds": list(built.seconds.values())}
                )
            ),
            "windows": int(clips["windows"].sum()),  # training samples
            "clips_with_several_windows": int((clips["windows"] > 1).sum()),
            # the clips whose soundtrack a family with audio (LTX-2) trains on
            "clips_with_audio": int(clips["has_audio"].sum()),
            "train": int((clips["split"] == "train").sum()),
            "val": int((clips["split"] == "val").sum()),
            "bucket_histogram": ui.table(histogram),
            "near_duplicates": ui.table(copies),
            "preview": ui.table(clips.select(columns)),
        },
    )
    yield dg.MaterializeResult(
        asset_key="rejects",
        metadata={
            "rejects": rejects.height,
            "by_reason": ui.table(rejects.group_by("reason").len().sort("reason")),
            "table": ui.table(rejects),
        },
    )

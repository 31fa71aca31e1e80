"""The data contract: pandera (polars) schemas for the manifest and the rejects table."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaErrors

REJECT_REASONS = [
    "empty_file",
    "corrupt",
    "not_video",
    "audio_only",
    "unreadable",
    "missing_caption",
    "bad_caption",
    "bad_metadata",
    "outside_data_folder",
    "too_small",
    "too_few_frames",
    "no_bucket",
    "duplicate",
    "near_duplicate_across_splits",
]


class ManifestSchema(pa.DataFrameModel):
    """One row per usable clip."""

    path: str = pa.Field(unique=True, str_length={"min_value": 1})
    sha256: str = pa.Field(unique=True, str_matches=r"^[0-9a-f]{64}$")
    content: str = pa.Field(str_matches=r"^[0-9a-f]{64}$")  # near-duplicate group
    caption: str = pa.Field(str_length={"min_value": 1})
    source: str
    split: str = pa.Field(isin=["train", "val"])
    bucket: str = pa.Field(str_matches=r"^\d+x\d+x\d+$")
    windows: int = pa.Field(ge=1)  # training samples of the clip
    width: int = pa.Field(gt=0)
    height: int = pa.Field(gt=0)
    sample_aspect_ratio: str = pa.Field(str_matches=r"^\d+:\d+$")
    frame_count: int = pa.Field(gt=0)
    fps: float = pa.Field(gt=0, le=1000)
    variable_fps: bool
    duration: float = pa.Field(gt=0)
    codec: str = pa.Field(str_length={"min_value": 1})
    pix_fmt: str
    bit_depth: int = pa.Field(ge=1, le=32)
    has_audio: bool
    size_bytes: int = pa.Field(gt=0)

    class Config:
        strict = True


class RejectsSchema(pa.DataFrameModel):
    """One row per input that cannot be used, with a reason code."""

    path: str = pa.Field(str_length={"min_value": 1})
    reason: str = pa.Field(isin=REJECT_REASONS)
    message: str = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = True


def contract_errors(frame: pl.DataFrame, schema: type[pa.DataFrameModel]) -> list[str]:
    """Every broken rule of `schema` in `frame`, naming the row (index and path) that breaks it."""
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        problems = []
        for case in errors.failure_cases.iter_rows(named=True):
            index = case["index"]
            where = "table"
            if index is not None:
                where = f"row {index}"
                if "path" in frame.columns and index < frame.height:
                    where += f" ({frame['path'][index]})"
            column = case["column"] or "-"
            problems.append(f"{where}: {column} = {case['failure_case']!r} fails {case['check']}")
        return problems
    return []


def split_problems(manifest: pl.DataFrame, val_files: list[str]) -> list[str]:
    """What makes the split unusable: no training or no validation clip, or explicit
    validation entries (paths or sha256s) that match no clip."""
    problems = []
    for split in ("train", "val"):
        if manifest.filter(pl.col("split") == split).is_empty():
            problems.append(f"no clip in the {split} split")
    straddling = (
        manifest.group_by("content")
        .agg(pl.col("split").n_unique().alias("splits"), pl.col("path").sort())
        .filter(pl.col("splits") > 1)
    )
    problems += [
        f"near-duplicates in both splits: {', '.join(paths)}" for paths in straddling["path"]
    ]
    known = set(manifest["path"]) | set(manifest["sha256"])
    unmatched = [entry for entry in val_files if entry not in known]
    if unmatched:
        problems.append(f"data.val_files entries match no clip: {', '.join(unmatched)}")
    return problems

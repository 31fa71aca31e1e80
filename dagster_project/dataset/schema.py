"""The data contract: pandera (polars) schemas for the manifest and the rejects table."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl


class ManifestSchema(pa.DataFrameModel):
    """One row per usable clip."""

    path: str = pa.Field(unique=True)
    sha256: str = pa.Field(unique=True, str_matches=r"^[0-9a-f]{64}$")
    caption: str = pa.Field(str_length={"min_value": 1})
    split: str = pa.Field(isin=["train", "val"])
    bucket: str = pa.Field(str_matches=r"^\d+x\d+x\d+$")
    width: int = pa.Field(gt=0)
    height: int = pa.Field(gt=0)
    frame_count: int = pa.Field(gt=0)
    fps: float = pa.Field(gt=0)
    duration: float = pa.Field(gt=0)
    codec: str
    pix_fmt: str
    has_audio: bool
    size_bytes: int = pa.Field(gt=0)

    class Config:
        strict = True
        coerce = False


class RejectsSchema(pa.DataFrameModel):
    """One row per input that cannot be used, with a reason code."""

    path: str
    reason: str = pa.Field(
        isin=[
            "empty_file",
            "corrupt",
            "not_video",
            "audio_only",
            "unreadable",
            "missing_caption",
            "too_small",
            "too_few_frames",
            "no_bucket",
            "duplicate",
        ]
    )
    message: str = pa.Field(str_length={"min_value": 1})

    class Config:
        strict = True


def validate_manifest(manifest: pl.DataFrame) -> pl.DataFrame:
    """Raise pandera SchemaErrors (naming the failing rows) if the manifest breaks the contract."""
    return ManifestSchema.validate(manifest, lazy=True)


def validate_rejects(rejects: pl.DataFrame) -> pl.DataFrame:
    return RejectsSchema.validate(rejects, lazy=True)

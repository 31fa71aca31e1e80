"""Small renderers for metadata shown in the Dagster UI."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg
import polars as pl


def table(frame: pl.DataFrame, limit: int = 50) -> dg.MetadataValue:
    """A polars frame as a markdown table (first `limit` rows)."""
    if frame.is_empty():
        return dg.MetadataValue.md("_(empty)_")
    head = frame.head(limit)
    lines = [
        "| " + " | ".join(head.columns) + " |",
        "|" + "---|" * len(head.columns),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in head.iter_rows()),
    ]
    if frame.height > limit:
        lines.append(f"\n_{frame.height - limit} more rows_")
    return dg.MetadataValue.md("\n".join(lines))


def image(path: Path, kind: str = "png") -> dg.MetadataValue:
    """A PNG (or an animated GIF) embedded in markdown, so the UI shows it inline."""
    data = base64.b64encode(path.read_bytes()).decode()
    return dg.MetadataValue.md(f"![{path.name}](data:image/{kind};base64,{data})")

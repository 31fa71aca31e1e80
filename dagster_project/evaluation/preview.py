"""An animated preview of decoded samples for the UI: one GIF, a row per evaluated step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dagster_project.core.atomic import atomic_path

CELL = 96  # pixels per sample in the preview (small clips are scaled up, large ones down)


def write_preview(rows: list[list[np.ndarray]], path: Path, fps: float) -> None:
    """`rows` of uint8 clips [F, H, W, 3] -> an animated GIF grid, looping; clips shorter than
    the longest hold their last frame."""
    length = max(len(clip) for row in rows for clip in row)
    width = max(len(row) for row in rows)
    frames = []
    for t in range(length):
        canvas = Image.new("RGB", (width * CELL, len(rows) * CELL))
        for r, row in enumerate(rows):
            for c, clip in enumerate(row):
                frame = Image.fromarray(clip[min(t, len(clip) - 1)])
                scale = CELL / max(frame.size)
                frame = frame.resize((round(frame.width * scale), round(frame.height * scale)))
                canvas.paste(frame, (c * CELL, r * CELL))
        frames.append(canvas)
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=round(1000 / fps), loop=0)  # fmt: skip

"""A clip's thumbnails: small grey frames at the clip's own frame rate, for near-duplicate
matching (a few kilobytes per second of video)."""

from __future__ import annotations

import math
from pathlib import Path

import ffmpeg
import numpy as np

from dagster_project.video.probe import ffmpeg_url

THUMBNAIL_SIDE = 48  # pixels; the displayed frame squeezed to a square
MAX_THUMBNAILS = 480  # longer clips are thinned to every k-th frame


def thumbnails(path: Path, frame_count: int, sample_aspect_ratio: str = "1:1") -> np.ndarray:
    """Grey frames [T, 48, 48] uint8 of the clip at `path` (its displayed picture squeezed to a
    square), every frame, or every k-th of a clip longer than MAX_THUMBNAILS frames. Raises
    RuntimeError when ffmpeg decodes nothing."""
    step = max(1, math.ceil(frame_count / MAX_THUMBNAILS))
    stream = ffmpeg.input(ffmpeg_url(path), protocol_whitelist="file")
    if sample_aspect_ratio != "1:1":
        stream = stream.filter("scale", w="trunc(iw*sar/2)*2", h="ih").filter("setsar", 1)
    if step > 1:
        stream = stream.filter("select", f"not(mod(n,{step}))")
    side = THUMBNAIL_SIDE
    try:
        out, err = (
            stream.filter("scale", w=side, h=side, flags="area")
            .output("pipe:", format="rawvideo", pix_fmt="gray", fps_mode="passthrough")
            .global_args("-loglevel", "error", "-nostdin")
            .run(capture_stdout=True, capture_stderr=True, quiet=True)
        )
    except ffmpeg.Error as error:  # a damaged stream may still give its first frames
        out, err = error.stdout or b"", error.stderr or b""
    frames = np.frombuffer(out, dtype=np.uint8)
    count = frames.size // (side * side)
    if count == 0:
        detail = err.decode("utf-8", errors="replace").strip().splitlines()
        raise RuntimeError(f"{path}: no frame decoded{': ' + detail[-1] if detail else ''}")
    return frames[: count * side * side].reshape(count, side, side).copy()

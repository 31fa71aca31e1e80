"""Decode a clip into a fixed-size RGB frame array, resampled and cropped by ffmpeg."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import BinaryIO

import ffmpeg
import numpy as np

from dagster_project.video.probe import ffmpeg_url

# Matroska and WebM store timestamps in milliseconds, which can move a clip's end by up to
# a millisecond and so drop the last resampled frame when it sits exactly half-way.
_TIMESTAMP_SLACK_SECONDS = 0.001


class DecodeError(Exception):
    """ffmpeg could not produce the requested frames."""


# part of every latent cache key: frames decoded another way give other latents (rgb24 shared
# chroma between pixel pairs at even widths; gbrp interpolates it for every pixel)
DECODER_VERSION = "gbrp-1"


def frames_at_fps(frame_count: int, src_fps: float, fps: float) -> int:
    """How many frames ffmpeg's fps filter yields from `frame_count` frames at `src_fps`.

    The filter keeps round(duration * fps) frames; ties are rounded down so the result
    never exceeds what ffmpeg produces.
    """
    if frame_count <= 0 or src_fps <= 0 or fps <= 0:
        return 0
    duration = frame_count / src_fps
    return max(0, math.floor((duration - _TIMESTAMP_SLACK_SECONDS) * fps + 0.5))


def _read_into(stream: BinaryIO, buffer: memoryview) -> int:
    """Fill `buffer` from `stream`; return how many bytes arrived before end of stream."""
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(buffer[filled:])
        if not count:
            break
        filled += count
    return filled


def decode_clip(
    path: Path,
    frames: int,
    height: int,
    width: int,
    fps: float,
    sample_aspect_ratio: str = "1:1",
    start: int = 0,
) -> np.ndarray:
    """`frames` frames of `path` at `fps` from frame `start` (counted at `fps`), scaled to
    cover and center-cropped.

    Non-square pixels (`sample_aspect_ratio` other than 1:1) are first made square, so the clip
    keeps its displayed shape. Returns a uint8 array [frames, height, width, 3] in RGB order.

    ffmpeg converts to planar `gbrp`, interpolating chroma for every output pixel; each frame
    is read from the pipe into a one-frame planar buffer and interleaved into the preallocated
    result, so memory stays at the result plus one frame.
    """
    if frames <= 0 or height <= 0 or width <= 0 or fps <= 0:
        raise ValueError(f"invalid clip shape {frames}x{height}x{width} at {fps} fps")
    # a later window: ffmpeg seeks to its time (exact: it decodes from the keyframe before and
    # drops what precedes), so a long clip's windows cost their own frames, not the clip's
    seek = {"ss": f"{start / fps:.6f}"} if start else {}
    stream = ffmpeg.input(ffmpeg_url(path), protocol_whitelist="file", **seek)
    stream = stream.filter("fps", fps=fps)
    if sample_aspect_ratio != "1:1":
        stream = stream.filter("scale", w="trunc(iw*sar/2)*2", h="ih").filter("setsar", 1)
    process = (
        stream.filter("scale", w=width, h=height, force_original_aspect_ratio="increase")
        .filter("setsar", 1)
        .filter("crop", width, height)
        # Planar gbrp costs ffmpeg far less than packed rgb24. The pixels are those of rgb24
        # with full chroma interpolation, which swscale uses for rgb24 too when the scaled width
        # is odd (a 16:9 source to 480x832 or 256x256); at an even scaled width plain rgb24
        # would share one chroma value between two neighbouring pixels.
        .output("pipe:", format="rawvideo", pix_fmt="gbrp", vframes=frames)
        .global_args("-loglevel", "error", "-nostdin")
        .run_async(pipe_stdout=True, pipe_stderr=True)
    )
    # A damaged stream can log an error per frame; drain stderr so ffmpeg never blocks on it.
    stderr: list[bytes] = []
    drain = threading.Thread(target=lambda: stderr.append(process.stderr.read()), daemon=True)
    drain.start()

    clip = np.empty((frames, height, width, 3), dtype=np.uint8)
    planes = np.empty((3, height, width), dtype=np.uint8)  # one gbrp frame: G, B, R planes
    planar = memoryview(planes.reshape(-1))
    decoded = 0
    try:
        while decoded < frames:
            if _read_into(process.stdout, planar) < planes.size:
                break
            frame = clip[decoded]
            frame[..., 0] = planes[2]
            frame[..., 1] = planes[0]
            frame[..., 2] = planes[1]
            decoded += 1
    except BaseException:
        process.kill()
        raise
    finally:
        process.stdout.close()
        process.wait()
        drain.join()
        process.stderr.close()

    if decoded < frames:
        message = b"".join(stderr).decode("utf-8", errors="replace").strip()
        detail = f": {message.splitlines()[-1]}" if message else ""
        raise DecodeError(f"{path}: decoded {decoded} of {frames} frames{detail}")
    return clip

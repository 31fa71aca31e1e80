"""Read a video's geometry, length and codecs with ffprobe."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg

from dagster_project.core.hashing import sha256_file


class ProbeError(Exception):
    """A file that is not a usable video; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed: square pixels (sample aspect ratio applied), then rotated
    height: int
    frame_count: int
    fps: float
    duration: float  # seconds
    codec: str
    pix_fmt: str
    has_audio: bool
    sample_aspect_ratio: str  # "1:1" for square pixels
    variable_fps: bool  # the stream's timestamps are not evenly spaced
    bit_depth: int  # bits per colour sample


def ffmpeg_url(path: Path) -> str:
    """The URL under which ffmpeg opens `path` as a plain local file.

    The `file:` prefix keeps names such as `-i` or `concat:a|b` from being read as options
    or protocols.
    """
    return "file:" + str(path.resolve())


def _rate(text: str | None) -> float:
    try:
        rate = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(rate)


def _rotation(stream: dict[str, Any]) -> int:
    # ffprobe 5.1 turns an mp4 `rotate` tag into display-matrix side data; older ones keep the tag.
    values = [d["rotation"] for d in stream.get("side_data_list", []) if "rotation" in d]
    values.append(stream.get("tags", {}).get("rotate", 0))
    try:
        return round(float(values[0]))
    except (TypeError, ValueError):
        return 0


def _count(stream: dict[str, Any], key: str) -> int:
    value = stream.get(key)
    return int(value) if value is not None and str(value).isdigit() else 0


def _bit_depth(stream: dict[str, Any]) -> int:
    # bits_per_raw_sample is set by most decoders; else the pixel format says (yuv420p10le -> 10)
    raw = _count(stream, "bits_per_raw_sample")
    if raw:
        return raw
    match = re.search(r"p(\d+)(le|be)$", str(stream.get("pix_fmt", "")))
    return int(match.group(1)) if match else 8


def _duration(stream: dict[str, Any], container: dict[str, Any]) -> float:
    for value in (stream.get("duration"), container.get("duration")):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if seconds > 0:
            return seconds
    return 0.0


def probe_video(path: Path) -> VideoInfo:
    """Describe the first video stream of `path`; raise ProbeError if it is not a usable video."""
    try:
        with path.open("rb") as file:
            empty = not file.read(1)
    except OSError as error:
        raise ProbeError("unreadable", f"{path}: cannot be read ({error.strerror})") from error
    if empty:
        raise ProbeError("empty_file", f"{path}: file is empty")

    try:
        report = ffmpeg.probe(
            ffmpeg_url(path), protocol_whitelist="file", count_packets=None, loglevel="error"
        )
    except ffmpeg.Error as error:
        lines = error.stderr.decode("utf-8", errors="replace").strip().splitlines()
        detail = lines[-1] if lines else "ffprobe failed"
        raise ProbeError("corrupt", f"{path}: ffprobe cannot read it: {detail}") from error

    streams = report.get("streams", [])
    container = report.get("format", {})
    # Cover art in audio files shows up as a one-picture video stream.
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    has_audio = any(s.get("codec_type") == "audio" for s in streams)
    format_name = container.get("format_name", "")
    if not videos or format_name == "image2" or format_name.endswith("_pipe"):
        if has_audio:
            raise ProbeError("audio_only", f"{path}: has audio but no video stream")
        raise ProbeError("not_video", f"{path}: has no video stream ({format_name or 'unknown'})")

    video = videos[0]
    # count what can be read (-count_packets): the header's nb_frames may promise more
    declared, frame_count = _count(video, "nb_frames"), _count(video, "nb_read_packets")
    if declared and frame_count < declared:
        raise ProbeError(
            "corrupt",
            f"{path}: truncated: the header declares {declared} frames, {frame_count} can be read",
        )
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    width, height = int(video.get("width", 0)), int(video.get("height", 0))
    if frame_count == 0 or fps <= 0 or width <= 0 or height <= 0:
        raise ProbeError("corrupt", f"{path}: video stream has no frames or no size")

    sar = _sample_aspect_ratio(video)
    num, den = (int(x) for x in sar.split(":"))
    if num and den and num != den:  # non-square pixels: the displayed width differs
        width = max(1, round(width * num / den))
    if abs(_rotation(video)) % 180 == 90:
        width, height = height, width
    return VideoInfo(
        width=width,
        height=height,
        frame_count=frame_count,
        fps=fps,
        duration=_duration(video, container) or frame_count / fps,
        codec=str(video.get("codec_name", "")),
        pix_fmt=str(video.get("pix_fmt", "")),
        has_audio=has_audio,
        sample_aspect_ratio=sar,
        variable_fps=_variable_fps(video),
        bit_depth=_bit_depth(video),
    )


def _sample_aspect_ratio(stream: dict[str, Any]) -> str:
    sar = str(stream.get("sample_aspect_ratio", "1:1"))
    return "1:1" if sar in ("0:1", "N/A", "") or ":" not in sar else sar


def _variable_fps(stream: dict[str, Any]) -> bool:
    # r_frame_rate is the base timestamp rate; an average that differs means uneven timestamps
    base, average = _rate(stream.get("r_frame_rate")), _rate(stream.get("avg_frame_rate"))
    return base > 0 and average > 0 and abs(base - average) / base > 0.01


def _probe_and_hash(path: Path) -> tuple[VideoInfo, str] | ProbeError:
    try:
        return probe_video(path), sha256_file(path)
    except ProbeError as error:
        return error
    except OSError as error:
        return ProbeError("unreadable", f"{path}: cannot be read ({error.strerror or error})")


def probe_many(
    paths: list[Path], workers: int | None = None, done: Callable[[], None] = lambda: None
) -> list[tuple[VideoInfo, str] | ProbeError]:
    """probe_video + sha256 of every path, in parallel; results in input order. `done` is
    called after each file (progress).

    Threads suffice: the work happens in ffprobe processes and in hashlib, which releases the GIL.
    """

    def one(path: Path) -> tuple[VideoInfo, str] | ProbeError:
        result = _probe_and_hash(path)
        done()
        return result

    with ThreadPoolExecutor(max_workers=workers or (os.cpu_count() or 2) * 2) as pool:
        return list(pool.map(one, paths))

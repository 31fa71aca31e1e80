"""Read a video's geometry, length and codecs with ffprobe."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import ffmpeg


class ProbeError(Exception):
    """A file that is not a usable video; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed, i.e. after applying the rotation metadata
    height: int
    frame_count: int
    fps: float
    duration: float  # seconds
    codec: str
    pix_fmt: str
    has_audio: bool


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


def _frame_count(stream: dict[str, Any]) -> int:
    # Matroska and WebM have no nb_frames; -count_packets gives nb_read_packets instead.
    for key in ("nb_frames", "nb_read_packets"):
        value = stream.get(key)
        if value is not None and str(value).isdigit() and int(value) > 0:
            return int(value)
    return 0


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
    frame_count = _frame_count(video)
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    width, height = int(video.get("width", 0)), int(video.get("height", 0))
    if frame_count == 0 or fps <= 0 or width <= 0 or height <= 0:
        raise ProbeError("corrupt", f"{path}: video stream has no frames or no size")

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
    )


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()

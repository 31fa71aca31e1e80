"""Decode the audio of a clip's window into a waveform, resampled by ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from dagster_project.video.decode import DecodeError
from dagster_project.video.probe import ffmpeg_url


def decode_audio(
    path: Path, start: float, seconds: float, sample_rate: int, channels: int = 2
) -> np.ndarray | None:
    """The audio of `path` from `start` for `seconds` (the time span of a window's frames),
    resampled to `sample_rate` with `channels` channels: float32 [channels, samples], exactly
    round(seconds x sample_rate) samples. Audio that ends before the window does is padded
    with silence (a soundtrack a little shorter than the picture is common); a window after
    the soundtrack's end gives None (no audio there, not silence); a file whose audio cannot
    be decoded at all raises `DecodeError`."""
    if seconds <= 0 or sample_rate <= 0 or channels <= 0:
        raise ValueError(f"invalid audio span {seconds} s at {sample_rate} Hz x {channels}")
    samples = round(seconds * sample_rate)
    # the file name is data: ffmpeg reads it as a local file only (ffmpeg_url), never an option
    command = [
        "ffmpeg", "-nostdin", "-loglevel", "error",
        "-protocol_whitelist", "file", "-ss", f"{start:.6f}", "-i", ffmpeg_url(path),
        "-map", "0:a:0", "-t", f"{seconds:.6f}", "-ac", str(channels), "-ar", str(sample_rate),
        "-f", "f32le", "pipe:",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", errors="replace").strip()
        detail = f": {message.splitlines()[-1]}" if message else ""
        raise DecodeError(f"{path}: no audio decoded{detail}")
    interleaved = np.frombuffer(result.stdout, dtype="<f4")
    decoded = interleaved[: len(interleaved) // channels * channels].reshape(-1, channels).T
    if decoded.shape[1] == 0:
        return None
    waveform = np.zeros((channels, samples), dtype=np.float32)
    waveform[:, : min(samples, decoded.shape[1])] = decoded[:, :samples]
    return waveform

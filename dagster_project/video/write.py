"""Write frames to an mp4 with ffmpeg (H.264, yuv420p: what every player and browser shows;
a soundtrack in AAC)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import ffmpeg
import numpy as np

from dagster_project.core.atomic import atomic_path


def write_mp4(
    frames: np.ndarray,
    path: Path,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 0,
) -> None:
    """uint8 frames [F, H, W, 3] -> `path`, written whole or not at all; with `audio` (float
    [channels, samples] at `sample_rate`) as its soundtrack, in AAC."""
    count, height, width, _ = frames.shape
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                             framerate=fps).video  # fmt: skip
        streams, sound = [video], {}
        if audio is not None:
            raw = Path(scratch) / "audio.f32"  # the waveform, interleaved, beside the output
            raw.write_bytes(np.ascontiguousarray(audio.T, dtype="<f4").tobytes())
            streams.append(
                ffmpeg.input(str(raw.resolve()), format="f32le", ar=sample_rate, ac=len(audio))
            )
            sound = {"acodec": "aac"}
        # an absolute path: a file name is never read as an ffmpeg option or protocol
        stream = ffmpeg.output(*streams, str(tmp.resolve()), format="mp4", vcodec="libx264",
                               pix_fmt="yuv420p", vf="pad=ceil(iw/2)*2:ceil(ih/2)*2",
                               loglevel="error", **sound)  # fmt: skip
        stream.overwrite_output().run(input=np.ascontiguousarray(frames).tobytes(), quiet=True)

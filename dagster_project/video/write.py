"""Write frames to an mp4 with ffmpeg (H.264, yuv420p: what every player and browser shows)."""

from __future__ import annotations

from pathlib import Path

import ffmpeg
import numpy as np

from dagster_project.core.atomic import atomic_path


def write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    """uint8 frames [F, H, W, 3] -> `path`, written whole or not at all."""
    count, height, width, _ = frames.shape
    with atomic_path(path) as tmp:
        stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                              framerate=fps)  # fmt: skip
        # an absolute path: a file name is never read as an ffmpeg option or protocol
        stream = stream.output(str(tmp.resolve()), format="mp4", vcodec="libx264",
                               pix_fmt="yuv420p", vf="pad=ceil(iw/2)*2:ceil(ih/2)*2",
                               loglevel="error")  # fmt: skip
        stream.overwrite_output().run(input=np.ascontiguousarray(frames).tobytes(), quiet=True)

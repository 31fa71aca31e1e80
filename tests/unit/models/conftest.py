"""A small real clip for the model family tests, with a 440 Hz tone as its soundtrack
(module-scoped: encoded once per file)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=96x96:rate=24", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
         "-frames:v", "48", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path

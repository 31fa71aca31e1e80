"""A small video dataset rendered from ffmpeg's synthetic sources.

Written by `python -m dagster_project.cli.sample_data data/raw` (`make sample-data`).

Clips go into `train/` and `validation/` folders (the Hugging Face convention), so the split is
the same on every machine: the encoded bytes, and so each clip's sha256, depend on the ffmpeg
build and would move clips between splits if the split followed the content hash.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from dagster_project.core.atomic import atomic_path, write_text

RATE = 24


@dataclass(frozen=True)
class SampleClip:
    name: str
    graph: str  # an ffmpeg filtergraph with source filters only, one video output
    frames: int  # at most 50 (at 24 fps): one 17-frame window at 16 fps, as the demo trains
    caption: str
    split: str = "train"  # the folder it is written to: train or validation


def _box(size: str, width: int, height: int) -> str:
    """A yellow square sliding left to right over navy blue."""
    return (
        f"color=c=navy:size={width}x{height}:rate={RATE}[bg];"
        f"color=c=yellow:size={size}:rate={RATE}[fg];"
        f"[bg][fg]overlay=x='mod(t*{width // 2},W)':y='(H-h)/2':shortest=1"
    )


SAMPLE_CLIPS: tuple[SampleClip, ...] = (
    SampleClip(
        "testsrc2_wide",
        f"testsrc2=size=160x96:rate={RATE}",
        48,
        "a colorful test pattern with a moving gradient and a counter",
    ),
    SampleClip(
        "testsrc2_tall",
        f"testsrc2=size=72x128:rate={RATE}",
        40,
        "a tall colorful test pattern with moving shapes and a running counter",
    ),
    SampleClip(
        "testsrc_square",
        f"testsrc=size=96x96:rate={RATE}",
        36,
        "vertical color bars inside a white circle above a rainbow strip",
        split="validation",
    ),
    SampleClip(
        "mandelbrot_square",
        f"mandelbrot=size=96x96:rate={RATE}:maxiter=256:end_pts=150",
        48,
        "a red and green mandelbrot fractal zooming in on a pink background",
    ),
    SampleClip(
        "mandelbrot_wide",
        f"mandelbrot=size=160x96:rate={RATE}:maxiter=256:start_scale=1.5:end_pts=60",
        44,
        "a fast zoom into a mandelbrot fractal toward a green bulb",
        split="validation",
    ),
    SampleClip(
        "life_square",
        f"life=size=96x96:rate={RATE}:seed=42:ratio=0.3",
        50,
        "conway's game of life cells evolving on black",
    ),
    SampleClip(
        "life_tall",
        f"life=size=72x128:rate={RATE}:seed=7:ratio=0.4:mold=24:"
        "life_color=lime:death_color=black:mold_color=darkgreen",
        44,
        "bright green game of life cells over dark green trails",
        split="validation",
    ),
    SampleClip(
        "cellauto_wide",
        f"cellauto=size=128x72:rate={RATE}:rule=30:seed=3:ratio=0.5",
        46,
        "a black and white cellular automaton texture of small triangles scrolling",
    ),
    SampleClip(
        "smptebars_wide",
        f"smptebars=size=128x72:rate={RATE}",
        36,
        "still smpte color bars of a broadcast test card",
    ),
    SampleClip(
        "gradients_square",
        f"gradients=size=96x96:rate={RATE}:c0=red:c1=blue:seed=1:speed=0.05",
        42,
        "a smooth red to blue gradient slowly rotating",
    ),
    SampleClip(
        "rgbtestsrc_wide",
        f"rgbtestsrc=size=160x96:rate={RATE},scroll=horizontal=0.02",
        40,
        "red, green and blue bands fading to black, sliding sideways",
    ),
    SampleClip(
        "yuvtestsrc_tall",
        f"yuvtestsrc=size=72x128:rate={RATE}",
        48,
        "still gradient bands in gray, olive to violet and teal to pink",
    ),
    SampleClip(
        "sierpinski_tall",
        f"sierpinski=size=72x128:rate={RATE}:seed=5:jump=4",
        40,
        "a white sierpinski carpet fractal shifting on black",
    ),
    SampleClip(
        "color_box_wide",
        _box("16x16", 128, 72),
        50,
        "a yellow square sliding from left to right across a navy blue background",
    ),
)


def _encode(clip: SampleClip, out: Path) -> None:
    # One encoder thread and bitexact flags keep the bytes identical from run to run.
    args = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-filter_complex",
        clip.graph,
        "-frames:v",
        str(clip.frames),
        "-c:v",
        "libx264",
        "-threads",
        "1",
        "-pix_fmt",
        "yuv420p",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-map_metadata",
        "-1",
        "-f",
        "mp4",
        "file:" + str(out.resolve()),
    ]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed to render {clip.name}: {result.stderr.strip()}")


def write_sample_dataset(out_dir: Path) -> list[Path]:
    """Render every sample clip as `SPLIT/name.mp4` with a one-line caption `SPLIT/name.txt`.

    Returns the video paths. Files are always regenerated; with one ffmpeg build the bytes are
    the same from run to run (other builds may write other bytes).
    """
    videos = []
    for clip in SAMPLE_CLIPS:
        video = out_dir / clip.split / f"{clip.name}.mp4"
        with atomic_path(video) as tmp:
            _encode(clip, tmp)
        write_text(clip.caption + "\n", video.with_suffix(".txt"))
        videos.append(video)
    return videos

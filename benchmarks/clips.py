"""Shared helpers for the benchmarks: generated test clips, project folders and timing.

Clips are rendered once with ffmpeg lavfi sources into ``benchmarks/.data/clips/`` and reused
by later runs (a finished file name always means a whole file: clips are written under a
temporary name, then renamed). Two pools:

* small clips (``small_clip(i)``): 96x96, 128x72 or 72x128 at 24 fps, 1.5-2 s, H.264, each with
  a one-line caption. Clip ``i`` is the same on every run and differs from every other clip in
  content (its lavfi source is seeded or hue-shifted by ``i``) and caption, so no two are
  byte-identical and none is rejected as a duplicate. Each fits one of the default buckets
  17x64x64, 17x48x80 and 17x80x48 (24-32 frames at 16 fps).
* HD clips (``hd_clip(i)``): 1280x720 at 30 fps, 3.5 s, H.264 (half of them with film grain
  noise, so decoding is not unrealistically cheap), for the decoding benchmark.

A benchmark project is a folder with its own ``params.yaml`` (the repository's, with sections
overridden; paths in it are relative to its folder) and ``data/raw/`` holding hard links to
pool clips and their captions. Run the benchmarks from the repository root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".data"
CLIP_DIR = DATA_DIR / "clips"

SMALL_FPS = 24
SMALL_SIZES = ((96, 96), (128, 72), (72, 128))
HD_FPS = 30
HD_SECONDS = 3.5


@dataclass(frozen=True)
class Clip:
    """One generated clip: where it lives, how ffmpeg renders it, and its caption."""

    path: Path
    graph: str  # a lavfi filtergraph with one video output
    frames: int
    caption: str
    encoder: tuple[str, ...]

    @property
    def caption_path(self) -> Path:
        return self.path.with_suffix(".txt")


_X264_SMALL = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "23")
_X264_HD = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "23")


def small_clip(index: int) -> Clip:
    """Small clip number `index` (any index >= 0), unique in content and caption."""
    width, height = SMALL_SIZES[index % len(SMALL_SIZES)]
    size = f"size={width}x{height}:rate={SMALL_FPS}"
    frames = 36 + index % 13  # 1.5 to 2.0 s at 24 fps
    kind = index % 4
    if kind == 0:
        graph = f"life={size}:seed={index + 1}:ratio=0.3:mold=10"
        what = f"game of life cells evolving from random seed {index + 1}"
    elif kind == 1:
        rule = (18, 30, 45, 73, 90, 110, 150)[index % 7]
        graph = f"cellauto={size}:rule={rule}:seed={index + 1}:ratio=0.5,scroll=vertical=0.01"
        what = f"a rule {rule} cellular automaton from seed {index + 1} scrolling"
    elif kind == 2:
        graph = f"gradients={size}:seed={index + 1}:speed=0.03:nb_colors=3"
        what = f"a three colour gradient from seed {index + 1} slowly turning"
    else:
        hue = (index * 37) % 360
        graph = f"testsrc2={size},hue=h={hue}"
        what = f"a test pattern with a running counter, hue shifted by {hue} degrees"
    name = f"small_{index:04d}_{width}x{height}"
    return Clip(
        CLIP_DIR / "small" / f"{name}.mp4", graph, frames, f"clip {index}: {what}", _X264_SMALL
    )


def hd_clip(index: int) -> Clip:
    """1280x720, 30 fps, 3.5 s; even indices carry temporal noise (a higher bitrate)."""
    size = f"size=1280x720:rate={HD_FPS}"
    sources = (f"testsrc2={size}", f"mandelbrot={size}:maxiter=64", f"smptehdbars={size}")
    graph = sources[index % len(sources)] + f",hue=h={(index * 53) % 360}"
    if index % 2 == 0:
        graph += ",noise=alls=12:allf=t"
    frames = round(HD_SECONDS * HD_FPS)
    name = f"hd_{index:03d}_1280x720"
    return Clip(CLIP_DIR / "hd" / f"{name}.mp4", graph, frames, f"hd clip {index}", _X264_HD)


def render(clip: Clip) -> Path:
    """Render one clip (and its caption) unless it exists already."""
    if clip.path.is_file() and clip.caption_path.is_file():
        return clip.path
    clip.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = clip.path.with_name(f".tmp_{clip.path.name}")
    command = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", clip.graph, "-frames:v", str(clip.frames),
        *clip.encoder, "-pix_fmt", "yuv420p", "-threads", "1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
        "-f", "mp4", f"file:{tmp}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed to render {clip.path.name}: {result.stderr.strip()}")
    tmp.replace(clip.path)
    caption_tmp = clip.caption_path.with_name(f".tmp_{clip.caption_path.name}")
    caption_tmp.write_text(clip.caption + "\n", encoding="utf-8")
    caption_tmp.replace(clip.caption_path)
    return clip.path


def ensure_clips(clips: list[Clip]) -> None:
    """Render the clips not rendered yet, in parallel; fail if two share the same bytes."""
    missing = [c for c in clips if not (c.path.is_file() and c.caption_path.is_file())]
    if missing:
        print(f"clips: rendering {len(missing)} of {len(clips)} into {CLIP_DIR} ...", flush=True)
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(render, missing))
        print(f"clips: done in {time.perf_counter() - start:.1f} s", flush=True)
    digests: dict[str, Path] = {}
    for clip in clips:
        digest = hashlib.sha256(clip.path.read_bytes()).hexdigest()
        if digest in digests:
            raise RuntimeError(f"{clip.path.name} has the same bytes as {digests[digest].name}")
        digests[digest] = clip.path


def link_clips(clips: Iterable[Clip], raw_dir: Path) -> None:
    """Hard-link (or copy) clips and their captions into `raw_dir`."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        for source in (clip.path, clip.caption_path):
            target = raw_dir / source.name
            if target.exists():
                continue
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)


def unlink_clip(clip: Clip, raw_dir: Path) -> None:
    for source in (clip.path, clip.caption_path):
        (raw_dir / source.name).unlink(missing_ok=True)


def write_params(folder: Path, name: str = "params.yaml", **overrides: dict[str, Any]) -> Path:
    """The repository's params.yaml with sections overridden, written as `folder/name`."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    for section, values in overrides.items():
        params[section] = {**params.get(section, {}), **values}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def fresh_project(folder: Path, clips: Iterable[Clip], **overrides: dict[str, Any]) -> Path:
    """An empty project folder with `clips` in data/raw; returns its params.yaml."""
    shutil.rmtree(folder, ignore_errors=True)
    link_clips(clips, folder / "data" / "raw")
    return write_params(folder, **overrides)


def reused_project(folder: Path, clips: Iterable[Clip], **overrides: dict[str, Any]) -> Path:
    """Like `fresh_project`, but keeps what earlier runs wrote under data/ (the caches).

    data/raw is made to hold exactly `clips`; params.yaml is rewritten from the repository's.
    The project's caches are content-addressed, so whatever is stale is simply not found.
    """
    clips = list(clips)
    raw = folder / "data" / "raw"
    wanted = {name for c in clips for name in (c.path.name, c.caption_path.name)}
    if raw.is_dir():
        for entry in raw.iterdir():
            if entry.name not in wanted:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    link_clips(clips, raw)
    return write_params(folder, **overrides)


# --- timing and machine load ---------------------------------------------------------------


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    jiffies = [int(f) for f in fields]
    idle = jiffies[3] + jiffies[4]  # idle + iowait
    return (sum(jiffies[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds used by this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    other_cores: float | None  # mean cores used meanwhile by processes other than ours
    value: Any = None  # what the timed function returned


def timed(function: Callable[[], Any]) -> Timing:
    """Wall time of one call and how busy the rest of the machine was meanwhile."""
    busy, own = machine_busy_seconds(), own_cpu_seconds()
    start = time.perf_counter()
    value = function()
    wall = time.perf_counter() - start
    busy_after = machine_busy_seconds()
    if busy is None or busy_after is None:
        return Timing(wall, None, value)
    other = (busy_after - busy) - (own_cpu_seconds() - own)
    return Timing(wall, max(other, 0.0) / wall, value)


def load_note(timings: Iterable[Timing], limit: float = 0.2) -> str | None:
    """A warning when other processes kept the machine busy during the timed runs."""
    loads = [t.other_cores for t in timings if t.other_cores is not None]
    if loads and max(loads) > limit:
        return (
            f"WARNING: other processes used up to {max(loads):.2f} cores during the timed runs"
            " (this machine has 2); rerun on a quiet machine for a reliable ratio"
        )
    return None


# --- the pipeline, in-process -------------------------------------------------------------


def materialize_quietly(params: Path, selection: str, checks: bool = True) -> Any:
    """`tests.conftest.materialize`, with Dagster's console log kept out of the output.

    With `checks=False` the asset checks of the selection (manifest_contract, exposure_guard)
    are left out. Returns the Dagster result; on failure, the end of the captured log is printed.
    """
    import contextlib
    import io

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import dagster as dg

    from dagster_project.definitions import build_definitions
    from tests.materialize import materialize

    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        if checks:
            result = materialize(params, selection)
        else:
            job = build_definitions(str(params)).resolve_implicit_global_asset_job_def()
            keys = {dg.AssetKey(k) for k in selection.split(",")}
            subset = job.get_subset(asset_selection=keys, asset_check_selection=set())
            result = subset.execute_in_process(raise_on_error=False)
    if not result.success:
        print("\n".join(log.getvalue().strip().splitlines()[-20:]), file=sys.stderr)
    return result


def failed_checks(result: Any) -> list[str]:
    """The asset checks that failed in a Dagster result, with their descriptions."""
    import dagster as dg

    failed = []
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                failed.append(f"{evaluation.check_name}: {evaluation.description}")
    return failed

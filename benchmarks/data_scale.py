"""The data path at scale: ingestion of 100, 1,000 and 10,000 clips cut from long recordings,
and encoding up to 1,000.

What is measured
    Long recordings (60 s at 24 fps, 128x72, H.264 with a keyframe every 2 s), each a scene of
    its own (lavfi life, cellauto, gradients and coarse cellauto sources, seeded by the recording's
    number, with noise), cut with ffmpeg's segment muxer into 2 s clips: what people
    make when they cut their own footage, and the hard case for near-duplicate search (the
    clips of one scene look alike). One clip in 100 has a planted copy (a re-encode at crf 28, a
    10% crop on every side or a mirror, in turn). Each size N holds N - N/100 clips and N/100
    copies of clips among them.

    For each size, in a fresh process (its peak RSS is the figure; ffprobe and ffmpeg run in
    their own) with fresh stores (probe cache, thumbnails, split memory): `discover_videos`,
    then `build_manifest` as the ingest asset runs it, whose phases are timed (probe,
    thumbnails, near-duplicate search, the rest); up to `--encode-up-to` clips, then
    `cache_latents` with the embedded default model (the tiny Wan of params.yaml). Reported per
    size: seconds per clip per stage, pairs matched, peak RSS, planted copies grouped with their
    source.

    RESULT lines, against the goals: cost per clip of ingestion at the largest size over that
    at 1,000 (<= 1.3); the near-duplicate search's share of ingestion at the largest size
    (<= 15%); peak RSS at the largest size over that at 1,000 (<= 1.3); every planted copy
    grouped.

How
    Recordings and clips are rendered once into ``benchmarks/.data/data_scale/pool/`` (about
    10 minutes for 10,000 clips on 2 cores) and hard-linked into each size's project.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.data_scale [--sizes 100,1000,10000] [--encode-up-to 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from benchmarks.clips import DATA_DIR

WORK = DATA_DIR / "data_scale"
POOL = WORK / "pool"
RECORDING_SECONDS = 60
CLIP_SECONDS = 2
RATE = 24
SIZE = "128x72"
COARSE = "32x18"  # cells of 4 pixels: detail the thumbnails keep
CLIPS_PER_RECORDING = RECORDING_SECONDS // CLIP_SECONDS
COPY_EVERY = 100
CELLAUTO_RULES = (30, 45, 73, 86, 89, 105, 110, 124, 135, 137, 149, 150, 169, 193, 225)
COPY_KINDS = {
    "crf28": ["-c:v", "libx264", "-crf", "28"],
    "crop10": ["-vf", "crop=trunc(iw*0.8/2)*2:trunc(ih*0.8/2)*2:iw*0.1:ih*0.1"],
    "mirror": ["-vf", "hflip"],
}


def scene(index: int) -> str:
    """Recording `index`'s lavfi source: four kinds of textured scene, each seeded by the
    index, with sensor-like noise (no two frames alike, even where the scene stands still).
    Each seed must give other pictures, with texture in every frame: lavfi's sierpinski, used
    before, draws one fractal whatever its seed (the matcher rightly scored its recordings as
    copies of each other, 0.98), and a coarse game of life dies out to a flat field."""
    kind, seed = index % 4, index // 4
    rule = CELLAUTO_RULES[seed % len(CELLAUTO_RULES)]
    return [
        f"life=s={SIZE}:rate={RATE}:seed={seed}:ratio=0.{2 + seed % 6}:mold=20:"
        "life_color=#00ff00:death_color=#aa0000:mold_color=#222222",
        f"cellauto=s={SIZE}:rate={RATE}:rule={rule}:random_seed={seed}"
        f":random_fill_ratio=0.{3 + seed % 5}:scroll=1",
        f"gradients=s={SIZE}:rate={RATE}:seed={seed}:speed=0.02:nb_colors={2 + seed % 6}",
        f"cellauto=s={COARSE}:rate={RATE}:rule={rule}:random_seed={seed + 1000}"
        f":random_fill_ratio=0.5:scroll=1,scale={SIZE}:flags=neighbor",
    ][kind] + f",noise=alls=6:allf=t+u:all_seed={index}"


def clip_name(recording: int, part: int) -> str:
    return f"rec{recording:04d}_{part:03d}.mp4"


def render_recording(index: int) -> None:
    """Render recording `index` cut into 2 s clips, each with a caption; atomic per recording
    (rendered into a temporary folder, then moved)."""
    done = POOL / "clips" / clip_name(index, CLIPS_PER_RECORDING - 1)
    if done.is_file():
        return
    tmp = POOL / f".rec{index:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", scene(index),
         "-t", str(RECORDING_SECONDS), "-c:v", "libx264", "-preset", "veryfast",
         "-pix_fmt", "yuv420p", "-g", str(RATE * CLIP_SECONDS), "-sc_threshold", "0",
         "-f", "segment", "-segment_time", str(CLIP_SECONDS), "-reset_timestamps", "1",
         str(tmp / f"rec{index:04d}_%03d.mp4")],
        check=True,
    )  # fmt: skip
    for part in range(CLIPS_PER_RECORDING):
        clip = tmp / clip_name(index, part)
        clip.with_suffix(".txt").write_text(f"scene {index}, part {part} of a long recording")
    (POOL / "clips").mkdir(exist_ok=True)
    for path in sorted(tmp.iterdir(), reverse=True):  # the last part last: it marks done
        path.rename(POOL / "clips" / path.name)
    tmp.rmdir()


def originals(count: int) -> list[Path]:
    return [
        POOL / "clips" / clip_name(i // CLIPS_PER_RECORDING, i % CLIPS_PER_RECORDING)
        for i in range(count)
    ]


def copy_sources(size: int) -> list[int]:
    """The clips (indexes among the originals) with a planted copy in a project of `size`."""
    return [99 * m + 10 for m in range(size // COPY_EVERY)]


def planted_copy(source: Path, number: int) -> Path:
    kind = list(COPY_KINDS)[number % len(COPY_KINDS)]
    target = POOL / "copies" / f"{source.stem}-{kind}.mp4"
    if not target.is_file():
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp.mp4")
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-i", f"file:{source}", *COPY_KINDS[kind],
             f"file:{tmp}"],
            check=True,
        )  # fmt: skip
        target.with_suffix(".txt").write_text(f"a copy ({kind}) of {source.stem}")
        tmp.rename(target)
    return target


def prepare_pool(largest: int) -> None:
    recordings = -(-largest // CLIPS_PER_RECORDING)
    started = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(render_recording, range(recordings)))
        sources = originals(largest)
        list(pool.map(lambda n: planted_copy(sources[n[1]], n[0]),
                      enumerate(copy_sources(largest))))  # fmt: skip
    print(f"pool: {recordings} recordings, {time.perf_counter() - started:.0f} s", flush=True)


def project(size: int) -> Path:
    """A fresh project of `size` clips: hard links to the pool, no stores."""
    folder = WORK / f"size_{size}"
    shutil.rmtree(folder, ignore_errors=True)
    raw = folder / "raw"
    raw.mkdir(parents=True)
    sources = originals(size - size // COPY_EVERY)
    copies = [planted_copy(sources[i], n) for n, i in enumerate(copy_sources(size))]
    for video in [*sources, *copies]:
        for path in (video, video.with_suffix(".txt")):
            os.link(path, raw / path.name)
    return folder


def measure(size: int, encode: bool) -> dict:
    """Ingest (and encode) a project of `size` clips in this process: what `--one` prints."""
    from dagster_project.core.params import load_params
    from dagster_project.core.paths import BaseModelFiles
    from dagster_project.dataset.cache import TensorCache
    from dagster_project.dataset.encode import cache_latents
    from dagster_project.dataset.ingest import discover_videos
    from dagster_project.dataset.manifest import ManifestRules, ManifestStores, build_manifest
    from dagster_project.dataset.windows import WindowRule
    from dagster_project.models.families import FAMILIES, family_spec
    from dagster_project.models.text_encoder import text_embedding_dim

    params = load_params("params.yaml")
    folder = project(size)
    raw = folder / "raw"
    started = time.perf_counter()
    videos = discover_videos(raw, [(".", "auto")])
    seconds = {"discover": time.perf_counter() - started}
    stores = ManifestStores(folder / "probe.parquet", folder / "thumbs", folder / "splits.parquet")
    rules = ManifestRules.of(params.data, params.bucket_list, params.fps)
    built = build_manifest(videos, raw, rules, stores)
    seconds |= built.seconds
    clips = built.clips
    content = dict(zip(clips["path"], clips["content"], strict=True))
    sources = originals(size - size // COPY_EVERY)
    pairs = [
        (planted_copy(sources[i], n).name, sources[i].name)
        for n, i in enumerate(copy_sources(size))
    ]
    grouped = sum(content.get(c) is not None and content.get(c) == content.get(s) for c, s in pairs)
    # groups joining clips of different recordings (the planted copies aside)
    recording = pl.col("path").str.slice(0, 7)
    mixed = (
        clips.filter(~pl.col("path").str.contains("-"))
        .group_by("content")
        .agg(recording.n_unique().alias("recordings"))
        .filter(pl.col("recordings") > 1)
        .height
    )
    result = {
        "size": size,
        "clips": clips.height,
        "rejects": built.rejects.height,
        "contents": clips["content"].n_unique(),
        "matched": built.matched_now,
        "copies": len(pairs),
        "grouped": grouped,
        "mixed_groups": mixed,
        "windows": int(clips["windows"].sum()),
    }
    if encode:
        base = BaseModelFiles(folder / "base")
        FAMILIES[params.model.family].write_base_model(params.model, text_embedding_dim(None), base)
        started = time.perf_counter()
        index, stats = cache_latents(
            clips, raw, TensorCache(folder / "cache", "latents"),
            family_spec(params.model.family, base), params.fps, WindowRule.of(params.data),
        )  # fmt: skip
        seconds["latents"] = time.perf_counter() - started
        result["encoded"] = stats.encoded
    result["seconds"] = seconds
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--encode-up-to", type=int, default=1000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.one <= args.encode_up_to)))
        return 0

    sizes = sorted(int(s) for s in args.sizes.split(","))
    prepare_pool(max(sizes))
    results = {}
    for size in sizes:
        command = [sys.executable, "-m", "benchmarks.data_scale", "--one", str(size),
                   "--encode-up-to", str(args.encode_up_to)]  # fmt: skip
        started = time.perf_counter()
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = results[size] = json.loads(output.strip().splitlines()[-1])
        stages = ", ".join(
            f"{stage} {1000 * s / size:.1f}" for stage, s in result["seconds"].items()
        )
        print(
            f"{size:6d} clips ({time.perf_counter() - started:.0f} s): ms per clip: {stages}; "
            f"{result['matched']} pairs matched ({result['matched'] / size:.1f} per clip), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB, copies grouped "
            f"{result['grouped']}/{result['copies']}, {result['contents']} contents "
            f"({result['mixed_groups']} groups across recordings), "
            f"{result.get('encoded', '-')} windows encoded",
            flush=True,
        )

    def ingest(size: int) -> float:
        return sum(s for k, s in results[size]["seconds"].items() if k != "latents") / size

    largest = max(sizes)
    if 1000 in results and largest > 1000:
        print(f"RESULT data_scale ingest_per_clip_ratio={ingest(largest) / ingest(1000):.2f} "
              f"({largest} vs 1000, goal <= 1.3)")  # fmt: skip
        rss = results[largest]["peak_rss_mb"] / results[1000]["peak_rss_mb"]
        print(f"RESULT data_scale peak_rss_ratio={rss:.2f} ({largest} vs 1000, goal <= 1.3)")
    share = results[largest]["seconds"]["near_duplicates"] / (ingest(largest) * largest)
    print(f"RESULT data_scale near_duplicate_share={100 * share:.1f}% (at {largest}, goal <= 15%)")
    grouped = sum(r["grouped"] for r in results.values())
    copies = sum(r["copies"] for r in results.values())
    print(f"RESULT data_scale copies_grouped={grouped}/{copies} (goal: all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Near-duplicate matching: how alike copies score, how apart different clips stay, and the cost.

What is measured
    Every clip of the sample data (``dagster_project.cli.sample_data``) is copied five ways with
    ffmpeg: re-encoded (x264 crf 28 and crf 40), cropped by 10% on every side, cropped
    unevenly (10% left, 5% top, 10% bottom), trimmed to its second half, mirrored, and all of
    these at once. Printed: each copy's similarity to its source (min and median per kind),
    the highest similarity between two different sample clips whose shapes a crop could relate
    (the candidates the matcher actually compares), the seconds to make one clip's thumbnails
    and the milliseconds of one pairwise match. Then the search as ingestion runs it
    (``find_links``: each clip's nearest neighbours by sketch, at most ``NEIGHBOURS`` matched per
    clip) over all 112 clips at once. RESULT: how many copies the search groups with their
    source and how many pairs of different sample clips end up in one group (the goal: at least
    97 of 98 copies, no different pair); beside it, the pairwise scores at the default threshold
    (``data.near_duplicate_threshold``), which the search cannot beat.

How
    Clips are written to ``benchmarks/.data/near_duplicates/``; one round.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.near_duplicates
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.clips import DATA_DIR
from dagster_project.core.params import DataParams
from dagster_project.dataset.near_duplicates import (
    NEIGHBOURS,
    _aspect_fits,
    clip_similarity,
    content_groups,
    find_links,
    sketch,
)
from dagster_project.dataset.sample_data import write_sample_dataset
from dagster_project.video.probe import probe_video
from dagster_project.video.thumbnails import thumbnails

WORK = DATA_DIR / "near_duplicates"
KINDS = {
    "crf28": ["-c:v", "libx264", "-crf", "28"],
    "crf40": ["-c:v", "libx264", "-crf", "40"],
    "crop10": ["-vf", "crop=trunc(iw*0.8/2)*2:trunc(ih*0.8/2)*2:iw*0.1:ih*0.1"],
    "crop_uneven": ["-vf", "crop=trunc(iw*0.9/2)*2:trunc(ih*0.85/2)*2:iw*0.1:ih*0.05"],
    "trim_half": ["-vf", "trim=start_frame=n_half,setpts=PTS-STARTPTS"],
    "mirror": ["-vf", "hflip"],
    "all": ["-vf", "hflip,crop=trunc(iw*0.86/2)*2:trunc(ih*0.9/2)*2:iw*0.08:0,"
            "trim=start_frame=n_quarter,setpts=PTS-STARTPTS", "-crf", "32"],
}  # fmt: skip


def copy(source: Path, kind: str, frames: int) -> Path:
    target = WORK / "copies" / f"{source.stem}-{kind}.mp4"
    if not target.is_file():
        args = [a.replace("n_half", str(frames // 2)).replace("n_quarter", str(frames // 4))
                for a in KINDS[kind]]  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", f"file:{source}", *args,
                        f"file:{target}"], check=True)  # fmt: skip
    return target


def prints(path: Path) -> tuple:
    info = probe_video(path)
    return thumbnails(path, info.frame_count, info.sample_aspect_ratio), info.width / info.height


def main() -> int:
    raw = WORK / "raw"
    if not raw.is_dir():
        write_sample_dataset(raw)
    sources = sorted(raw.rglob("*.mp4"))
    started = time.perf_counter()
    originals = {s: prints(s) for s in sources}
    per_clip = (time.perf_counter() - started) / len(sources)
    scores: dict[str, list[float]] = {kind: [] for kind in KINDS}
    match_times = []
    for source in sources:
        frames, aspect = originals[source]
        for kind in KINDS:
            copied, copy_aspect = prints(copy(source, kind, len(frames)))
            started = time.perf_counter()
            scores[kind].append(clip_similarity(frames, copied, aspect, copy_aspect))
            match_times.append(time.perf_counter() - started)
    apart = []
    for i, a in enumerate(sources):
        for b in sources[i + 1 :]:
            if _aspect_fits(originals[a][1], originals[b][1]):
                score = clip_similarity(
                    originals[a][0], originals[b][0], originals[a][1], originals[b][1]
                )
                apart.append((score, a.name, b.name))
    for kind, values in scores.items():
        worst = min(values)
        print(f"{kind:12s} min {worst:.3f} median {statistics.median(values):.3f}")
    top = max(apart)
    print(f"different clips, most alike: {top[0]:.3f} ({top[1]}, {top[2]}); {len(apart)} pairs")
    print(f"thumbnails: {per_clip:.3f} s per clip; one match: "
          f"{1000 * statistics.median(match_times):.1f} ms (median)")  # fmt: skip
    threshold = DataParams().near_duplicate_threshold
    found = sum(v >= threshold for values in scores.values() for v in values)
    copies = sum(len(values) for values in scores.values())
    linked = sum(score >= threshold for score, *_ in apart)
    print(f"pairwise: {found}/{copies} copies at or above {threshold}, {linked}/{len(apart)} "
          "different pairs")  # fmt: skip

    # the search over every clip at once, as ingestion runs it
    clips = {s: originals[s] for s in sources}
    clips |= {copy(s, kind, len(originals[s][0])): None for s in sources for kind in KINDS}
    clips = {path: value or prints(path) for path, value in clips.items()}
    names = [str(path) for path in clips]
    frames = [value[0] for value in clips.values()]
    started = time.perf_counter()
    links, scored = find_links(
        names,
        [sketch(f) for f in frames],
        [value[1] for value in clips.values()],
        threshold,
        frames=lambda i: frames[i],
    )
    search = time.perf_counter() - started
    group = content_groups(names, links)
    source_of = {str(s): str(s) for s in sources} | {
        str(copy(s, kind, len(originals[s][0]))): str(s) for s in sources for kind in KINDS
    }
    grouped = sum(
        group[name] == group[source_of[name]] for name in names if source_of[name] != name
    )
    merged = sum(
        group[str(a)] == group[str(b)] for i, a in enumerate(sources) for b in sources[i + 1 :]
    )
    print(f"search: {len(scored)} pairs matched for {len(names)} clips "
          f"({len(scored) / len(names):.1f} per clip), {search:.1f} s")  # fmt: skip
    print(f"RESULT {grouped}/{len(names) - len(sources)} copies grouped with their source, "
          f"{merged}/{len(sources) * (len(sources) - 1) // 2} pairs of different sample clips "
          f"in one group (threshold {threshold}, {NEIGHBOURS} neighbours per clip)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

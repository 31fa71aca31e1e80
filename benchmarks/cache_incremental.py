"""Incremental caching: a re-run after adding 1 video to 100, against a fresh run on that 1 video.

What is measured
    Wall time of the real pipeline path, in-process (``tests.conftest.materialize``), for the
    selection ``videos,manifest,rejects,text_embeddings,video_latents``, asset checks included
    (if the blocking ``manifest_contract`` refuses the one-video project, e.g. because it has
    no validation clip, both sides run without asset checks and the output says so):

    * A, fresh: a project whose ``data/raw`` holds only the new video, nothing cached (no
      parquet tables, no probe cache, no tensor cache; the base model is already written);
    * B, incremental: a project whose 100 videos were already materialized through the same
      selection, after adding the new video.

    The ratio B / A says what the 100 cached videos still cost; the goal is at most 1.2. B must
    encode exactly 1 latent and 1 caption (read from the ``video_latents`` and
    ``text_embeddings`` metadata) and, when the project reports it, probe exactly 1 file.

How
    Clips come from ``benchmarks/clips.py`` (small unique lavfi clips with sidecar captions,
    rendered once into ``benchmarks/.data/clips/``). Both projects live under
    ``benchmarks/.data/cache_incremental/`` and get the repository's params.yaml on every
    run; A is rebuilt from scratch, B keeps the tensor cache of the previous benchmark run
    (content-addressed, so only what changed is encoded again; ``--rebuild`` starts B from
    scratch too, about 1-3 minutes more). ``base_model`` is materialized first in both, then
    one untimed fresh run of A (it warms up imports and names the new video's cache entries),
    then B's 100 videos, all not timed. Then 5 rounds (about 2 s each), alternating which side
    goes first; before each round A's outputs are wiped and B is put back to its 100-video
    state (the new video and its cache entries removed, the 100 re-materialized), so every B
    run really adds one video. The medians are reported, with the median time of each Dagster
    step.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.cache_incremental [--videos 100] [--rounds 5] [--rebuild]

The last line is ``RESULT cache_incremental ratio=<x> (goal <= 1.2)``; the exit status is 0
whether or not the goal is met (1 if a run fails or encodes the wrong number of clips).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from benchmarks.clips import (
    DATA_DIR,
    Timing,
    ensure_clips,
    failed_checks,
    fresh_project,
    link_clips,
    load_note,
    materialize_quietly,
    reused_project,
    small_clip,
    timed,
    unlink_clip,
)

WORK_DIR = DATA_DIR / "cache_incremental"
SELECTION = "videos,manifest,rejects,text_embeddings,video_latents"
GOAL = 1.2


@dataclass
class Run:
    """One timed materialization: wall time, step durations and what it encoded."""

    timing: Timing
    steps: dict[str, float] = field(default_factory=dict)  # step key -> seconds
    latents_encoded: int = -1
    texts_encoded: int = -1
    probed_now: int | None = None


def _metadata(result: dg.ExecuteInProcessResult, node: str, asset: str, key: str) -> int | None:
    for event in result.asset_materializations_for_node(node):
        if event.asset_key.to_user_string() == asset and key in event.metadata:
            return int(event.metadata[key].value)
    return None


def run_selection(params: Path, checks: bool) -> Run:
    timing = timed(lambda: materialize_quietly(params, SELECTION, checks=checks))
    result: dg.ExecuteInProcessResult = timing.value
    if not result.success:
        raise RuntimeError(f"materialization failed for {params}: {failed_checks(result)}")
    steps = {
        event.step_key: event.event_specific_data.duration_ms / 1000
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_SUCCESS and event.step_key
    }
    return Run(
        timing,
        steps,
        latents_encoded=_metadata(result, "video_latents", "video_latents", "encoded") or 0,
        texts_encoded=_metadata(result, "text_embeddings", "text_embeddings", "encoded") or 0,
        probed_now=_metadata(result, "probe", "manifest", "probed_now"),
    )


def wipe_outputs(project: Path) -> None:
    """Everything under data/ but the raw videos and the base model."""
    for entry in (project / "data").iterdir():
        if entry.name in ("raw", "models"):
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def cache_files(project: Path) -> set[Path]:
    cache = project / "data" / "cache"
    return {p for p in cache.rglob("*") if p.is_file()} if cache.is_dir() else set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--videos", type=int, default=100, help="videos already cached (100)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (5)")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="encode the 100 videos from scratch (default: reuse the cache of an earlier run)",
    )
    args = parser.parse_args(argv)

    old = [small_clip(i) for i in range(args.videos)]
    new = small_clip(args.videos)
    ensure_clips([*old, new])

    one = fresh_project(WORK_DIR / "one", [new])
    make_many = fresh_project if args.rebuild else reused_project
    many = make_many(WORK_DIR / "many", old)
    for params in (one, many):
        if not materialize_quietly(params, "base_model").success:
            print(f"FAILED: base_model for {params}")
            return 1
    # an untimed fresh run on the new video: warms up imports and names its cache entries.
    # The manifest contract may refuse a one-video project (it wants a train and a val clip);
    # then both sides run without asset checks, so they still do the same work.
    probe_run = materialize_quietly(one, SELECTION)
    checks = bool(probe_run.success)
    if not checks:
        refused = "; ".join(failed_checks(probe_run)) or "the run failed"
        print(f"note: the fresh 1-video run fails with asset checks ({refused})")
        print("note: timing both sides without asset checks (same assets, same work)")
        wipe_outputs(one.parent)
        run_selection(one, checks=False)
    new_entries = [p.relative_to(one.parent) for p in cache_files(one.parent)]
    raw = many.parent / "data" / "raw"

    def back_to_old_videos() -> Run:
        """B without the new video: its cache entries gone, the tables re-materialized."""
        for entry in new_entries:
            (many.parent / entry).unlink(missing_ok=True)
        unlink_clip(new, raw)
        return run_selection(many, checks)

    print(f"setup: materializing {args.videos} videos (not timed) ...", flush=True)
    setup = back_to_old_videos()
    print(
        f"setup: {args.videos} videos in {setup.timing.wall:.1f} s ({setup.latents_encoded} "
        f"latents encoded, the rest reused from an earlier run; other load "
        f"{setup.timing.other_cores or 0:.2f} cores)",
        flush=True,
    )

    runs: dict[str, list[Run]] = {"A": [], "B": []}
    for round_ in range(args.rounds):
        wipe_outputs(one.parent)
        if round_ > 0:
            back_to_old_videos()
        link_clips([new], raw)
        order = ["A", "B"] if round_ % 2 == 0 else ["B", "A"]
        for side in order:
            run = run_selection(one if side == "A" else many, checks)
            runs[side].append(run)
            other = "" if run.timing.other_cores is None else f"{run.timing.other_cores:.2f}"
            print(
                f"  round {round_ + 1}: {side} {run.timing.wall:6.2f} s  latents encoded "
                f"{run.latents_encoded}  captions encoded {run.texts_encoded}  "
                f"probed {run.probed_now}  other load {other} cores",
                flush=True,
            )

    problems = []
    for side, side_runs in runs.items():
        for run in side_runs:
            if run.latents_encoded != 1 or run.texts_encoded != 1:
                problems.append(
                    f"{side}: encoded {run.latents_encoded} latents, "
                    f"{run.texts_encoded} captions (expected 1 and 1)"
                )
            if run.probed_now is not None and run.probed_now != 1:
                problems.append(f"{side}: probed {run.probed_now} files (expected 1)")

    medians = {s: statistics.median(r.timing.wall for r in rs) for s, rs in runs.items()}
    ratio = medians["B"] / medians["A"]
    step_times: dict[str, dict[str, float]] = defaultdict(dict)
    for side, side_runs in runs.items():
        for key in side_runs[0].steps:
            step_times[key][side] = statistics.median(r.steps.get(key, 0.0) for r in side_runs)

    print()
    with_checks = "with" if checks else "WITHOUT"
    print(
        f"median of {args.rounds} alternating rounds; selection {SELECTION}, "
        f"{with_checks} asset checks"
    )
    print(f"{'run':<52} {'wall s':>8} {'best s':>8}")
    labels = {
        "A": "A  fresh: 1 video, empty cache",
        "B": f"B  incremental: {args.videos} cached + 1 new video",
    }
    for side, label in labels.items():
        best = min(r.timing.wall for r in runs[side])
        print(f"{label:<52} {medians[side]:8.2f} {best:8.2f}")
    print(f"{'ratio B / A':<52} {ratio:8.2f}x")
    print()
    print(f"{'Dagster step (median s)':<52} {'A':>8} {'B':>8}")
    for key, sides in step_times.items():
        print(f"{key:<52} {sides.get('A', 0.0):8.2f} {sides.get('B', 0.0):8.2f}")
    last_b = runs["B"][-1]
    print(
        f"latents encoded in B: {last_b.latents_encoded} (every round: "
        f"{[r.latents_encoded for r in runs['B']]}); captions: {last_b.texts_encoded}; "
        f"files probed: {last_b.probed_now}"
    )
    note = load_note(r.timing for rs in runs.values() for r in rs)
    if note:
        print(note)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"RESULT cache_incremental ratio={ratio:.2f} (goal <= {GOAL})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

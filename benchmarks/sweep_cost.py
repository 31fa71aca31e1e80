"""The exposure sweep: its curve on a dataset, and its cost against the training it contains.

What is measured
    The ``exposure_sweep`` asset, materialized as the UI does, on
    - ``embedded``: the sample data (``make sample-data``) with the embedded tiny Wan, or
    - ``cpu-sized``: the 40 small clips of ``benchmarks.clips`` with the CPU-sized Wan of
      ``benchmarks.training_modes`` (about 36M parameters, full fine-tuning).
    Milestones ``--milestones`` exposures per content (default 5 10 25 50 100), subsets
    ``--subsets`` (default 1.0). Printed: the sweep's table and recommendation (what
    docs/overfitting.md quotes), the wall time of the materialization, and the training time
    of the steps it ran (steps x the worker's seconds per step, evaluations and checkpoint
    writes excluded). RESULT is wall time over training time: what the sweep's evaluations,
    checkpoints and start-up add to the runs it contains.

How
    The project folders are ``benchmarks/.data/sweep_<model>/``; caches are kept between runs,
    the sweep's runs are not (it starts fresh each time). One round: the sweep is long.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.sweep_cost --model embedded
    .venv/bin/python -m benchmarks.sweep_cost --model cpu-sized
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

from benchmarks.clips import (
    DATA_DIR,
    ensure_clips,
    materialize_quietly,
    reused_project,
    small_clip,
    write_params,
)
from benchmarks.training_modes import CPU_SIZED, ENV, SELECTION
from dagster_project.core.params import load_params
from dagster_project.dataset.sample_data import write_sample_dataset


def project(model: str, milestones: list[float], subsets: list[float]):
    """The project's params.yaml for `model`, its cache prepared."""
    folder = DATA_DIR / f"sweep_{model}"
    sweep = {"milestones": milestones, "subsets": subsets, "output_dir": "data/sweep"}
    guard = {"max_exposures": 50.0, "warn_exposures": 10.0}
    if model == "embedded":
        raw = folder / "data" / "raw"
        if not raw.is_dir():
            write_sample_dataset(raw)
        params = write_params(folder, sweep=sweep, guard=guard)
    else:
        clips = [small_clip(i) for i in range(40)]
        ensure_clips(clips)
        params = reused_project(
            folder, clips, model={"base_dir": "data/models/cpu-sized", "tiny": CPU_SIZED},
            sweep=sweep, guard=guard,
        )  # fmt: skip
    if not materialize_quietly(params, SELECTION).success:
        raise SystemExit(f"FAILED: preparing {model}")
    shutil.rmtree(load_params(params).sweep_outputs.root, ignore_errors=True)
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", choices=["embedded", "cpu-sized"], default="embedded")
    parser.add_argument("--milestones", type=float, nargs="+", default=[5, 10, 25, 50, 100])
    parser.add_argument("--subsets", type=float, nargs="+", default=[1.0])
    args = parser.parse_args(argv)
    os.environ.update(ENV)
    params = project(args.model, args.milestones, args.subsets)
    started = time.perf_counter()
    result = materialize_quietly(params, "exposure_sweep")
    wall = time.perf_counter() - started
    if not result.success:
        print("FAILED: the sweep")
        return 1
    out = load_params(params).sweep_outputs
    advice = json.loads(out.recommendation.read_text())
    print(out.report.read_text())
    print(json.dumps(advice, indent=2))
    training, evaluations = advice["train_seconds"], advice["evaluation_seconds"]
    print(f"sweep wall time: {wall:.1f} s; training it contains: {training:.1f} s "
          f"({advice['steps']} steps); evaluations {evaluations:.1f} s")  # fmt: skip
    print(f"RESULT {wall / training:.2f} (sweep time / its training time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

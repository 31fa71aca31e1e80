"""In-loop evaluation: its cost as a share of training time, at the default `eval.every`.

What is measured
    The training worker (as the ``trained_model`` asset runs it) on the CPU-sized Wan of
    ``benchmarks.training_modes`` (about 36M parameters, full fine-tuning) over its 40 small
    clips, with the evaluation settings of ``dagster_project/core/params.py`` (``eval.every`` 150;
    fixed-level losses on the validation clips and 8 training clips, 3 samples for each of 3
    validation prompts in latent space). From the worker's metrics: seconds per optimizer step
    (without evaluations and checkpoint writes) and seconds per evaluation. RESULT is one
    evaluation's time over the ``eval.every`` steps it follows, the steady-state share of a
    long run; the goal is at most 0.15. The share of the measured run itself (which adds the
    step-0 evaluation of the base) is printed too.

How
    The project and cache of ``benchmarks.training_modes`` (``benchmarks/.data/training_modes``)
    are reused; ``--steps`` (default 200) steps, one round.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.eval_cost [--steps 200]
"""

from __future__ import annotations

import argparse
import os

from benchmarks.clips import ensure_clips, materialize_quietly, reused_project, small_clip
from benchmarks.clips import write_params as write_benchmark_params
from benchmarks.training_modes import CPU_SIZED, ENV, SELECTION, WORK_DIR, worker
from dagster_project.core.params import EvalParams

GOAL = 0.15


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--videos", type=int, default=40)
    args = parser.parse_args(argv)
    os.environ.update(ENV)
    clips = [small_clip(i) for i in range(args.videos)]
    ensure_clips(clips)
    reused_project(WORK_DIR, clips)
    every = EvalParams().every
    params = write_benchmark_params(
        WORK_DIR,
        name="params_eval_cost.yaml",
        model={"base_dir": "data/models/cpu-sized", "tiny": CPU_SIZED},
        train={"steps": args.steps, "checkpoint_every": every, "output_dir": "data/train_eval",
               "resume": "never"},
        guard={"max_exposures": 100000.0, "warn_exposures": 100000.0},
        eval={"every": every},  # the default, not the demo's params.yaml value
    )  # fmt: skip
    if not materialize_quietly(params, SELECTION).success:
        print("FAILED: preparing the CPU-sized Wan")
        return 1
    run = worker(params)
    step, evaluation = run["seconds_per_step"], run["evaluation_seconds"]
    share = evaluation / (every * step)
    whole = run["evaluations"] * evaluation / (args.steps * step)
    print(f"CPU-sized Wan, {run['trainable_parameters']:,} parameters, {args.steps} steps")
    print(f"  {step * 1000:.1f} ms/step, {evaluation:.2f} s per evaluation "
          f"({run['evaluations']} evaluations)")  # fmt: skip
    print(f"  this run: evaluations {whole:.1%} of training time")
    print(f"RESULT: one evaluation per eval.every={every} steps costs {share:.1%} of their "
          f"training time (goal <= {GOAL:.0%})")  # fmt: skip
    return 0 if share <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())

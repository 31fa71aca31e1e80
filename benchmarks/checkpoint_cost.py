"""Checkpoint cost: saving and loading the whole training state against one training step.

What is measured
    On the CPU-sized Wan of ``benchmarks/training_modes.py`` (about 35M parameters), in
    ``train.mode`` full and lora: the worker's mean checkpoint save time (accelerate's
    ``save_state`` with the adapter hooks, ``state.json``, the rename) and, on a second run that
    resumes from the last checkpoint (``train.steps`` raised, constant LR schedule), the
    ``load_state`` time; both against the worker's ``seconds_per_step``. Both times come from the
    worker's ``metrics.json`` (``checkpoint_save_seconds``, ``checkpoint_load_seconds``).

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.checkpoint_cost [--steps 9]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from benchmarks.clips import (
    ensure_clips,
    materialize_quietly,
    reused_project,
    small_clip,
    write_params,
)
from benchmarks.training_modes import CPU_SIZED, ENV, SELECTION, WORK_DIR, worker


def config_params(mode: str, steps: int) -> Path:
    """The CPU-sized Wan in `mode`, constant LR (so raising the steps resumes the run)."""
    return write_params(
        WORK_DIR,
        name=f"params_ckpt_{mode}.yaml",
        model={"base_dir": "data/models/cpu-sized", "tiny": CPU_SIZED},
        train={
            "steps": steps,
            "mode": mode,
            "lr_scheduler": "constant",
            "checkpoint_every": 3,
            "output_dir": f"data/ckpt_{mode}",
            "resume": "auto",
        },
        guard={"max_exposures": 100000.0, "warn_exposures": 100000.0},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--videos", type=int, default=40)
    args = parser.parse_args(argv)
    os.environ.update(ENV)
    clips = [small_clip(i) for i in range(args.videos)]
    ensure_clips(clips)
    reused_project(WORK_DIR, clips)
    (WORK_DIR / "params.yaml").unlink(missing_ok=True)
    print(
        f"{'mode':<5} {'step s':>7} {'save s':>7} {'save/step':>9} {'load s':>7} {'load/step':>9}"
    )
    for mode in ("full", "lora"):
        first = config_params(mode, args.steps)
        if not materialize_quietly(first, SELECTION).success:
            print("FAILED: preparing")
            return 1
        shutil.rmtree(WORK_DIR / "data" / f"ckpt_{mode}", ignore_errors=True)  # a fresh run
        fresh = worker(first)
        resumed = worker(config_params(mode, args.steps + 3))  # resumes from the last one
        step = fresh["seconds_per_step"]
        save, load = fresh["checkpoint_save_seconds"], resumed["checkpoint_load_seconds"]
        print(
            f"{mode:<5} {step:7.3f} {save:7.3f} {save / step:9.2f} {load:7.3f} {load / step:9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start-up of a DVC stage: what a stage costs before its asset does any work.

What is measured
    Wall time of the `training_plan` stage command (its own work, replaying the sampler over 20
    clips, is a few milliseconds), as dvc.yaml runs it: ``python -m dagster_project.cli.materialize
    training_plan``. Beside it, Dagster's own launchers of the same asset: ``dg launch --assets
    training_plan`` (dagster-dg-cli, which supersedes the next one), the command the stages ran
    before, ``dagster asset materialize -m dagster_project.definitions --select training_plan``,
    and a bare one-asset Dagster materialization of a module holding only a trivial asset
    (Dagster's own floor here). RESULT is the stage command's time; the goal is at most 4 s.
    Medians of ``--rounds`` (default 5), alternating order.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.stage_startup [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.clips import DATA_DIR, ensure_clips, materialize_quietly, reused_project, small_clip
from dagster_project.core.params import PARAMS_ENV

WORK_DIR = DATA_DIR / "stage_startup"
GOAL = 4.0
BARE = '''import dagster as dg


@dg.asset
def trivial() -> None:
    """Does nothing."""
'''


def timed_command(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    clips = [small_clip(i) for i in range(20)]
    ensure_clips(clips)
    params = reused_project(WORK_DIR, clips)
    if not materialize_quietly(params, "videos,manifest,rejects").success:
        print("FAILED: preparing the manifest")
        return 1
    (WORK_DIR / "bare_asset.py").write_text(BARE)
    home = WORK_DIR / "dagster_home"
    home.mkdir(exist_ok=True)
    # every command reads this project's params.yaml (dg runs from the project root)
    env = {**os.environ, "DAGSTER_HOME": str(home), PARAMS_ENV: str(params.resolve())}
    dagster = str(Path(sys.executable).with_name("dagster"))
    dg_cli = str(Path(sys.executable).with_name("dg"))
    commands = {
        "stage (materialize CLI)": [sys.executable, "-m", "dagster_project.cli.materialize",
                                    "training_plan"],
        "dg launch --assets": [dg_cli, "launch", "--assets", "training_plan"],
        "dagster asset materialize": [dagster, "asset", "materialize", "-m",
                                      "dagster_project.definitions", "--select", "training_plan"],
        "bare one-asset Dagster": [dagster, "asset", "materialize", "-f", "bare_asset.py",
                                   "--select", "trivial"],
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(args.rounds):
        order = list(commands) if round_ % 2 == 0 else list(commands)[::-1]
        for name in order:
            times[name].append(timed_command(commands[name], WORK_DIR, env))
    for name, values in times.items():
        print(f"{name:<28} {statistics.median(values):5.2f} s (median of {args.rounds})")
    stage = statistics.median(times["stage (materialize CLI)"])
    print(f"RESULT: a stage starts and runs a trivial asset in {stage:.2f} s (goal <= {GOAL:g} s)")
    return 0 if stage <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())

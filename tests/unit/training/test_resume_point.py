"""Which checkpoint a run resumes from: its own newest, past other runs' in the same folder."""

from __future__ import annotations

import json
from pathlib import Path

from dagster_project.core.paths import CheckpointFiles, TrainOutputs
from dagster_project.training.checkpoint import resume_point, write_marker

THIS, OTHER = {"seed": 1, "lr": 0.01}, {"seed": 1, "lr": 0.002}


def checkpoint(out: TrainOutputs, step: int, fingerprint: dict) -> None:
    folder = out.checkpoint(step)
    folder.mkdir(parents=True)
    state = {"step": step, "fingerprint": fingerprint, "sampler": {}, "losses": []}
    CheckpointFiles(folder).state.write_text(json.dumps(state))
    write_marker(folder)


def test_a_run_resumes_from_its_own_checkpoint_past_a_newer_one_of_another_run(
    tmp_path: Path,
) -> None:
    out = TrainOutputs(tmp_path)
    checkpoint(out, 10, THIS)
    checkpoint(out, 40, OTHER)  # left by an earlier run with another learning rate
    folder, why = resume_point(out, THIS, 120, "auto")
    assert folder == out.checkpoint(10) and "at step 10" in why


def test_without_its_own_checkpoint_it_says_what_changed_since_the_newest(tmp_path: Path) -> None:
    out = TrainOutputs(tmp_path)
    checkpoint(out, 40, OTHER)
    assert resume_point(out, THIS, 120, "auto") == (
        None,
        "starting fresh: lr changed since the checkpoint at step 40",
    )

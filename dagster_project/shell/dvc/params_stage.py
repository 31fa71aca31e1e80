"""The first DVC stage: params.yaml validated before any other stage runs.

DVC deletes a stage's outputs before it runs the stage's command, and the command is what
validates params.yaml: a bare `dvc repro` with an invalid params.yaml would lose the manifest,
the model, the metrics (`cache: false` outputs cannot be checked out again) before failing.
So dvc.yaml starts with this stage, which every other stage depends on: it reads params.yaml
and writes a marker of fixed content (so its hash never changes, and a valid edit re-runs only
what the edit touches); when params.yaml is invalid it fails, and DVC stops before any other
stage deletes anything.
"""

from __future__ import annotations

from pathlib import Path

from dagster_project.core.atomic import write_text

STAGE = "params"
COMMAND = "python -m dagster_project.cli.check_params"
MARKER = "data/.params_valid"  # relative to the project (the folder of dvc.yaml)
MARKER_TEXT = "params.yaml was valid when the stages after this one ran\n"


def write_marker(root: Path) -> None:
    """Record that params.yaml (in `root`) is valid: the stage's output."""
    marker = root / MARKER
    if not marker.is_file() or marker.read_text() != MARKER_TEXT:
        write_text(MARKER_TEXT, marker)


def stage(deps: list[str]) -> dict:
    """The stage's dvc.yaml entry; `deps` are its code."""
    return {
        "cmd": COMMAND,
        "deps": ["params.yaml", *deps],
        "outs": [{MARKER: {"cache": False}}],
    }

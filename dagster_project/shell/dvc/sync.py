"""Keep DVC in step with runs that did not come from `dvc repro` (the UI, the sensor, the
schedule): after such a run, `dvc commit -f` the stages it materialized whole, so `dvc status`
has nothing to do for them and names exactly the stages left behind.

Never from inside a `dvc repro` (which holds DVC's lock and records its stages itself): the
stage command tags its runs with `DVC_STAGE_TAG`, and those are skipped. The raw data folder is
committed (versioned) by the ingestion asset before anything reads it, after the link check.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

# set on the runs of a DVC stage (`dagster_project.cli.materialize`, from DVC's own DVC_STAGE)
DVC_STAGE_TAG = "dvc/stage"
# the metadata key of the raw folder's DVC hash, recorded by `videos` and `trained_model`
RAW_DVC_HASH = "raw_dvc_md5"
DVC_TIMEOUT_S = 600  # hashing large outputs takes a while; a hung dvc must not hold the sensor


def is_dvc_project(root: Path) -> bool:
    """A DVC repository with the pipeline's dvc.yaml."""
    return (root / ".dvc").is_dir() and (root / "dvc.yaml").is_file()


def dvc(root: Path, *args: str) -> str | None:
    """Run the venv's dvc (else the one on PATH) in `root`; None when it succeeded, else its
    error output."""
    beside = Path(sys.executable).with_name("dvc")
    program = str(beside) if beside.is_file() else shutil.which("dvc") or "dvc"
    try:
        done = subprocess.run([program, *args], cwd=root, capture_output=True, text=True,
                              timeout=DVC_TIMEOUT_S)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


def whole_stages(stages: dict[str, list[dg.AssetKey]], done: set[dg.AssetKey]) -> list[str]:
    """The stages all of whose assets are in `done`."""
    return [name for name, keys in stages.items() if set(keys) <= done]


def commit_stages(root: Path, names: list[str]) -> str | None:
    """`dvc commit -f` the stages `names` of the dvc.yaml in `root`; None when done or nothing
    to do, else DVC's error (a lock held by a running `dvc repro`, ...)."""
    if not names or not is_dvc_project(root):
        return None
    return dvc(root, "commit", "--force", "--quiet", *names)


def raw_dvc_file(raw_dir: Path) -> Path:
    """The .dvc file that tracks the raw data folder (`dvc add data/raw`)."""
    return raw_dir.with_name(raw_dir.name + ".dvc")


def version_raw_data(root: Path, raw_dir: Path) -> str | None:
    """Commit the raw folder's current content to DVC (outside a DVC stage) and return its DVC
    hash, or None when the folder is not tracked by DVC."""
    tracked = raw_dvc_file(raw_dir)
    if not tracked.is_file() or not is_dvc_project(root):
        return None
    error = dvc(root, "commit", "--force", "--quiet", str(tracked.relative_to(root)))
    if error:
        raise RuntimeError(f"{tracked}: dvc commit failed: {error}")
    return raw_data_version(raw_dir)


def raw_data_version(raw_dir: Path) -> str | None:
    """The DVC hash (md5 of the folder listing) recorded in the raw folder's .dvc file."""
    tracked = raw_dvc_file(raw_dir)
    if not tracked.is_file():
        return None
    outs = yaml.safe_load(tracked.read_text()).get("outs") or [{}]
    return outs[0].get("md5")


def materialized_keys(instance: dg.DagsterInstance, run_id: str) -> set[dg.AssetKey]:
    """The assets a run materialized."""
    records = instance.get_records_for_run(
        run_id=run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    return {r.event_log_entry.dagster_event.asset_key for r in records}


def sync_run(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    stages: dict[str, list[dg.AssetKey]],
    root: Path,
) -> str:
    """Commit the stages a finished run materialized whole (not a DVC stage's own run)."""
    if DVC_STAGE_TAG in run.tags:
        return f"run {run.run_id[:8]}: a DVC stage's, recorded by dvc repro"
    names = whole_stages(stages, materialized_keys(instance, run.run_id))
    if not names:
        return f"run {run.run_id[:8]}: no whole stage materialized"
    error = commit_stages(root, names)
    if error:  # reported on the tick, not raised: a raising tick would retry this run forever
        return f"run {run.run_id[:8]}: dvc commit {' '.join(names)} failed: {error}"
    return f"run {run.run_id[:8]}: dvc commit {' '.join(names)}"

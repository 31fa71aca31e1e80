"""Keep DVC in step with runs that did not come from `dvc repro` (the UI, the sensor, the
schedule, `dg launch` or `dagster asset materialize` in a terminal): as soon as a run has
materialized every asset of a DVC stage, the run itself `dvc commit -f`s that stage (a success
hook on every staged asset, `dvc_commit_hook`), so `dvc status` has nothing to do for it and
names exactly the stages left behind, with or without the daemon.

Never from inside a `dvc repro` (which holds DVC's lock and records its stages itself): the
stage command tags its runs with `DVC_STAGE_TAG` (and DVC sets DVC_STAGE), and those are left
alone. The raw data folder is committed (versioned) by the ingestion asset before anything reads
it, after the link check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from dagster_project.shell.dvc import params_stage
from dagster_project.shell.dvc.declare import is_staged

# set on the runs of a DVC stage (`dagster_project.cli.materialize`, from DVC's own DVC_STAGE)
DVC_STAGE_TAG = "dvc/stage"
# the metadata key of the raw folder's DVC hash, recorded by `videos` and `trained_model`
RAW_DVC_HASH = "raw_dvc_md5"
DVC_TIMEOUT_S = 600  # hashing large outputs takes a while; a hung dvc must not hold the run


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


def commit_whole_stages(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    stages: dict[str, list[dg.AssetKey]],
    assets: set[dg.AssetKey],
    root: Path,
) -> str | None:
    """Commit the stages of `assets` (just materialized) that `run` has now materialized whole;
    what was done, or None when nothing was to do (a DVC stage's own run included)."""
    if DVC_STAGE_TAG in run.tags or "DVC_STAGE" in os.environ:
        return None  # `dvc repro` records it
    done = materialized_keys(instance, run.run_id) | assets
    names = [name for name in whole_stages(stages, done) if assets & set(stages[name])]
    if not names:
        return None
    if is_dvc_project(root):  # the run read params.yaml: the params stage is done too
        params_stage.write_marker(root)
    names = [params_stage.STAGE, *names]
    error = commit_stages(root, names)
    if error:  # a warning, not a failure: the assets are done; `dvc commit` can follow later
        return f"dvc commit {' '.join(names)} failed: {error}"
    return f"dvc commit {' '.join(names)}"


def dvc_commit_hook(
    stages: dict[str, list[dg.AssetKey]], assets: set[dg.AssetKey], name: str
) -> dg.HookDefinition:
    """The success hook of the op that materializes `assets`: commits their DVC stage once the
    run has materialized it whole."""

    @dg.success_hook(name=f"dvc_commit_{name}", required_resource_keys={"params"})
    def dvc_commit(context: dg.HookContext) -> None:
        run = context.instance.get_run_by_id(context.run_id)
        root = context.resources.params.load().root.resolve()
        said = commit_whole_stages(context.instance, run, stages, assets, root)
        if said:
            (context.log.warning if "failed" in said else context.log.info)(said)

    return dvc_commit


def with_dvc_commits(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """`assets`, each staged one with the hook that commits its stage when a run completes it."""
    stages: dict[str, list[dg.AssetKey]] = {}
    for asset in assets:
        for spec in asset.specs:
            if is_staged(spec.metadata):  # a stage is a group's staged assets
                stages.setdefault(spec.group_name, []).append(spec.key)
    staged = {key for keys in stages.values() for key in keys}
    return [
        asset.with_hooks({dvc_commit_hook(stages, set(asset.keys), asset.node_def.name)})
        if set(asset.keys) & staged
        else asset
        for asset in assets
    ]

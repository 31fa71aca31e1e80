"""DVC in step with runs that did not come from `dvc repro`: a run launched from a terminal
(`dg launch`, no daemon) leaves `dvc status` clean; a partial run (as the UI's run worker does)
commits exactly the stages it materialized whole, so `dvc status` names the ones left behind.
The raw folder is versioned by ingestion, and a DVC stage's own runs are left to `dvc repro`."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

from dagster_project.definitions import build_definitions
from dagster_project.shell.dvc.sync import DVC_STAGE_TAG, raw_data_version
from tests.e2e.conftest import BIN, copy_demo, run

pytestmark = pytest.mark.slow


def run_assets(params: Path, instance: dg.DagsterInstance, selection: str, **tags: str) -> list:
    """Materialize in-process (as the UI's run worker does); what its DVC commits said."""
    job = build_definitions(str(params)).resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey(k) for k in selection.split(",")]
    result = job.execute_in_process(instance=instance, asset_selection=keys, tags=tags)
    assert result.success
    logs = instance.all_logs(result.run_id)
    return [e.user_message for e in logs if e.user_message.startswith("dvc commit")]


def dvc_status(root: Path) -> str:
    return run([str(BIN / "dvc"), "status"], root)


def test_dagster_runs_keep_dvc_in_step(
    demo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_demo(demo_project, tmp_path)
    added = raw_data_version(project / "data" / "raw")
    # a file lands after the last `dvc repro`: ingestion versions the folder before reading it
    (project / "data" / "raw" / "train" / "extra.txt").write_text("a late caption\n")
    run([str(BIN / "dg"), "launch", "--job", "pipeline"], project)  # a terminal, no daemon
    assert raw_data_version(project / "data" / "raw") != added
    assert "Data and pipelines are up to date" in dvc_status(project)

    monkeypatch.chdir(project)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    params = project / "params.yaml"
    values = yaml.safe_load(params.read_text())
    values["train"]["lr"] = 0.003
    params.write_text(yaml.safe_dump(values, sort_keys=False))
    with dg.DagsterInstance.ephemeral() as instance:
        # the train stage is training_plan + trained_model: both, or it stays behind
        assert run_assets(params, instance, "training_plan") == []
        assert run_assets(params, instance, "training_plan,trained_model") == [
            "dvc commit params train"
        ]
        status = dvc_status(project)
        assert "evaluate:" in status and "registry:" in status
        assert "train:" not in status and "encode:" not in status

        # a DVC stage's own run (tagged by `dagster_project.cli.materialize`) is left alone
        assert run_assets(params, instance, "evaluation", **{DVC_STAGE_TAG: "evaluate"}) == []
        assert "evaluate:" in dvc_status(project)

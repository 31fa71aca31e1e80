"""DVC in step with runs started from Dagster: after a whole-pipeline run `dvc status` has
nothing to do; after a partial one it names exactly the stages left behind. The raw folder is
versioned by ingestion, and a DVC stage's own runs are left to `dvc repro`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster as dg
import pytest
import yaml

from dagster_project.definitions import build_definitions
from dagster_project.shell.dvc.stages import stage_assets
from dagster_project.shell.dvc.sync import DVC_STAGE_TAG, raw_data_version, sync_run
from tests.e2e.conftest import BIN, copy_demo, run

pytestmark = pytest.mark.slow


def run_assets(params: Path, instance: dg.DagsterInstance, selection: str | None = None) -> str:
    """Materialize in-process (as the UI's run worker does) and sync DVC as the sensor does."""
    defs = build_definitions(str(params))
    if selection is None:  # the pipeline job, as the sensor and the schedule launch it
        result = defs.resolve_job_def("pipeline").execute_in_process(instance=instance)
    else:
        keys = [dg.AssetKey(k) for k in selection.split(",")]
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, asset_selection=keys)
    assert result.success
    return sync_run(
        instance, result.dagster_run, stage_assets(defs.resolve_asset_graph()), params.parent
    )


def dvc_status(root: Path) -> str:
    return run([str(BIN / "dvc"), "status"], root)


def test_dagster_runs_keep_dvc_in_step(
    demo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_demo(demo_project, tmp_path)
    added = raw_data_version(tmp_path / "data" / "raw")
    # a file lands after the last `dvc repro`: ingestion versions the folder before reading it
    (tmp_path / "data" / "raw" / "train" / "extra.txt").write_text("a late caption\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{BIN}:{subprocess.os.environ['PATH']}")
    params = tmp_path / "params.yaml"
    with dg.DagsterInstance.ephemeral() as instance:
        said = run_assets(params, instance)
        assert said.endswith("dvc commit model ingest encode train evaluate registry")
        assert raw_data_version(tmp_path / "data" / "raw") != added
        assert "Data and pipelines are up to date" in dvc_status(tmp_path)

        # the sensor the daemon runs after such a run says (and does) the same
        [run_record] = instance.get_run_records(limit=1)
        event = (
            instance.get_records_for_run(
                run_id=run_record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS
            )
            .records[0]
            .event_log_entry.dagster_event
        )
        defs = build_definitions(str(params))
        sensor = defs.resolve_sensor_def("dvc_commit_on_success")
        with dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=run_record.dagster_run,
            repository_def=defs.get_repository_def(),  # as the daemon evaluates it
        ) as context:
            said = sensor(context).skip_message
        assert said.endswith("model ingest encode train evaluate registry")

        values = yaml.safe_load(params.read_text())
        values["train"]["lr"] = 0.003
        params.write_text(yaml.safe_dump(values, sort_keys=False))
        # the train stage is training_plan + trained_model: both, or it stays behind
        said = run_assets(params, instance, "training_plan,trained_model")
        assert said.endswith("dvc commit train")
        status = dvc_status(tmp_path)
        assert "evaluate:" in status and "registry:" in status
        assert "train:" not in status and "encode:" not in status

        # a DVC stage's own run (tagged by `dagster_project.cli.materialize`) is left alone
        staged = build_definitions(str(params)).resolve_implicit_global_asset_job_def()
        result = staged.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("evaluation")],
            tags={DVC_STAGE_TAG: "evaluate"},
        )
        stages = stage_assets(build_definitions(str(params)).resolve_asset_graph())
        assert "recorded by dvc repro" in sync_run(instance, result.dagster_run, stages, tmp_path)

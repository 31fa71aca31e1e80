"""Retraining automation: a sensor for new videos and a schedule."""

from __future__ import annotations

import dagster as dg

from dagster_project.dataset.ingest import VIDEO_SUFFIXES
from dagster_project.dvc_stages import stage_assets
from dagster_project.dvc_sync import sync_run
from dagster_project.hashing import stat_fingerprint
from dagster_project.params import Params, load_params
from dagster_project.resources import ParamsResource, default_params_path

pipeline_job = dg.define_asset_job("pipeline", selection=dg.AssetSelection.all())


def video_fingerprint(p: Params) -> tuple[int, str]:
    """(count, digest) of the video files under data.raw_dir: names, sizes and mtimes."""
    raw_dir = p.path(p.data.raw_dir)
    files = raw_dir.rglob("*") if raw_dir.is_dir() else []
    found = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file()]
    return len(found), stat_fingerprint(raw_dir, found)


def new_videos_sensor(interval_seconds: int) -> dg.SensorDefinition:
    """Request one pipeline run whenever the set of videos under data.raw_dir changes."""

    @dg.sensor(
        job=pipeline_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def new_videos(context: dg.SensorEvaluationContext, params: ParamsResource):
        count, digest = video_fingerprint(params.load())
        if context.cursor == digest:
            return dg.SkipReason(f"no new videos ({count} known)")
        context.update_cursor(digest)
        return dg.RunRequest(run_key=digest, tags={"videos": str(count)})

    return new_videos


def retrain_schedule(cron: str) -> dg.ScheduleDefinition:
    """Retrain on a fixed cadence (automation.retrain_cron), whatever the sensor saw."""
    return dg.ScheduleDefinition(
        name="retrain",
        job=pipeline_job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )


def dvc_sync_sensor(status: dg.DagsterRunStatus) -> dg.SensorDefinition:
    """After a run ends with `status`, `dvc commit` the stages it materialized whole (runs of a
    DVC stage excepted: `dvc repro` records those), so DVC stays in step with the UI."""

    @dg.run_status_sensor(
        run_status=status,
        name=f"dvc_commit_on_{status.value.lower()}",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def dvc_commit(context: dg.RunStatusSensorContext) -> dg.SkipReason:
        from dagster_project.definitions import build_definitions  # the module imports this one

        params_path = default_params_path()
        stages = stage_assets(build_definitions(params_path))
        root = load_params(params_path).root.resolve()
        return dg.SkipReason(sync_run(context.instance, context.dagster_run, stages, root))

    return dvc_commit

"""The new-videos sensor requests one run for new videos, none on the next tick."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from dagster_project.definitions import build_definitions
from dagster_project.resources import ParamsResource


def tick(project: Path, cursor: str | None) -> dg.SensorResult | dg.RunRequest | dg.SkipReason:
    sensor = build_definitions(str(project)).resolve_sensor_def("new_videos")
    context = dg.build_sensor_context(
        cursor=cursor, resources={"params": ParamsResource(path=str(project))}
    )
    result = sensor(context)
    return result, context.cursor


def test_one_run_for_new_videos_then_none(project: Path) -> None:
    first, cursor = tick(project, None)
    assert isinstance(first, dg.RunRequest)
    assert first.tags["videos"] == "14"

    second, same = tick(project, cursor)
    assert isinstance(second, dg.SkipReason)
    assert same == cursor

    raw = project.parent / "data" / "raw"
    shutil.copy(raw / "train" / "life_square.mp4", raw / "train" / "life_copy.mp4")
    third, newer = tick(project, cursor)
    assert isinstance(third, dg.RunRequest)
    assert third.tags["videos"] == "15"
    assert third.run_key != first.run_key and newer != cursor
    assert isinstance(tick(project, newer)[0], dg.SkipReason)


def test_sensor_and_schedule_target_the_pipeline(project: Path) -> None:
    defs = build_definitions(str(project))
    assert defs.resolve_schedule_def("retrain").cron_schedule == "0 3 * * 0"
    assert defs.resolve_sensor_def("new_videos").job_name == "pipeline"
    job = defs.resolve_job_def("pipeline")
    assert job.asset_layer.executable_asset_keys >= {dg.AssetKey("evaluation")}

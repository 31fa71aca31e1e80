"""Retraining when data lands: the `new_data` sensor waits for uploads to settle, counts what
changed since its last run against the rule, and asks for one run per settled change; the
`retrain` schedule runs only when the raw folder changed since the last trained model."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import yaml

from dagster_project.dataset.arrivals import RAW_FINGERPRINT
from dagster_project.definitions import build_definitions
from dagster_project.shell.resources import ParamsResource
from dagster_project.shell.schedules import raw_fingerprint

SETTLE = 0.5


class Sensor:
    """The sensor ticking as the daemon would, its cursor carried over."""

    def __init__(self, project: Path, instance: dg.DagsterInstance, **rule: object) -> None:
        values = yaml.safe_load(project.read_text())
        values["automation"].update(settle_seconds=SETTLE, **rule)
        project.write_text(yaml.safe_dump(values, sort_keys=False))
        self.project, self.instance, self.cursor = project, instance, None

    def tick(self) -> dg.RunRequest | dg.SkipReason:
        sensor = build_definitions(str(self.project)).resolve_sensor_def("new_data")
        # as a context manager: it holds the instance's context, and must hand it back
        with dg.build_sensor_context(
            cursor=self.cursor,
            resources={"params": ParamsResource(path=str(self.project))},
            instance=self.instance,
        ) as context:
            result = sensor(context)
            self.cursor = context.cursor
        return result

    def settled_tick(self) -> dg.RunRequest | dg.SkipReason:
        """Wait out the settle time and tick; files it sees changing wait for one more tick."""
        time.sleep(SETTLE + 0.1)
        result = self.tick()
        if isinstance(result, dg.SkipReason) and "waiting for" in result.skip_message:
            result = self.tick()
        return result


@contextmanager
def temporary_instance(folder: Path) -> Iterator[dg.DagsterInstance]:
    """A persistent instance in `folder` (schedules read theirs by reference)."""
    with dg.DagsterInstance.from_config(str(folder)) as instance:
        yield instance


def age(raw: Path) -> None:
    """Make every file look as if written a minute ago (the sample data is fresh)."""
    past = time.time() - 60
    for path in raw.rglob("*"):
        os.utime(path, (past, past))


def test_one_run_per_settled_change_that_is_enough(project: Path, tmp_path: Path) -> None:
    with temporary_instance(tmp_path) as instance:
        raw = project.parent / "data" / "raw"
        age(raw)
        sensor = Sensor(project, instance, min_new_clips=2, on_caption_change=True)
        assert "waiting for" in sensor.tick().skip_message  # a first look: nothing is settled yet
        first = sensor.tick()
        assert isinstance(first, dg.RunRequest) and first.tags["clips"] == "14"
        assert "not enough" in sensor.tick().skip_message  # nothing new: no second run

        # an upload in progress waits, whatever else is there
        slow = raw / "train" / "slow.mp4"
        data = (raw / "train" / "life_square.mp4").read_bytes()
        slow.write_bytes(data[: len(data) // 2])
        assert "slow.mp4" in sensor.tick().skip_message
        slow.write_bytes(data + b"\0")  # the rest arrives (another size than the original)
        shutil.copy(raw / "train" / "life_square.txt", raw / "train" / "slow.txt")
        result = sensor.settled_tick()
        assert "1 new" in result.skip_message and "not enough" in result.skip_message  # 1 < 2

        shutil.copy(raw / "train" / "mandelbrot_square.mp4", raw / "train" / "second.mp4")
        result = sensor.settled_tick()
        assert isinstance(result, dg.RunRequest) and result.tags["clips"] == "16"
        assert result.tags["change"].startswith("2 new")

        # a caption edit alone retrains (automation.on_caption_change)
        (raw / "train" / "slow.txt").write_text("a slow upload of cellular life\n")
        assert isinstance(sensor.settled_tick(), dg.RunRequest)

        # back to an earlier state: the two clips go, a change like any other
        for name in ("slow.mp4", "slow.txt", "second.mp4"):
            (raw / "train" / name).unlink()
        result = sensor.settled_tick()
        assert isinstance(result, dg.RunRequest) and result.tags["clips"] == "14"
        assert (
            result.run_key != first.run_key
        )  # same folder as the first run, a new run all the same


def test_caption_changes_alone_wait_when_the_rule_says_so(project: Path, tmp_path: Path) -> None:
    with temporary_instance(tmp_path) as instance:
        raw = project.parent / "data" / "raw"
        age(raw)
        sensor = Sensor(project, instance, on_caption_change=False)
        sensor.tick()
        assert isinstance(sensor.tick(), dg.RunRequest)
        (raw / "train" / "life_square.txt").write_text("conway's life, again\n")
        assert "1 caption/metadata file(s) changed" in sensor.settled_tick().skip_message


def test_the_schedule_retrains_only_when_the_raw_folder_changed(
    project: Path, tmp_path: Path
) -> None:
    schedule = build_definitions(str(project)).resolve_schedule_def("retrain")
    assert schedule.cron_schedule == "0 3 * * 0" and schedule.job_name == "pipeline"
    resources = {"params": ParamsResource(path=str(project))}
    with temporary_instance(tmp_path) as instance:

        def evaluate() -> dg.RunRequest | dg.SkipReason:
            with dg.build_schedule_context(instance=instance, resources=resources) as context:
                return schedule(context)

        assert isinstance(evaluate(), dg.RunRequest)  # no trained model yet
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "trained_model", metadata={RAW_FINGERPRINT: raw_fingerprint(str(project))}
            )
        )
        assert "nothing changed" in evaluate().skip_message  # trained on exactly this data
        raw = project.parent / "data" / "raw" / "train"
        shutil.copy(raw / "life_square.mp4", raw / "life_copy.mp4")
        assert isinstance(evaluate(), dg.RunRequest)


def test_the_sensor_targets_the_pipeline(project: Path) -> None:
    defs = build_definitions(str(project))
    assert defs.resolve_sensor_def("new_data").job_name == "pipeline"
    job = defs.resolve_job_def("pipeline")
    assert job.asset_layer.executable_asset_keys >= {dg.AssetKey("evaluation")}


def test_changes_while_a_run_waits_in_the_queue_coalesce(project: Path, tmp_path: Path) -> None:
    with temporary_instance(tmp_path) as instance:
        raw = project.parent / "data" / "raw"
        age(raw)
        sensor = Sensor(project, instance)
        sensor.tick()
        assert isinstance(sensor.tick(), dg.RunRequest)
        job = build_definitions(str(project)).resolve_job_def("pipeline")
        instance.create_run_for_job(job, status=dg.DagsterRunStatus.NOT_STARTED)  # waiting
        shutil.copy(raw / "train" / "life_square.mp4", raw / "train" / "life_copy.mp4")
        assert "a queued pipeline run will read them" in sensor.settled_tick().skip_message
        assert "not enough" in sensor.settled_tick().skip_message  # and it is not asked again


def test_switched_on_after_a_run_on_this_very_folder_it_waits_for_news(
    project: Path, tmp_path: Path
) -> None:
    age(project.parent / "data" / "raw")
    with temporary_instance(tmp_path) as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                "trained_model", metadata={RAW_FINGERPRINT: raw_fingerprint(str(project))}
            )
        )
        sensor = Sensor(project, instance)
        sensor.tick()
        assert "not enough" in sensor.tick().skip_message  # no retraining of the same data

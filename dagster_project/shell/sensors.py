"""Sensors: retraining when data lands, and releasing runs that died holding a pool slot.

Why a sensor and not Declarative Automation: the raw folder lives outside Dagster, so something
must observe it either way (an observable source asset would need the same settle logic), and
the rule here is a small state machine (wait until uploads settle, then count what changed since
the last run against `automation.min_new_clips`) that a sensor cursor holds plainly; one
settled change gives one `pipeline` run, and the `training` pool keeps runs from overlapping.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from dagster_project.dataset.arrivals import changes, fingerprint, observe, unsettled
from dagster_project.dataset.ingest import is_video
from dagster_project.shell.jobs import pipeline_job
from dagster_project.shell.recorded import trained_on
from dagster_project.shell.resources import ParamsResource
from dagster_project.shell.stale_runs import release_dead_runs


def new_data_sensor(interval_seconds: int) -> dg.SensorDefinition:
    """One `pipeline` run per settled change under data.raw_dir that is enough to retrain."""

    @dg.sensor(
        job=pipeline_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def new_data(context: dg.SensorEvaluationContext, params: ParamsResource):
        p = params.load()
        rule = p.automation
        state = json.loads(context.cursor) if context.cursor else {}
        current = observe(p.path(p.data.raw_dir))
        waiting = unsettled(state.get("seen"), current, time.time_ns(), rule.settle_seconds)
        state["seen"] = current
        if "baseline" not in state and trained_on(context.instance) == fingerprint(current):
            state["baseline"] = current  # switched on after a run on exactly this folder
        change = changes(state.get("baseline", {}), current)
        enough = change.clips >= rule.min_new_clips or (
            rule.on_caption_change and bool(change.caption_files)
        )
        queued = enough and not waiting and bool(queued_runs(context.instance))
        if enough and not waiting:
            state["baseline"] = current
            state["runs"] = state.get("runs", 0) + (0 if queued else 1)
        context.update_cursor(json.dumps(state))
        if queued:  # coalesce: a run that has not started yet reads the folder as it is then
            return dg.SkipReason(f"{change.describe()}: a queued pipeline run will read them")
        if waiting:
            return dg.SkipReason(
                f"waiting for {len(waiting)} file(s) to settle ({rule.settle_seconds:g} s): "
                + ", ".join(waiting[:5])
            )
        if not enough:
            return dg.SkipReason(
                f"{change.describe()} since the last run: not enough to retrain "
                f"(automation.min_new_clips: {rule.min_new_clips}, on_caption_change: "
                f"{rule.on_caption_change})"
            )
        return dg.RunRequest(
            run_key=f"{state['runs']}-{fingerprint(current)[:16]}",  # a return to an old state too
            tags={"clips": str(sum(map(is_video, current))), "change": change.describe()},
        )

    return new_data


def queued_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """`pipeline` runs waiting in the run queue (not started: they read the data when they do)."""
    waiting = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]
    return instance.get_runs(filters=dg.RunsFilter(job_name=pipeline_job.name, statuses=waiting))


def release_dead_runs_sensor() -> dg.SensorDefinition:
    """Every 30 s in the daemon: runs that died holding a pool slot are marked failed and their
    slots freed (shell/stale_runs.py), so a run waiting for the slot goes on."""

    @dg.sensor(
        name="release_dead_runs",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def release_dead_runs_tick(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        said = release_dead_runs(context.instance)
        return dg.SkipReason("; ".join(said) or "no run died holding a pool slot")

    return release_dead_runs_tick

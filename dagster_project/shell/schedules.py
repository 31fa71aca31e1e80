"""The `retrain` schedule: retrain on a cadence, but only when the raw data changed."""

from __future__ import annotations

import dagster as dg

from dagster_project.core.params import load_params
from dagster_project.dataset.arrivals import fingerprint, observe
from dagster_project.shell.jobs import pipeline_job
from dagster_project.shell.recorded import trained_on
from dagster_project.shell.resources import ParamsResource


def raw_fingerprint(params_path: str) -> str:
    """The fingerprint of everything under data.raw_dir now (names, sizes, times)."""
    p = load_params(params_path)
    return fingerprint(observe(p.path(p.data.raw_dir)))


def retrain_schedule(cron: str) -> dg.ScheduleDefinition:
    """Retrain on automation.retrain_cron, but only when the raw folder changed since the data
    the last trained model saw (its `raw_fingerprint` metadata)."""

    @dg.schedule(
        name="retrain",
        job=pipeline_job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    def retrain(context: dg.ScheduleEvaluationContext, params: ParamsResource):
        if trained_on(context.instance) == raw_fingerprint(params.path):
            return dg.SkipReason("nothing changed under data.raw_dir since the last trained model")
        return dg.RunRequest(run_key=None, tags={"reason": "raw data changed"})

    return retrain

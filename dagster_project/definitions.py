"""The one Definitions object (workspace.yaml, [tool.dagster] and [tool.dg] name this module).

The project's params.yaml is the one in the working folder, or the file named by the
VIDEO_TRAIN_PARAMS environment variable. It is read here only for the automation cadence;
every asset re-reads and re-validates it when it runs. This module only assembles: nothing in
the package imports it but the entry points that load it.
"""

import dagster as dg

from dagster_project.core.params import default_params_path, load_params
from dagster_project.shell import jobs, schedules, sensors
from dagster_project.shell.assets import encode, evaluate, ingest, model, registry, sweep, train
from dagster_project.shell.checks import manifest, training
from dagster_project.shell.dvc.sync import with_dvc_commits
from dagster_project.shell.resources import ParamsResource


def build_definitions(params_path: str) -> dg.Definitions:
    """The asset graph, checks, job, sensors and schedule for the project at `params_path`."""
    cadence = load_params(params_path).automation
    return dg.Definitions(
        assets=with_dvc_commits(
            dg.load_assets_from_modules([model, ingest, encode, train, evaluate, registry, sweep])
        ),
        asset_checks=dg.load_asset_checks_from_modules([manifest, training]),
        jobs=[jobs.pipeline_job],
        sensors=[
            sensors.new_data_sensor(cadence.sensor_interval_seconds),
            sensors.release_dead_runs_sensor(),
        ],
        schedules=[schedules.retrain_schedule(cadence.retrain_cron)],
        resources={
            "params": ParamsResource(path=params_path),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
        },
        # one process: the multiprocess executor costs seconds per step on small runs
        executor=dg.in_process_executor,
    )


defs = build_definitions(default_params_path())

"""The one Definitions object (workspace.yaml and `dagster ... -m` point here).

The project's params.yaml is the one in the working folder, or the file named by the
VIDEO_TRAIN_PARAMS environment variable. It is read here only for the automation cadence;
every asset re-reads and re-validates it when it runs.
"""

import dagster as dg

from dagster_project import automation, checks
from dagster_project.assets import encode, evaluate, ingest, model, registry, sweep, train
from dagster_project.params import load_params
from dagster_project.resources import ParamsResource, default_params_path


def build_definitions(params_path: str) -> dg.Definitions:
    """The asset graph, checks, job, sensor and schedule for the project at `params_path`."""
    cadence = load_params(params_path).automation
    return dg.Definitions(
        assets=dg.load_assets_from_modules(
            [model, ingest, encode, train, evaluate, registry, sweep]
        ),
        asset_checks=[
            checks.manifest_contract,
            checks.caption_contract,
            train.exposure_guard,
            train.overfitting_verdict,
        ],
        jobs=[automation.pipeline_job],
        sensors=[
            automation.new_data_sensor(cadence.sensor_interval_seconds),
            automation.dvc_sync_sensor(dg.DagsterRunStatus.SUCCESS),
            automation.dvc_sync_sensor(dg.DagsterRunStatus.FAILURE),
        ],
        schedules=[automation.retrain_schedule(cadence.retrain_cron)],
        resources={
            "params": ParamsResource(path=params_path),
            "pipes_subprocess_client": dg.PipesSubprocessClient(),
        },
        # one process: the multiprocess executor costs seconds per step on small runs
        executor=dg.in_process_executor,
    )


defs = build_definitions(default_params_path())

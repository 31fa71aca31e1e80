"""The one Definitions object (workspace.yaml and `dagster ... -m` point here).

params.yaml (or the file named by VIDEO_TRAIN_PARAMS) is read here only for the automation
cadence; every asset re-reads and re-validates it when it runs.
"""

import dagster as dg

from dagster_project import automation, checks
from dagster_project.assets import encode, evaluate, ingest, model, train
from dagster_project.params import load_params
from dagster_project.resources import ParamsResource, default_params_path

_params_path = default_params_path()
_automation = load_params(_params_path).automation

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([model, ingest, encode, train, evaluate]),
    asset_checks=[checks.manifest_contract, train.exposure_guard],
    jobs=[automation.pipeline_job],
    sensors=[automation.new_videos_sensor(_automation.sensor_interval_seconds)],
    schedules=[automation.retrain_schedule(_automation.retrain_cron)],
    resources={
        "params": ParamsResource(path=_params_path),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    },
    # one process: the multiprocess executor costs seconds per step on small runs
    executor=dg.in_process_executor,
)

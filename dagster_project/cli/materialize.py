"""`python -m dagster_project.cli.materialize KEY[,KEY...]`: materialize assets, with their checks,
on the project's Dagster instance: what every DVC stage runs.

The same materialization as `dagster asset materialize` (the same definitions and instance, so
runs show in the UI and the `training` pool holds a second training until the first is done),
without its cost here: that command now prints a deprecation warning (superseded by `dg
launch`, from the separate dagster-dg-cli package) and every engine event at DEBUG level. This
prints progress and errors, and exits non-zero when a step or a blocking check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import dagster as dg

from dagster_project.shell.dvc.sync import DVC_STAGE_TAG
from dagster_project.shell.resources import PARAMS_ENV, default_params_path

# the repository's instance (its dagster.yaml sets the pool limits) unless DAGSTER_HOME names one
REPO_HOME = Path(__file__).resolve().parents[2] / "dagster_home"
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "keys", help="comma-separated asset keys, e.g. base_model or videos,manifest"
    )
    parser.add_argument("--params", default=default_params_path(), help="params.yaml to use")
    args = parser.parse_args(argv)
    # Dagster flags its own preview APIs (Pipes' writer count) on every run: nothing to act on
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    os.environ.setdefault("DAGSTER_HOME", str(REPO_HOME))
    os.environ[PARAMS_ENV] = args.params  # the definitions module reads it when imported
    from dagster_project.definitions import build_definitions

    defs = build_definitions(args.params)
    job = defs.resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey(key.strip()) for key in args.keys.split(",")]
    unknown = [k.to_user_string() for k in keys if k not in job.asset_layer.executable_asset_keys]
    if unknown:
        print(f"unknown asset(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    with dg.DagsterInstance.get() as instance:
        # a DVC stage's run: DVC records it, the dvc_sync sensors leave it alone
        tags = {DVC_STAGE_TAG: os.environ["DVC_STAGE"]} if "DVC_STAGE" in os.environ else {}
        result = job.execute_in_process(
            instance=instance,
            asset_selection=keys,
            run_config=QUIET,
            raise_on_error=False,
            tags=tags,
        )
    failed = [e for e in result.all_events if e.is_step_failure]
    for event in failed:
        error = event.step_failure_data.error
        print(f"{event.step_key} failed: {error.message.strip() if error else ''}", file=sys.stderr)
    checks = [c for c in result.get_asset_check_evaluations() if not c.passed]
    for check in checks:
        print(f"check {check.check_name} ({check.severity.value}): {check.description}")
    print(f"{'done' if result.success else 'FAILED'}: {args.keys} ({result.run_id})")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())

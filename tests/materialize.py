"""Run the project's assets in-process, as the UI does (for tests/shell and tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_project.definitions import build_definitions


def materialize(params_path: Path, selection: str | None = None) -> dg.ExecuteInProcessResult:
    """Run the project's assets (and their checks) in-process against `params_path`.

    `selection` is a comma-separated list of asset keys, as on the CLI; None runs the
    `pipeline` job (everything but the on-demand exposure sweep).
    """
    defs = build_definitions(str(params_path))
    if selection is None:
        return defs.resolve_job_def("pipeline").execute_in_process(raise_on_error=False)
    job = defs.resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey(k) for k in selection.split(",")]
    return job.execute_in_process(asset_selection=keys, raise_on_error=False)

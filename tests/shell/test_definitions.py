"""The definitions: loading stops on invalid params, every asset refuses them before it writes,
and the on-demand sweep stays out of the pipeline job and dvc.yaml."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from dagster_project.core.params import ParamsError
from dagster_project.definitions import build_definitions
from dagster_project.shell.dvc.stages import render


def test_invalid_params_stop_loading_and_every_asset_before_it_writes(project: Path) -> None:
    defs = build_definitions(str(project))  # loads while params.yaml is valid
    bad = yaml.safe_load(project.read_text())
    bad["train"]["steps"] = -1
    project.write_text(yaml.safe_dump(bad))
    with pytest.raises(ParamsError, match="train.steps: Input should be greater than 0"):
        build_definitions(str(project))
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        asset_selection=[dg.AssetKey("videos")], raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "train.steps: Input should be greater than 0" in str(failure.event_specific_data.error)
    assert not (project.parent / "data" / "videos.parquet").exists()


def test_the_sweep_is_on_demand_only(project: Path) -> None:
    defs = build_definitions(str(project))
    pipeline = defs.resolve_job_def("pipeline")
    keys = {node.name for node in pipeline.graph.node_defs}
    assert "trained_model" in " ".join(keys) and "exposure_sweep" not in " ".join(keys)
    assert "sweep" not in render(defs.resolve_asset_graph())["stages"]
    assert dg.AssetKey("exposure_sweep") in defs.resolve_asset_graph().get_all_asset_keys()

"""dvc.yaml and the asset graph agree: one stage per asset group, rendered from the assets."""

from __future__ import annotations

import dagster as dg
import yaml

from dagster_project.definitions import build_definitions
from dagster_project.shell.dvc.stages import render, render_text
from tests.conftest import REPO


def test_committed_dvc_yaml_is_rendered_from_the_asset_graph() -> None:
    defs = build_definitions(str(REPO / "params.yaml"))
    assert (REPO / "dvc.yaml").read_text() == render_text(defs.resolve_asset_graph())


def test_every_asset_is_in_exactly_one_stage_after_its_upstream() -> None:
    defs = build_definitions(str(REPO / "params.yaml"))
    graph = defs.resolve_asset_graph()
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    checked = stages.pop("params")  # first, and every other stage depends on its marker
    assert list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])[0] == "params"
    [marker] = [next(iter(out)) for out in checked["outs"]]
    assert all(marker in stage["deps"] for stage in stages.values())
    stage_of = {}
    for position, stage in enumerate(stages.values()):
        for key in stage["cmd"].split("dagster_project.cli.materialize ")[1].split(","):
            assert dg.AssetKey(key) not in stage_of, f"{key} is in two stages"
            stage_of[dg.AssetKey(key)] = position
    # every asset but the on-demand exposure sweep
    assert set(stage_of) == set(graph.get_all_asset_keys()) - {dg.AssetKey("exposure_sweep")}
    for key in stage_of:
        for parent in graph.get(key).parent_keys:
            assert stage_of[parent] <= stage_of[key], f"{parent} runs after {key}"


def test_stage_deps_are_the_outs_of_upstream_stages() -> None:
    stages = render(build_definitions(str(REPO / "params.yaml")).resolve_asset_graph())["stages"]
    assert "${data.manifest}" in stages["encode"]["deps"]
    assert "${data.rejects}" not in stages["encode"]["deps"]  # rejects do not feed training
    assert "${train.output_dir}/model" in stages["evaluate"]["deps"]
    assert {"${data.cache_dir}": {"persist": True, "cache": False}} in stages["encode"]["outs"]
    assert "train" in stages["train"]["params"] and "train.steps" not in stages["train"]["params"]

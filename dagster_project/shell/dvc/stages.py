"""dvc.yaml from the asset graph: one stage per Dagster group, running the same materialization.

Each asset declares what DVC must know of it (declare.py). `render` turns the graph into
dvc.yaml: each stage's
command materializes its group's assets with their checks (so a DVC run and a UI run execute
the same code); its deps are the outs of the stages it depends on and its code, computed from
the imports of its assets' and checks' modules (`code_deps`), never listed by hand.
`python -m dagster_project.cli.dvc_yaml` writes it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import yaml

from dagster_project.core.paths import EvalOutputs, TrainOutputs
from dagster_project.shell.dvc import params_stage
from dagster_project.shell.dvc.code_deps import PACKAGE_DIR, ImportGraph
from dagster_project.shell.dvc.declare import declared, is_staged

if TYPE_CHECKING:  # what Definitions.resolve_asset_graph() and a repository's asset_graph are
    from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph

COMMAND = "python -m dagster_project.cli.materialize {keys}"
PLOT_AXES = {
    TrainOutputs.loss_csv.name: ("step", "loss"),
    EvalOutputs.evaluations_csv.name: ("step", "val_loss"),
    # dvclive's per-step curves: one value column, named as the file
    **{Path(curve).name: ("step", Path(curve).stem) for curve in TrainOutputs.LIVE_CURVES},
}
HEADER = (
    "# Generated from the asset graph by `python -m dagster_project.cli.dvc_yaml`; do not edit.\n"
)


def _plot(path: str) -> dict:
    """A plot's DVC settings: a table's axes, or an image (`dvc plots show` shows it as is)."""
    if path.endswith(".png"):
        return {"cache": False, "persist": True}
    x, y = PLOT_AXES[Path(path).name]
    return {"cache": False, "persist": True, "x": x, "y": y}


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _sections_first(keys: list[str]) -> list[str]:
    """Unique params keys, dropping `train.steps` when the whole `train` section is listed."""
    keys = _unique(keys)
    return [k for k in keys if not any(k.startswith(f"{other}.") for other in keys)]


def asset_groups(graph: BaseAssetGraph, staged: bool = False) -> dict[str, list[dg.AssetKey]]:
    """The assets of each group, groups and assets in pipeline order; with `staged`, only the
    assets that declare DVC outputs (not the on-demand exposure sweep)."""
    order = [
        key
        for key in graph.toposorted_asset_keys
        if not staged or is_staged(graph.get(key).metadata)
    ]
    group_of = {key: graph.get(key).group_name for key in order}
    return {
        group: [key for key in order if group_of[key] == group]
        for group in _unique([group_of[key] for key in order])
    }


def stage_assets(graph: BaseAssetGraph) -> dict[str, list[dg.AssetKey]]:
    """The assets of each dvc.yaml stage (one per asset group), stages in pipeline order."""
    return asset_groups(graph, staged=True)


def stage_modules(graph: BaseAssetGraph, keys: list[dg.AssetKey]) -> set[str]:
    """The modules that define the assets `keys` and the checks on them."""
    checks = graph.get_check_keys_for_assets(set(keys))
    return {
        inspect.getmodule(graph.assets_def_for_key(key).op.compute_fn.decorated_fn).__name__
        for key in [*keys, *checks]
    }


def render(graph: BaseAssetGraph, code: ImportGraph | None = None) -> dict:
    """The dvc.yaml document for the assets of `graph`."""
    code = code or ImportGraph()
    order = graph.toposorted_asset_keys
    meta = {key: graph.get(key).metadata for key in order}
    group_of = {key: graph.get(key).group_name for key in order}

    def field(key: dg.AssetKey, name: str) -> list[str]:
        return declared(meta[key], name)

    checked = params_stage.stage(
        code.paths(code.reachable([params_stage.COMMAND.split()[-1]]), PACKAGE_DIR.parent)
    )
    stages: dict[str, dict] = {params_stage.STAGE: checked}
    for group, keys in stage_assets(graph).items():
        parents = {parent for key in keys for parent in graph.get(key).parent_keys}
        upstream = [key for key in order if key in parents and group_of[key] != group]
        modules = code.reachable(stage_modules(graph, keys))
        deps = code.paths(modules, PACKAGE_DIR.parent)
        deps += [d for key in keys for d in field(key, "deps")]
        deps.append(params_stage.MARKER)  # after the params are checked
        # the cache itself is no dep: the indexes (outs) pin its content-addressed entries
        deps += [
            o
            for parent in upstream
            for o in field(parent, "outs") + field(parent, "keep") + field(parent, "plots")
        ]
        outs: list = [o for key in keys for o in field(key, "outs")]
        outs += [{p: {"persist": True}} for key in keys for p in field(key, "keep")]
        outs += [
            {p: {"persist": True, "cache": False}}
            for p in _unique([p for key in keys for p in field(key, "persist")])
        ]
        stage: dict = {
            "cmd": COMMAND.format(keys=",".join(key.to_user_string() for key in keys)),
            "deps": _unique(deps),
            "params": _sections_first([p for key in keys for p in field(key, "params")]),
            "outs": outs,
        }
        metrics = [m for key in keys for m in field(key, "metrics")]
        if metrics:
            stage["metrics"] = [{m: {"cache": False}} for m in metrics]
        plots = [m for key in keys for m in field(key, "plots")]
        if plots:
            stage["plots"] = [{p: _plot(p)} for p in plots]
        stages[group] = stage
    return {"stages": stages}


def render_text(graph: BaseAssetGraph) -> str:
    return HEADER + yaml.safe_dump(render(graph), sort_keys=False, width=100)

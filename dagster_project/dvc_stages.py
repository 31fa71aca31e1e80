"""Render dvc.yaml from the asset graph: one stage per Dagster group, the same materialization.

Each stage's command materializes its group's assets with the Dagster CLI (so a DVC run and a UI
run execute the same code, asset checks included); its outs, params, metrics and plots come
from the assets' `dvc/*` metadata, its deps from the outs of the assets it depends on.

    python -m dagster_project.dvc_stages > dvc.yaml     # regenerate
    python -m dagster_project.dvc_stages --check        # exit 1 if dvc.yaml is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import yaml

from dagster_project.paths import EvalOutputs, TrainOutputs

COMMAND = "python -m dagster_project.materialize {keys}"
PLOT_AXES = {
    TrainOutputs.LOSS_CSV: ("step", "loss"),
    EvalOutputs.EVALUATIONS_CSV: ("step", "val_loss"),
    # dvclive's per-step curves: one value column, named as the file
    **{Path(curve).name: ("step", Path(curve).stem) for curve in TrainOutputs.LIVE_CURVES},
}
HEADER = (
    "# Generated from the asset graph by `python -m dagster_project.dvc_stages`; do not edit.\n"
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


def asset_groups(defs: dg.Definitions, staged: bool = False) -> dict[str, list[dg.AssetKey]]:
    """The assets of each group, groups and assets in pipeline order; with `staged`, only the
    assets that declare DVC outputs (not the on-demand exposure sweep)."""
    graph = defs.resolve_asset_graph()
    order = [
        key
        for key in graph.toposorted_asset_keys
        if not staged or "dvc/outs" in graph.get(key).metadata
    ]
    group_of = {key: graph.get(key).group_name for key in order}
    return {
        group: [key for key in order if group_of[key] == group]
        for group in _unique([group_of[key] for key in order])
    }


def stage_assets(defs: dg.Definitions) -> dict[str, list[dg.AssetKey]]:
    """The assets of each dvc.yaml stage (one per asset group), stages in pipeline order."""
    return asset_groups(defs, staged=True)


def render(defs: dg.Definitions) -> dict:
    """The dvc.yaml document for the assets of `defs`."""
    graph = defs.resolve_asset_graph()
    order = graph.toposorted_asset_keys
    meta = {key: graph.get(key).metadata for key in order}
    group_of = {key: graph.get(key).group_name for key in order}

    def field(key: dg.AssetKey, name: str) -> list[str]:
        return list(meta[key].get(f"dvc/{name}", []))

    stages: dict[str, dict] = {}
    for group, keys in stage_assets(defs).items():
        parents = {parent for key in keys for parent in graph.get(key).parent_keys}
        upstream = [key for key in order if key in parents and group_of[key] != group]
        deps = [d for key in keys for d in field(key, "code") + field(key, "deps")]
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


def render_text(defs: dg.Definitions) -> str:
    return HEADER + yaml.safe_dump(render(defs), sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    from dagster_project.definitions import defs

    text = render_text(defs)
    if "--check" in argv:
        if Path("dvc.yaml").read_text() != text:
            print("dvc.yaml is out of date: python -m dagster_project.dvc_stages > dvc.yaml")
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

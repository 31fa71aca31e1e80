"""How an asset shows up in its DVC stage: declared once, on the asset, as metadata.

The paths an asset writes and reads are params.yaml keys whose values are paths
(`${data.manifest}`), so dvc.yaml and the assets read the same settings. `stages.render`
reads these declarations; a stage's code deps are not declared but computed from the imports
of its asset modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIELDS = ("outs", "params", "deps", "metrics", "plots", "persist", "keep")


def dvc_metadata(
    outs: list[str],
    params: list[str],
    deps: list[str] = (),
    metrics: list[str] = (),
    plots: list[str] = (),
    persist: list[str] = (),
    keep: list[str] = (),
) -> dict[str, list[str]]:
    """Asset-definition metadata naming what the asset writes and reads, for dvc.yaml.

    Paths are `${params.key}` templates or literal paths; `deps` lists extra inputs that are not
    another asset's outs (the raw videos), `persist` outs that DVC must keep between runs (the
    incremental caches; not copied into DVC's cache), which are nobody's deps unless an asset
    lists them in `deps`; `keep` outs that DVC must not delete before the stage runs but still
    caches (the trained model: a run that fails keeps the last one). Plots are kept too:
    dvclive appends to its curves when a run resumes. The code is not declared: `render`
    follows the asset module's imports.
    """
    values = (outs, params, deps, metrics, plots, persist, keep)
    return {f"dvc/{name}": list(value) for name, value in zip(FIELDS, values, strict=True)}


def declared(metadata: Mapping[str, Any], name: str) -> list[str]:
    """The paths (or params keys) an asset's metadata declares as `name` (one of FIELDS)."""
    return list(metadata.get(f"dvc/{name}", []))


def is_staged(metadata: Mapping[str, Any]) -> bool:
    """Whether an asset declared itself for DVC (the on-demand sweep does not)."""
    return "dvc/outs" in metadata

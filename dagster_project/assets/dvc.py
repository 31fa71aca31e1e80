"""How an asset shows up as a DVC stage: declared once, on the asset, as metadata.

Every asset of a Dagster group becomes one DVC stage (the stage is the group); its outs are
params.yaml keys whose values are paths, so dvc.yaml and the assets read the same settings.
`dagster_project.dvc_stages` renders dvc.yaml from these declarations and the asset graph.
"""

from __future__ import annotations


def dvc_metadata(
    outs: list[str],
    params: list[str],
    deps: list[str] = (),
    code: list[str] = (),
    metrics: list[str] = (),
    plots: list[str] = (),
    persist: list[str] = (),
    keep: list[str] = (),
) -> dict[str, list[str]]:
    """Asset-definition metadata naming what the asset writes and reads, for dvc.yaml.

    Paths are `${params.key}` templates or literal paths; `deps` lists extra inputs that are not
    another asset's outs (the raw videos), `code` the core packages the asset runs, `persist`
    outs that DVC must keep between runs (the incremental caches; not copied into DVC's cache),
    which are nobody's deps unless an asset lists them in `deps`; `keep` outs that DVC must not
    delete before the stage runs but still caches (the trained model: a run that fails keeps
    the last one). Plots are kept too: dvclive appends to its curves when a run resumes.
    """
    return {
        "dvc/outs": list(outs),
        "dvc/params": list(params),
        "dvc/deps": list(deps),
        "dvc/code": list(code),
        "dvc/metrics": list(metrics),
        "dvc/plots": list(plots),
        "dvc/persist": list(persist),
        "dvc/keep": list(keep),
    }

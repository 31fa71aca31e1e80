"""What a trained model came from: where a run starts (the base, or the promoted version a warm
start continues), and the lineage recorded with the model in the registry (data version,
params, code version, parent, evaluation summary, exposures over the whole lineage).

Free of Dagster: the worker, the training plan and the registry asset use it.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from dagster_project.core.hashing import cache_key, sha256_file
from dagster_project.core.params import Params
from dagster_project.registry.model_registry import ModelRegistry
from dagster_project.registry.records import (
    CodeVersion,
    DataVersion,
    EvaluationSummary,
    Lineage,
    RunStart,
)

PACKAGE = Path(__file__).resolve().parents[1]


def parent_version(init: str, registry: ModelRegistry) -> Lineage | None:
    """The lineage of the promoted version a run continues (`train.init: promoted`), or
    None: `train.init: base`, or nothing promoted yet."""
    return registry.promoted() if init == "promoted" else None


def inherited_exposures(parent: Lineage | None) -> dict[str, int]:
    """Each clip's (sha256) exposures over the lineage of `parent` (none from the base)."""
    return dict(parent.exposures) if parent else {}


def run_start(init: str, registry: ModelRegistry, base_identity: str) -> RunStart:
    """What a run starts from (written as the run's start.json): the base model, or the
    promoted version and the exposures its lineage already made. Refuses a parent trained
    from another base model (its weights do not belong to this one)."""
    parent = parent_version(init, registry)
    if parent is None:
        return RunStart(init=init)
    if parent.base_identity != base_identity:
        raise ValueError(
            f"train.init: promoted: {parent.version} was trained from another base model "
            f"({parent.base_identity[:12]}, this one is {base_identity[:12]}); use train.init: base"
        )
    return RunStart(
        init=init,
        parent=parent.version,
        parent_model=str(registry.model(parent.version)),
        parent_model_sha256=parent.model_sha256,
        inherited_exposures=inherited_exposures(parent),
    )


def code_version() -> CodeVersion:
    """The git commit of the package's checkout (and whether its source differs from it) and
    the hash of its source files, which identifies the code without git too."""
    sources = sorted(PACKAGE.rglob("*.py"))
    source = cache_key(**{str(f.relative_to(PACKAGE)): sha256_file(f) for f in sources})

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", str(PACKAGE))
    return CodeVersion(
        git_commit=commit, git_dirty=bool(dirty) if commit else None, source_sha256=source
    )


def build_lineage(
    p: Params,
    model_sha: str,
    start: RunStart,
    evaluation: EvaluationSummary,
    exposures: dict[str, int],
    contents: dict[str, str],
    raw_dvc_md5: str | None,
    raw_fingerprint: str | None,
    run_id: str | None,
) -> Lineage:
    """The lineage recorded with a trained model (its weights' hash `model_sha`), trained with
    the params `p` (recorded whole): `start` (its start.json), `evaluation`, `exposures`
    (this run's per clip sha256, up to the exported step) and `contents` (each clip's
    near-duplicate group)."""
    params = p.model_dump(mode="json")
    total = dict(start.inherited_exposures)
    for sha, count in exposures.items():
        total[sha] = total.get(sha, 0) + count
    per_content: dict[str, int] = {}
    for sha, count in total.items():  # clips no longer in the data count on their own
        per_content[contents.get(sha, sha)] = per_content.get(contents.get(sha, sha), 0) + count
    return Lineage(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        model_sha256=model_sha,
        base_identity=p.base_model.identity(),
        family=p.model.family,
        mode=p.train.mode,
        init=start.init,
        parent=start.parent,
        parent_model_sha256=start.parent_model_sha256,
        data=DataVersion(
            raw_dvc_md5=raw_dvc_md5,
            raw_fingerprint=raw_fingerprint,
            manifest_sha256=sha256_file(p.path(p.data.manifest)),
            train_clips=len(exposures),
        ),
        params=params,
        params_sha256=cache_key(**params),
        code=code_version(),
        evaluation=evaluation,
        exposures=total,  # per clip sha256; the guard adds a content's clips up
        exposures_max=max(per_content.values(), default=0),  # per content
        dagster_run_id=run_id,
    )

"""Registering a finished run: its model becomes the registry's next version, with its lineage
and the promotion gate's decision (taken before anything is written, so a failure leaves the
registry as it was)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from dagster_project.core.hashing import folder_sha256
from dagster_project.core.params import Params
from dagster_project.dataset.exposure import trained_exposures
from dagster_project.models.families import family_spec
from dagster_project.models.placement import InferencePlacement, process_device
from dagster_project.registry.lineage import build_lineage
from dagster_project.registry.model_registry import ModelRegistry
from dagster_project.registry.promotion import judge_new_model
from dagster_project.registry.records import EvaluationSummary, Lineage, RunStart
from dagster_project.training.data import clip_table


@dataclass(frozen=True)
class RunOrigin:
    """Where the run came from, as the orchestrator recorded it."""

    raw_dvc_md5: str | None  # the raw folder's DVC hash the data was read with
    raw_fingerprint: str | None
    run_id: str | None


def register_run(p: Params, origin: RunOrigin, log: Callable[[str], None] = print) -> Lineage:
    """Register the model the run of `p` exported (params recorded whole in its lineage),
    unless it is registered already; returns its version's lineage."""
    registry = ModelRegistry(p.registry_files)
    trained = p.train_outputs
    model_sha = folder_sha256(trained.model)
    known = registry.find(model_sha)
    if known is not None:  # re-materialized without a new model: nothing to decide
        registry.refresh()  # the views, in case the registration that made it was cut short
        log(f"the model is {known.version} already; nothing to register")
        return known
    if not trained.start.is_file():  # trained by a version before the registry
        raise RuntimeError(f"{trained.start} is missing: materialize trained_model again")
    evaluation = EvaluationSummary.from_metrics(json.loads(p.eval_outputs.metrics.read_text()))
    train = clip_table(p.cache_files, "train")
    per_clip = trained_exposures(train, p.train, evaluation.chosen_step)
    lineage = build_lineage(
        p,
        model_sha=model_sha,
        start=RunStart.read(trained.start),
        evaluation=evaluation,
        exposures=per_clip,
        contents=dict(zip(train["sha256"], train["content"], strict=True)),
        raw_dvc_md5=origin.raw_dvc_md5,
        raw_fingerprint=origin.raw_fingerprint,
        run_id=origin.run_id,
    )
    decision = judge_new_model(
        family_spec(p.model.family, p.base_model, p.train.task, p.train.audio_loss_weight),
        trained.model,
        lineage,
        registry,
        clip_table(p.cache_files, "val"),
        p.eval,
        p.automation.promotion_margin,
        # as training ran: a model that needed the GPU (and its memory switches) to train is
        # scored there too
        InferencePlacement(process_device(0), p.train.memory, p.train.mixed_precision),
    )
    version = registry.register(trained.model, lineage, decision)
    log(f"registered {version.version} (parent: {version.parent or 'base'}): {decision.reason}")
    return version

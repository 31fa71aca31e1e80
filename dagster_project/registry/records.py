"""The registry's records, typed: where a run starts (`start.json`), a registered version's
lineage (`lineage.json`) and the promotion gate's decision.

Each is a `Record` (core/records.py), read and written as the JSON files they have always been,
so every field is named in one place.
"""

from __future__ import annotations

from typing import Any

from dagster_project.core.records import Record


class RunStart(Record):
    """What a training run starts from (the run's start.json): the base model, or the
    promoted version a warm start continues, and the exposures its lineage already made."""

    init: str  # train.init: base | promoted
    parent: str | None = None  # the version continued
    parent_model: str | None = None  # its model folder
    parent_model_sha256: str | None = None
    inherited_exposures: dict[str, int] = {}  # per clip sha256, over the parent's lineage


class DataVersion(Record):
    """The data a model was trained on."""

    raw_dvc_md5: str | None
    raw_fingerprint: str | None
    manifest_sha256: str
    train_clips: int


class CodeVersion(Record):
    """The code a model was trained with: its git commit (and whether the package source
    differed from it) and a hash of the source files, which identifies it without git too."""

    git_commit: str | None
    git_dirty: bool | None
    source_sha256: str


class EvaluationSummary(Record):
    """The run's evaluation, as the lineage keeps it."""

    verdict: str
    val_loss: float | None = None
    chosen_step: int
    last_step: int | None = None
    stopped_early: int | bool | None = None

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> EvaluationSummary:
        """The summary of evaluation's metrics.json."""
        return cls.model_validate({k: metrics.get(k) for k in cls.model_fields})


class Promotion(Record):
    """The gate's decision on a new model, and its figures."""

    promote: bool
    reason: str
    val_loss: float  # the new model's, re-scored now
    verdict: str
    against: str | None = None  # the promoted version it was compared with
    against_val_loss: float | None = None
    against_verdict: str | None = None


class Lineage(Record):
    """What a registered model came from (its version's lineage.json)."""

    created: str
    model_sha256: str
    base_identity: str
    family: str
    mode: str
    init: str
    parent: str | None
    parent_model_sha256: str | None
    data: DataVersion
    params: dict[str, Any]
    params_sha256: str
    code: CodeVersion
    evaluation: EvaluationSummary
    exposures: dict[str, int]  # per clip sha256, over the whole lineage
    exposures_max: int  # per content
    dagster_run_id: str | None
    # set when registered
    version: str = ""
    promoted: bool = False  # whether it was promoted when registered (promoted.json: now)
    promotion: Promotion | None = None


class PromotedPointer(Record):
    """promoted.json: the version promoted now, and why."""

    version: str
    reason: str

"""What a run's in-loop evaluations recorded (`evaluations.json`), typed: the trainer writes it
at the end of a run; the verdict, the evaluation report, the sweep and the registry read it."""

from __future__ import annotations

from typing import Any

from dagster_project.core.paths import TrainOutputs
from dagster_project.core.records import Record


class RunEvaluations(Record):
    """The evaluation history and the model early stopping chose."""

    history: list[dict[str, Any]]  # one row per evaluation, step 0 first
    last_step: int
    chosen_step: int  # the step exported as model/
    stopped_early: bool
    decision: str  # why the model is that step

    @classmethod
    def of(cls, trained: TrainOutputs) -> RunEvaluations:
        """The record of the run under `trained`."""
        if not trained.evaluations.is_file():
            raise RuntimeError(f"{trained.evaluations}: no evaluations recorded; train first")
        return cls.read(trained.evaluations)

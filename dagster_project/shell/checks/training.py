"""Checks around training: the exposure guard before it (blocking) and the overfitting verdict
after it."""

import dagster as dg

from dagster_project.evaluation.verdict import verdict
from dagster_project.shell.assets.train import planned_run, trained_model, training_plan
from dagster_project.shell.resources import ParamsResource
from dagster_project.training.run_evaluations import RunEvaluations


@dg.asset_check(asset=training_plan, blocking=True)
def exposure_guard(params: ParamsResource) -> dg.AssetCheckResult:
    """Fails above guard.max_exposures (ERROR: training is blocked) and above
    guard.warn_exposures (WARN: shown, not blocking)."""
    plan = planned_run(params.load())
    error = plan.verdict == "error"
    return dg.AssetCheckResult(
        passed=plan.verdict == "ok",
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        description=plan.message(),
        metadata={**plan.summary(), "verdict": plan.verdict},
    )


@dg.asset_check(asset=trained_model, blocking=False)
def overfitting_verdict(params: ParamsResource) -> dg.AssetCheckResult:
    """The run's verdict from its in-loop evaluations: WARN for watch, ERROR for overfitting.
    Not blocking: the model and its DVC stage are still recorded, and the UI shows why."""
    p = params.load()
    run = RunEvaluations.of(p.train_outputs)
    judged = verdict(run.history, p.eval)
    return dg.AssetCheckResult(
        passed=judged.level == "healthy",
        severity=dg.AssetCheckSeverity.ERROR
        if judged.level == "overfitting"
        else dg.AssetCheckSeverity.WARN,
        description=f"{judged.message()}. Model: step {run.chosen_step} ({run.decision})",
        metadata={
            "verdict": judged.level,
            "chosen_step": run.chosen_step,
            "last_step": run.last_step,
            **{f"sign_{s.name}": s.value for s in judged.signs},
        },
    )

"""The exposure sweep's reading: the step budget is the best validation loss before the onset."""

from __future__ import annotations

from dagster_project.core.params import GuardParams
from dagster_project.evaluation.sweep import milestone_steps, recommend


def row(step: int, exposures: float, val_loss: float, level: str) -> dict:
    return {"step": step, "exposures": exposures, "val_loss": val_loss, "level": level}


def test_the_recommendation_is_the_best_loss_before_the_onset() -> None:
    rows = [
        row(0, 0.0, 2.0, "healthy"),
        row(10, 5.0, 1.5, "healthy"),
        row(20, 10.0, 1.2, "healthy"),
        row(40, 20.0, 1.3, "healthy"),
        row(50, 25.0, 1.1, "watch"),  # lower, but past the onset
    ]
    advice = recommend(rows, contents=4, step_batch=2, guard=GuardParams(max_exposures=50))
    assert advice["onset_exposures"] == 25.0 and advice["onset_level"] == "watch"
    assert (advice["recommended_steps"], advice["recommended_exposures"]) == (20, 10.0)
    assert advice["guard_limit_over_onset"] == 2.0
    clean = recommend(rows[:4], 4, 2, GuardParams())
    assert clean["onset_exposures"] is None and clean["recommended_steps"] == 20
    assert milestone_steps([5, 10], contents=9, step_batch=2) == [23, 45]

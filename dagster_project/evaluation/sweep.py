"""The exposure sweep: where does this data start to overfit?

The guard's zones (under 10 exposures per video safe, over 50 refused, over 100 risky) are
rules of thumb. The sweep measures the answer on the user's own data: one long training run
(per subset of the training contents, if asked), evaluated in the loop (`RunMonitor`: losses
at fixed noise levels, samples, diversity, memorization) when each content has been seen
`sweep.milestones` times. Early stopping is off: the sweep wants the whole curve.

It reads the signs of overfitting (evaluation.verdict) against exposures per content, finds
the first milestone where one reaches the watch level (the onset), and recommends the best
validation loss before it as the step budget for the full dataset.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable

import polars as pl

from dagster_project.core.atomic import atomic_path, write_json, write_text
from dagster_project.core.params import EvalParams, GuardParams, SweepParams, TrainParams
from dagster_project.core.paths import SweepOutputs
from dagster_project.dataset.exposure import samples_per_step
from dagster_project.evaluation.monitor import RunMonitor
from dagster_project.evaluation.report import plot_sweep, sweep_markdown
from dagster_project.evaluation.verdict import judge, sign_values, worst
from dagster_project.models.spec import ModelSpec
from dagster_project.training.run_evaluations import RunEvaluations
from dagster_project.training.trainer import train


class MilestoneMonitor(RunMonitor):
    """A RunMonitor that evaluates at step 0, at the given steps and at the last step."""

    def __init__(self, *args: object, steps: list[int]) -> None:
        super().__init__(*args)
        self.steps = set(steps)
        self.fingerprint = {**self.fingerprint, "milestone_steps": sorted(self.steps)}

    def due(self, step: int, last_step: int) -> bool:
        return step == 0 or step in self.steps or step == last_step


def milestone_steps(milestones: list[float], contents: int, step_batch: int) -> list[int]:
    """The optimizer step at which each content has been seen `milestone` times on average."""
    return [max(1, math.ceil(m * contents / step_batch)) for m in milestones]


def subset(train: pl.DataFrame, fraction: float) -> pl.DataFrame:
    """The clips of the first `fraction` of the training contents (by content id: a larger
    fraction holds every smaller one)."""
    contents = sorted(train["content"].unique())
    keep = contents[: max(1, math.ceil(fraction * len(contents)))]
    return train.filter(pl.col("content").is_in(keep))


def curve(history: list[dict], contents: int, step_batch: int, cfg: EvalParams) -> list[dict]:
    """One row per evaluation: exposures per content, the losses and the signs, the level."""
    rows = []
    for index, record in enumerate(history):
        signs = sign_values(history, index)
        rows.append(
            {
                "step": record["step"],
                "exposures": record["step"] * step_batch / contents,
                "val_loss": record["val_loss"],
                "train_fixed_loss": record["train_fixed_loss"],
                "gap_growth": signs["gap"],
                "val_loss_rise": signs["val_loss"],
                "diversity_change": record["diversity"] / history[0]["diversity"] - 1
                if history[0]["diversity"]
                else 0.0,
                "memorized_share": signs["memorization"],
                "level": worst(judge(history, index, cfg)),
            }
        )
    return rows


def recommend(
    rows: list[dict], contents: int, step_batch: int, guard: GuardParams
) -> dict[str, float | int | None]:
    """From the full-data curve: the onset of overfitting (the first evaluation past step 0
    at the watch level or worse), the budget (the best validation loss before the onset) in
    exposures and in steps for the full dataset, and the guard's limit over the onset."""
    measured = [r for r in rows if r["step"] > 0]
    onset = next((r for r in measured if r["level"] != "healthy"), None)
    before = [r for r in measured if onset is None or r["step"] < onset["step"]]
    best = min(before, key=lambda r: r["val_loss"]) if before else None
    return {
        "onset_exposures": onset["exposures"] if onset else None,
        "onset_level": onset["level"] if onset else None,
        "recommended_exposures": best["exposures"] if best else None,
        "recommended_steps": best["step"] if best else None,
        "contents": contents,
        "samples_per_step": step_batch,
        "guard_max_exposures": guard.max_exposures,
        "guard_limit_over_onset": guard.max_exposures / onset["exposures"] if onset else None,
    }


def run_sweep(
    cfg: SweepParams,
    train_cfg: TrainParams,
    eval_cfg: EvalParams,
    guard: GuardParams,
    spec: ModelSpec,
    train_clips: pl.DataFrame,
    val_clips: pl.DataFrame,
    out: SweepOutputs,
    log: Callable[[str], None] = print,
) -> dict:
    """Train and evaluate one run per subset (`train_clips` and `val_clips` are clip_tables
    with a `content` column), write the curve, its plot, the report and the recommendation;
    returns the recommendation with the runs' cost."""
    # the sweep trains in this process: one process, whatever train.nproc_per_node says
    one_process = train_cfg.launch.model_copy(update={"nnodes": 1})
    train_cfg = train_cfg.model_copy(update={"nproc_per_node": 1, "launch": one_process})
    step_batch = samples_per_step(train_cfg)
    no_stopping = eval_cfg.early_stopping.model_copy(update={"enabled": False})
    eval_cfg = eval_cfg.model_copy(update={"early_stopping": no_stopping})
    rows, cost = [], {"train_seconds": 0.0, "evaluation_seconds": 0.0, "steps": 0}
    for fraction in sorted(cfg.subsets):
        clips = subset(train_clips, fraction)
        contents = clips["content"].n_unique()
        steps = milestone_steps(cfg.milestones, contents, step_batch)
        run_cfg = train_cfg.model_copy(
            update={"steps": steps[-1], "checkpoint_every": steps[-1], "keep_checkpoints": 1}
        )
        runs = out.run(fraction)
        log(f"sweep: {contents} contents ({fraction:g}), {steps[-1]} steps, evaluated at {steps}")
        monitor = MilestoneMonitor(eval_cfg, spec, clips, val_clips, runs, steps=steps)
        metrics = train(run_cfg, spec, clips, runs, log=log, evaluator=monitor)
        history = RunEvaluations.of(runs).history
        for row in curve(history, contents, step_batch, eval_cfg):
            rows.append({"subset": fraction, "contents": contents, **row})
        trained = metrics.get("steps", 0) - metrics.get("resumed_from_step", 0)
        cost["steps"] += metrics.get("steps", 0)
        cost["train_seconds"] += metrics.get("seconds_per_step", 0.0) * trained
        cost["evaluation_seconds"] += metrics.get("evaluation_seconds", 0.0) * metrics.get(
            "evaluations", 0
        )
    full = [r for r in rows if r["subset"] == max(cfg.subsets)]
    advice = recommend(full, full[0]["contents"], step_batch, guard)
    with atomic_path(out.table) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_sweep(rows, advice, out.plot)
    result = {**advice, **cost}
    write_json(result, out.recommendation)
    write_text(
        sweep_markdown(advice, rows, SweepOutputs.plot.name, SweepOutputs.table.name), out.report
    )
    return result

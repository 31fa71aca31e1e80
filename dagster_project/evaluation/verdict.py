"""Signs of overfitting, the run's verdict and the early-stopping rule, from the evaluations a
run recorded (`evaluation.monitor`).

Every sign is read as a change, never as an absolute value: from a random-init base any learning
lowers diversity and raises similarity to the training clips, so diversity is compared with step
0's, the validation loss with its own best, and memorization is how much closer a sample comes to
its nearest training clip than to its nearest held-out clip of the same data.

- `val_loss`: the validation loss above its best so far (relative), while the training clips'
  fixed loss is still below its value at that best (training improves, validation does not);
- `gap`: the validation loss over the training clips' (relative), minus the same at step 0:
  the model gets better at the clips it trains on than at held-out clips of the same data;
- `diversity_drop`: within-prompt diversity below step 0's (relative);
- `memorization`: the share of samples flagged by `eval.memorization_threshold`, minus the same
  at step 0 (a random base's samples sit near some clips by chance).

Each sign is healthy, watch or overfitting by the thresholds `eval.watch` and
`eval.overfitting`; the verdict is the worst of them. Everything here is a pure function of the
recorded history, so a resumed run, the evaluation asset and the asset check agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dagster_project.core.params import EvalParams

Level = Literal["healthy", "watch", "overfitting"]
LEVELS: tuple[Level, ...] = ("healthy", "watch", "overfitting")
# each sign's name (as `eval.early_stopping.signs` names it) and its thresholds' key
SIGN_KEYS = {
    "val_loss": "val_loss_rise",
    "gap": "gap_growth",
    "diversity_drop": "diversity_drop",
    "memorization": "memorized_share",
}


@dataclass(frozen=True)
class Sign:
    name: str  # a key of SIGN_KEYS
    value: float
    level: Level
    threshold: float  # the one it crossed (the watch one when healthy)

    def describe(self) -> str:
        what = {
            "val_loss": "validation loss above its best",
            "gap": "validation loss further above the training clips' than at step 0",
            "diversity_drop": "diversity below step 0's",
            "memorization": "samples memorized",
        }[self.name]
        if self.name == "gap":  # a difference of two relative gaps: percentage points
            amount = f"{self.value * 100:.1f} points (threshold {self.threshold * 100:.0f})"
        else:
            amount = f"{self.value:.1%} (threshold {self.threshold:.0%})"
        return f"{self.name}: {what} by {amount}, {self.level}"


def relative_gap(record: dict) -> float:
    """How far the validation loss is above the training clips' fixed loss, relatively."""
    return record["val_loss"] / record["train_fixed_loss"] - 1


def memorized_share(record: dict) -> float:
    """The share of an evaluation's samples flagged as memorized."""
    return record["memorized"] / max(1, record["samples"])


def sign_values(history: list[dict], index: int) -> dict[str, float]:
    """The four signs at evaluation `index` of `history` (history[0] is step 0)."""
    current, start = history[index], history[0]
    best = min(history[: index + 1], key=lambda r: r["val_loss"])
    rise = 0.0
    if current["train_fixed_loss"] < best["train_fixed_loss"]:
        rise = max(0.0, current["val_loss"] / best["val_loss"] - 1)
    drop = 0.0
    if start["diversity"] > 0:
        drop = max(0.0, 1 - current["diversity"] / start["diversity"])
    return {
        "val_loss": rise,
        "gap": max(0.0, relative_gap(current) - relative_gap(start)),
        "diversity_drop": drop,
        "memorization": max(0.0, memorized_share(current) - memorized_share(start)),
    }


def judge(history: list[dict], index: int, cfg: EvalParams) -> list[Sign]:
    """Each sign at evaluation `index`, with its level."""
    signs = []
    for name, value in sign_values(history, index).items():
        key = SIGN_KEYS[name]
        watch, overfit = getattr(cfg.watch, key), getattr(cfg.overfitting, key)
        if value > overfit:
            signs.append(Sign(name, value, "overfitting", overfit))
        elif value > watch:
            signs.append(Sign(name, value, "watch", watch))
        else:
            signs.append(Sign(name, value, "healthy", watch))
    return signs


def worst(signs: list[Sign]) -> Level:
    """The verdict of a set of signs: the worst level among them."""
    return max((s.level for s in signs), key=LEVELS.index, default="healthy")


@dataclass(frozen=True)
class Verdict:
    level: Level
    step: int  # the evaluation judged: the run's last
    signs: list[Sign]

    @property
    def reasons(self) -> list[str]:
        """The signs that led to the level (none when healthy)."""
        return [s.describe() for s in self.signs if s.level != "healthy"]

    def message(self) -> str:
        """One line: the level, the step judged and the signs that led there."""
        if self.level == "healthy":
            return f"healthy at step {self.step}: no sign of overfitting"
        return f"{self.level} at step {self.step}: " + "; ".join(self.reasons)


def verdict(history: list[dict], cfg: EvalParams) -> Verdict:
    """The run's verdict: the signs at its last evaluation."""
    if not history:
        raise ValueError("no evaluations recorded: the run has no verdict")
    signs = judge(history, len(history) - 1, cfg)
    return Verdict(worst(signs), history[-1]["step"], signs)


@dataclass(frozen=True)
class StopDecision:
    best_step: int | None  # the best clean evaluation after step 0, if any
    since_best: int  # evaluations since it (or since step 0)
    stop: bool
    reason: str
    enabled: bool  # eval.early_stopping.enabled

    @property
    def chosen(self) -> int | None:
        """The checkpoint to export as the model: the best clean one when early stopping is
        on; None (the last step's) when it is off or nothing is clean."""
        return self.best_step if self.enabled else None


def early_stopping(history: list[dict], cfg: EvalParams) -> StopDecision:
    """Replay `eval.early_stopping` over the history: the best clean checkpoint so far, and
    whether the run should stop.

    An evaluation is clean when none of the counted signs is at the overfitting level; it
    improves when it is clean and (if `val_loss` counts) its validation loss is below the best
    clean one by more than `min_improvement`. Step 0 (the base) is the reference, never chosen.
    """
    rule = cfg.early_stopping
    best, best_loss, since, dirty_since = None, float("inf"), 0, None
    for index, record in enumerate(history):
        if record["step"] == 0:
            continue
        counted = [s for s in judge(history, index, cfg) if s.name in rule.signs]
        dirty = [s for s in counted if s.level == "overfitting"]
        better = "val_loss" not in rule.signs or record["val_loss"] < best_loss * (
            1 - rule.min_improvement
        )
        if not dirty and better:
            best, best_loss, since, dirty_since = record["step"], record["val_loss"], 0, None
        else:
            since += 1
            if dirty and dirty_since is None:
                dirty_since = (record["step"], ", ".join(s.name for s in dirty))
    stop = rule.enabled and since >= rule.patience
    if best is None:
        reason = "no clean evaluation after step 0 yet"
    else:
        reason = f"best clean checkpoint: step {best} (validation loss {best_loss:.4f})"
    if since:
        reason += f"; {since} evaluation(s) without improvement"
        if dirty_since is not None:
            reason += f", {dirty_since[1]} at the overfitting level since step {dirty_since[0]}"
    if stop:
        reason = f"stopped early (patience {rule.patience}): {reason}"
    return StopDecision(best, since, stop, reason, rule.enabled)

"""The loss curves as a PNG: training loss per step, fixed-sigma losses per checkpoint."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen here, and none needed
import matplotlib.pyplot as plt  # noqa: E402

from dagster_project.core.atomic import atomic_path  # noqa: E402


def plot_losses(
    train: list[tuple[int, float]],
    checkpoints: list[dict[str, float]],
    path: Path,
) -> None:
    """Training loss per step (raw and smoothed) and fixed-sigma losses per checkpoint."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [s for s, _ in train]
    values = [v for _, v in train]
    window = max(1, len(values) // 10)
    smooth = []
    for i in range(len(values)):
        recent = values[max(0, i - window + 1) : i + 1]
        smooth.append(sum(recent) / len(recent))
    ax.plot(steps, values, color="tab:blue", alpha=0.25, label="train loss (per step)")
    ax.plot(steps, smooth, color="tab:blue", label=f"train loss (mean of {window})")
    ax.plot(
        [c["step"] for c in checkpoints],
        [c["val_loss"] for c in checkpoints],
        "o-",
        color="tab:red",
        label="validation loss (fixed sigmas)",
    )
    ax.plot(
        [c["step"] for c in checkpoints],
        [c["train_fixed_loss"] for c in checkpoints],
        "s--",
        color="tab:green",
        label="train clips (fixed sigmas)",
    )
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

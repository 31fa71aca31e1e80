"""The evaluation report: a markdown page and the loss-per-noise-level plot (the loss curves
are `training.loss_plot`'s)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen here, and none needed
import matplotlib.pyplot as plt  # noqa: E402

from dagster_project.atomic import atomic_path  # noqa: E402


def sigma_levels(checkpoints: list[dict]) -> list[str]:
    """The noise levels of the per-level validation columns (`val_loss@0.3` -> `0.3`)."""
    return [k.split("@")[1] for k in checkpoints[0] if k.startswith("val_loss@")]


def plot_sigma_losses(checkpoints: list[dict], path: Path) -> None:
    """Validation (solid) and training-subset (dashed) loss per noise level, by step."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [c["step"] for c in checkpoints]
    for i, level in enumerate(sigma_levels(checkpoints)):
        color = f"C{i}"
        ax.plot(steps, [c[f"val_loss@{level}"] for c in checkpoints], "o-", color=color,
                label=f"validation, level {level}")  # fmt: skip
        ax.plot(steps, [c[f"train_fixed_loss@{level}"] for c in checkpoints], "--", color=color)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (dashed: training clips)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def markdown_report(
    metrics: dict[str, float], checkpoints: list[dict[str, float]], plot: str, sigma_plot: str
) -> str:
    """The report page: headline metrics, the per-checkpoint tables and the plots."""
    levels = sigma_levels(checkpoints)
    lines = [
        "# Evaluation report",
        "",
        "| metric | value |",
        "|---|---|",
        *(
            f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in sorted(metrics.items())
        ),
        "",
        "## Checkpoints",
        "",
        "| step | validation loss | train clips loss | gap |",
        "|---|---|---|---|",
        *(
            f"| {c['step']} | {c['val_loss']:.4f} | {c['train_fixed_loss']:.4f} | {c['gap']:.4f} |"
            for c in checkpoints
        ),
        "",
        "## Validation loss per noise level",
        "",
        "| step | " + " | ".join(levels) + " |",
        "|---|" + "---|" * len(levels),
        *(
            f"| {c['step']} | " + " | ".join(f"{c[f'val_loss@{s}']:.4f}" for s in levels) + " |"
            for c in checkpoints
        ),
        "",
        f"![loss per noise level]({sigma_plot})",
        "",
        "Losses at fixed sigmas with fixed noise, so checkpoints compare. Diversity: mean pairwise "
        "cosine distance between samples of one prompt (0 = identical outputs). Nearest-train "
        "similarity: cosine similarity of each sample to its closest training clip (1 = a copy).",
        "",
        f"![loss curves]({plot})",
        "",
    ]
    return "\n".join(lines)

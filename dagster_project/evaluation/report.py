"""The evaluation report: a markdown page (the plot is `training.loss_plot`)."""

from __future__ import annotations


def markdown_report(
    metrics: dict[str, float], checkpoints: list[dict[str, float]], plot: str
) -> str:
    """The report page: headline metrics, the per-checkpoint table and the plot."""
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
        "| step | validation loss | train clips loss |",
        "|---|---|---|",
        *(
            f"| {c['step']} | {c['val_loss']:.4f} | {c['train_fixed_loss']:.4f} |"
            for c in checkpoints
        ),
        "",
        "Losses at fixed sigmas with fixed noise, so checkpoints compare. Diversity: mean pairwise "
        "cosine distance between samples of one prompt (0 = identical outputs). Nearest-train "
        "similarity: cosine similarity of each sample to its closest training clip (1 = a copy).",
        "",
        f"![loss curves]({plot})",
        "",
    ]
    return "\n".join(lines)

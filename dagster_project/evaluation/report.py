"""The evaluation report: a markdown page opening with the verdict, and its plots (loss per
noise level, the signs by step, exposures per clip; the loss curves are
`training.loss_plot`'s)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen here, and none needed
import matplotlib.pyplot as plt  # noqa: E402

from dagster_project.atomic import atomic_path  # noqa: E402
from dagster_project.evaluation.verdict import (  # noqa: E402
    Verdict,
    memorized_share,
    relative_gap,
)

# exposures per clip: safe below 10, moderate to 50, risky above 100 (the guard's zones)
ZONES = (10, 50, 100)


def sigma_levels(history: list[dict]) -> list[str]:
    """The noise levels of the per-level validation columns (`val_loss@0.3` -> `0.3`)."""
    return [k.split("@")[1] for k in history[0] if k.startswith("val_loss@")]


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_sigma_losses(history: list[dict], labels: dict[str, str], path: Path) -> None:
    """Validation (solid) and training-subset (dashed) loss per noise level, by step."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [c["step"] for c in history]
    for i, level in enumerate(sigma_levels(history)):
        color = f"C{i}"
        ax.plot(steps, [c[f"val_loss@{level}"] for c in history], "o-", color=color,
                label=f"validation, {labels[level]}")  # fmt: skip
        ax.plot(steps, [c[f"train_fixed_loss@{level}"] for c in history], "--", color=color)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (dashed: training clips)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_signs(history: list[dict], chosen: int, path: Path) -> None:
    """Diversity (within and across prompts), memorized share and relative gap, by step."""
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [r["step"] for r in history]
    ax.plot(steps, [r["diversity"] for r in history], "o-", label="diversity within a prompt")
    across = [r["diversity_across"] for r in history]
    if None not in across:
        ax.plot(steps, across, "o--", label="diversity across prompts")
    ax.plot(steps, [memorized_share(r) for r in history], "s-", label="share memorized")
    ax.plot(steps, [r["nearest_train"] - r["nearest_val"] for r in history], "^-",
            label="nearest train - nearest validation similarity")  # fmt: skip
    ax.plot(steps, [relative_gap(r) for r in history], "d-", label="validation / train loss - 1")
    ax.axvline(chosen, color="grey", linestyle=":", label=f"chosen checkpoint ({chosen})")
    ax.set_xlabel("step")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_exposures(per_clip: list[int], path: Path) -> None:
    """Histogram of exposures per training clip, with the 10 / 50 / 100 zones marked."""
    fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
    top = max([*per_clip, ZONES[-1] * 1.2])
    ax.axvspan(0, ZONES[0], color="tab:green", alpha=0.12, label="safe (< 10)")
    ax.axvspan(ZONES[0], ZONES[1], color="tab:orange", alpha=0.12, label="moderate (10-50)")
    ax.axvspan(ZONES[1], ZONES[2], color="tab:red", alpha=0.08, label="over the guard (50-100)")
    ax.axvspan(ZONES[2], top, color="tab:red", alpha=0.2, label="risky (> 100)")
    ax.hist(per_clip, bins=min(30, max(5, len(set(per_clip)))), color="tab:blue")
    ax.set_xlim(0, top)
    ax.set_xlabel("exposures per training clip")
    ax.set_ylabel("clips")
    ax.legend(fontsize="small")
    _save(fig, path)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def markdown_report(
    verdict: Verdict,
    choice: str,
    exposures: dict[str, float],
    history: list[dict],
    samples: list[dict],
    labels: dict[str, str],
    plots: dict[str, str],
) -> str:
    """The report page: verdict and its signs, exposures, the choice of checkpoint (`choice`:
    the trainer's reason), the evaluation tables, the samples and the plots (`plots`: title ->
    file name)."""
    levels = sigma_levels(history)
    lines = [
        f"# Verdict: {verdict.level}",
        "",
        verdict.message(),
        "",
        *(f"- {s.describe()}" for s in verdict.signs),
        "",
        f"Exposures per training clip: mean {exposures['mean']:.1f}, max "
        f"{exposures['max']:.0f} over {exposures['steps']:.0f} steps (safe below 10, risky "
        "above 100).",
        "",
        f"Model: step {exposures['chosen_step']:.0f}. {choice}.",
        "",
        "## Evaluations",
        "",
        *_table(
            ["step", "validation loss", "train clips loss", "gap", "diversity", "memorized"],
            [
                [
                    str(r["step"]),
                    f"{r['val_loss']:.4f}",
                    f"{r['train_fixed_loss']:.4f}",
                    f"{r['gap']:+.4f}",
                    f"{r['diversity']:.4f}",
                    f"{r['memorized']}/{r['samples']}",
                ]
                for r in history
            ],
        ),  # fmt: skip
        "",
        "## Validation loss per noise level",
        "",
        *_table(
            ["step", *(labels[s] for s in levels)],
            [[str(r["step"]), *(f"{r[f'val_loss@{s}']:.4f}" for s in levels)] for r in history],
        ),
        "",
        "## Samples",
        "",
        *_table(
            [
                "step",
                "prompt",
                "seed",
                "video",
                "nearest training clip",
                "latent sim",
                "pixel SSIM",
                "nearest validation sim",
                "memorized",
            ],
            [
                [
                    str(s["step"]),
                    s["caption"],
                    str(s["seed"]),
                    f"[mp4]({s['video']})",
                    s["nearest_train_clip"],
                    f"{s['nearest_train']:.3f}",
                    f"{s['nearest_train_ssim']:.3f}",
                    f"{s['nearest_val']:.3f}",
                    "yes" if s["memorized"] else "",
                ]
                for s in samples
            ],
        ),  # fmt: skip
        "",
        "Losses at fixed noise levels with fixed noise, so evaluations compare. Diversity: mean "
        "pairwise cosine distance between samples of one prompt (latent features, the run's "
        "mean feature taken off). A sample is memorized when it is closer to its nearest "
        "training clip than to its nearest validation clip by more than "
        "eval.memorization_threshold.",
        "",
        *(f"![{title}]({name})\n" for title, name in plots.items()),
    ]
    return "\n".join(lines)

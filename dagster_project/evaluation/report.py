"""The evaluation report: a markdown page opening with the verdict, and its plots (loss per
noise level, the signs by step, exposures per clip; the loss curves are
`training.loss_plot`'s)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen here, and none needed
import matplotlib.pyplot as plt  # noqa: E402

from dagster_project.core.atomic import atomic_path  # noqa: E402
from dagster_project.evaluation.verdict import (  # noqa: E402
    Verdict,
    memorized_share,
    relative_gap,
)

# exposures per clip: safe below 10, moderate to 50, risky above 100 (the guard's zones)
ZONES = (10, 50, 100)


def modality_section(history: list[dict]) -> list[str]:
    """The validation loss of each modality apart (`val_loss_video`, `val_loss_audio`), for a
    family with several (LTX-2); nothing for the others."""
    names = [k.removeprefix("val_loss_") for k in history[0] if k.startswith("val_loss_")]
    names = [n for n in names if "@" not in n]
    if not names:
        return []
    rows = [
        [str(r["step"]), *(f"{r[f'val_loss_{n}']:.4f}" if f"val_loss_{n}" in r else "-"
                           for n in names)]
        for r in history
    ]  # fmt: skip
    return ["## Validation loss per modality", "", *_table(["step", *names], rows), ""]


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


def _zones(ax: plt.Axes, top: float, labels: bool = True) -> None:
    """The guard's zones along an exposures axis: safe, moderate, over the guard, risky."""
    spans = (
        (0, ZONES[0], "tab:green", 0.12, "safe (< 10)"),
        (ZONES[0], ZONES[1], "tab:orange", 0.12, "moderate (10-50)"),
        (ZONES[1], ZONES[2], "tab:red", 0.08, "over the guard (50-100)"),
        (ZONES[2], top, "tab:red", 0.2, "risky (> 100)"),
    )
    for start, end, color, alpha, label in spans:
        if start < top:
            ax.axvspan(start, min(end, top), color=color, alpha=alpha,
                       label=label if labels else None)  # fmt: skip


def plot_exposures(per_clip: list[int], path: Path) -> None:
    """Histogram of exposures per training clip, with the 10 / 50 / 100 zones marked."""
    fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
    top = max([*per_clip, ZONES[-1] * 1.2])
    _zones(ax, top)
    ax.hist(per_clip, bins=min(30, max(5, len(set(per_clip)))), color="tab:blue")
    ax.set_xlim(0, top)
    ax.set_xlabel("exposures per training clip")
    ax.set_ylabel("clips")
    ax.legend(fontsize="small")
    _save(fig, path)


def plot_sweep(rows: list[dict], advice: dict, path: Path) -> None:
    """The exposure sweep: validation-loss gap growth, diversity change and memorized share
    against exposures per content, one line per subset, with the guard's zones and the onset."""
    panels = (
        ("gap_growth", "val/train loss gap growth"),
        ("diversity_change", "diversity change"),
        ("memorized_share", "memorized share"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    top = max(r["exposures"] for r in rows) * 1.05
    for index, (ax, (key, title)) in enumerate(zip(axes, panels, strict=True)):
        _zones(ax, top, labels=index == 0)
        for fraction in sorted({r["subset"] for r in rows}):
            line = [r for r in rows if r["subset"] == fraction]
            ax.plot([r["exposures"] for r in line], [r[key] for r in line], marker="o",
                    label=f"{line[0]['contents']} contents")  # fmt: skip
        if advice.get("onset_exposures") is not None:
            ax.axvline(advice["onset_exposures"], color="black", linestyle="--",
                       label="onset" if index == 0 else None)  # fmt: skip
        ax.set_xlim(0, top)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("exposures per content")
    axes[0].legend(fontsize="x-small")
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
        *modality_section(history),
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


def sweep_markdown(advice: dict, rows: list[dict], plot: str, table: str) -> str:
    """The exposure sweep's reading in a few lines, with its table."""
    if advice["onset_exposures"] is None:
        onset = "no sign of overfitting up to the last milestone"
    else:
        onset = (
            f"overfitting starts ({advice['onset_level']}) at {advice['onset_exposures']:.1f} "
            f"exposures per content; the guard's limit ({advice['guard_max_exposures']:g}) is "
            f"{advice['guard_limit_over_onset']:.2f}x that"
        )
    if advice["recommended_steps"] is None:
        budget = "no clean evaluation before the onset: fewer steps than the first milestone"
    else:
        budget = (
            f"{advice['recommended_steps']} steps at {advice['samples_per_step']} samples per "
            f"step ({advice['recommended_exposures']:.1f} exposures per content over "
            f"{advice['contents']} contents): the best validation loss before the onset"
        )
    header = ["subset", "exposures", "step", "val loss", "gap growth", "diversity change",
              "memorized", "level"]  # fmt: skip
    cells = [
        [f"{r['subset']:g}", f"{r['exposures']:.1f}", str(r["step"]), f"{r['val_loss']:.4f}",
         f"{r['gap_growth']:+.3f}", f"{r['diversity_change']:+.1%}",
         f"{r['memorized_share']:.0%}", r["level"]]
        for r in rows
    ]  # fmt: skip
    lines = [
        "# Exposure sweep",
        "",
        f"- {onset}",
        f"- recommended budget for the full dataset: {budget}",
        f"- plot: {plot}; table: {table}",
        "",
        *_table(header, cells),
    ]
    return "\n".join(lines) + "\n"

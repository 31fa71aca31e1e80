"""Data wait: the share of a training step spent waiting for the next batch.

What is measured
    The training worker (``python -m dagster_project.cli.worker <params.yaml>``, as the
    ``trained_model`` asset launches it) on a cached 100-clip dataset writes
    ``data_wait_fraction`` (seconds blocked in ``next(batches)`` / training seconds, both
    after step 1 and without checkpoint writes) and ``seconds_per_step`` into
    ``<train.output_dir>/metrics.json``. They are reported for ``train.num_workers`` 0 and 2,
    for the default tiny model (``model.tiny`` of params.yaml) and for a larger one
    (4 layers, 4 heads of 32, ffn 512), with the worker's wall time. For context, the time to
    load one batch in-process (``CachedClips`` + ``collate``, what ``num_workers: 0`` waits
    for) is measured too.

    The RESULT is ``data_wait_fraction`` of the default configuration (the default model and
    the repository's ``train.num_workers``); the goal is under 2% of the step (<= 0.02).

How
    Clips come from ``benchmarks/clips.py``; the project is ``benchmarks/.data/data_wait/``,
    whose tensor cache is kept between benchmark runs (content-addressed: only what changed is
    encoded again). Each (model, num_workers) gets its own params file, a copy of the
    repository's params.yaml with ``train.steps`` (150), ``guard.max_exposures`` (high, so the
    guard never blocks), ``train.num_workers``, ``train.output_dir``, ``model.tiny``,
    ``model.base_dir`` and ``data.latent_index`` set. For each model, everything up to
    ``training_plan`` is materialized first (not timed; its ``base_model`` vae_sha256 and the
    number of latents encoded are printed: a model change that keeps the VAE should encode
    none). Then the worker runs once per configuration and round (``--rounds``, default 3),
    the num_workers order alternating; medians are reported.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.data_wait [--steps 150] [--rounds 3]

The last line is ``RESULT data_wait ratio=<x> (goal <= 0.02)``; the exit status is 0 whether
or not the goal is met (1 if a materialization or a worker fails).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.clips import (
    DATA_DIR,
    REPO,
    Timing,
    ensure_clips,
    load_note,
    materialize_quietly,
    reused_project,
    small_clip,
    timed,
    write_params,
)

WORK_DIR = DATA_DIR / "data_wait"
SELECTION = "base_model,videos,manifest,rejects,text_embeddings,video_latents,training_plan"
GOAL = 0.02
LARGER = {"num_layers": 4, "num_attention_heads": 4, "attention_head_dim": 32, "ffn_dim": 512}
WORKERS = (0, 2)
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"}


@dataclass(frozen=True)
class TrainRun:
    data_wait_fraction: float
    seconds_per_step: float
    timing: Timing

    @property
    def wall(self) -> float:
        return self.timing.wall


def config_params(model: str, tiny: dict[str, int], workers: int, steps: int) -> Path:
    """The params file of one (model, num_workers) configuration, in the project folder."""
    return write_params(
        WORK_DIR,
        name=f"params_{model}_w{workers}.yaml",
        data={"latent_index": f"data/latents_{model}.parquet"},
        model={"base_dir": f"data/models/{model}", "tiny": tiny},
        train={
            "steps": steps,
            "num_workers": workers,
            "output_dir": f"data/train_{model}_w{workers}",
        },
        guard={"max_exposures": 100000.0, "warn_exposures": 100000.0},
    )


def prepare(params: Path) -> dict[str, Any]:
    """Materialize everything up to training_plan; what base_model and video_latents report."""
    result = materialize_quietly(params, SELECTION)
    if not result.success:
        raise RuntimeError(f"materializing {SELECTION} failed for {params.name}")
    base = result.asset_materializations_for_node("base_model")[0].metadata
    latents = result.asset_materializations_for_node("video_latents")[0].metadata
    return {"vae_sha256": str(base["vae_sha256"].value), "encoded": int(latents["encoded"].value)}


def batch_load_ms(params: Path, batches: int = 60) -> tuple[float, int]:
    """Median ms to load one training batch in-process, and the number of training clips."""
    from dagster_project.core.params import load_params
    from dagster_project.dataset.sampler import ResolutionSampler
    from dagster_project.training.data import CachedClips, clip_table, collate

    p = load_params(params)
    table = clip_table(p.cache_files, "train")
    dataset = CachedClips(table)
    sampler = iter(ResolutionSampler(table["bucket"].to_list(), p.train.batch_size, seed=1))
    times = []
    for _ in range(batches):
        indices = next(sampler)
        start = time.perf_counter()
        collate([dataset[i] for i in indices])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[5:]), len(table)


def train(params: Path) -> TrainRun:
    timing = timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "dagster_project.cli.worker", str(params)],
            cwd=REPO,
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
        )
    )
    process = timing.value
    if process.returncode != 0:
        tail = "\n".join(process.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"worker failed on {params.name}:\n{tail}")
    config = yaml.safe_load(params.read_text(encoding="utf-8"))
    metrics = json.loads((WORK_DIR / config["train"]["output_dir"] / "metrics.json").read_text())
    return TrainRun(metrics["data_wait_fraction"], metrics["seconds_per_step"], timing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=150, help="train.steps (150)")
    parser.add_argument("--rounds", type=int, default=3, help="worker runs per config (3)")
    parser.add_argument("--videos", type=int, default=100, help="clips in the dataset (100)")
    args = parser.parse_args(argv)
    os.environ.update(ENV)

    repo_params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    default_workers = int(repo_params["train"].get("num_workers", 0))
    models = {"default": dict(repo_params["model"]["tiny"]), "larger": LARGER}
    workers = sorted({*WORKERS, default_workers})

    clips = [small_clip(i) for i in range(args.videos)]
    ensure_clips(clips)
    reused_project(WORK_DIR, clips)
    (WORK_DIR / "params.yaml").unlink(missing_ok=True)  # only the per-config files are used

    files = {
        (m, w): config_params(m, tiny, w, args.steps) for m, tiny in models.items() for w in workers
    }
    prepared = {}
    load_ms = {}
    try:
        for model in models:
            start = time.perf_counter()
            prepared[model] = prepare(files[model, workers[0]])
            load_ms[model], train_clips = batch_load_ms(files[model, workers[0]])
            print(
                f"prepared {model}: vae_sha256 {prepared[model]['vae_sha256'][:12]}, "
                f"{prepared[model]['encoded']} latents encoded, {train_clips} training clips, "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
        runs: dict[tuple[str, int], list[TrainRun]] = {key: [] for key in files}
        for round_ in range(args.rounds):
            for model in models:
                for w in workers if round_ % 2 == 0 else workers[::-1]:
                    run = train(files[model, w])
                    runs[model, w].append(run)
                    print(
                        f"  round {round_ + 1}: {model} num_workers={w}: "
                        f"{run.seconds_per_step * 1000:.1f} ms/step, data wait "
                        f"{run.data_wait_fraction:.2%}, worker {run.wall:.0f} s, other load "
                        f"{run.timing.other_cores or 0:.2f} cores",
                        flush=True,
                    )
    except RuntimeError as error:
        print(f"FAILED: {error}")
        return 1

    print()
    print(
        f"{args.videos} clips (17x64x64 / 17x48x80 / 17x80x48), batch "
        f"{repo_params['train']['batch_size']}, {args.steps} steps; median of {args.rounds}"
    )
    print(
        f"{'model':<9} {'workers':>7} {'ms/step':>9} {'wait %':>8} {'wait ms/step':>13} "
        f"{'worker s':>9}  {'batch load ms (in-process)':>26}"
    )
    for (model, w), model_runs in runs.items():
        per_step = statistics.median(r.seconds_per_step for r in model_runs)
        wait = statistics.median(r.data_wait_fraction for r in model_runs)
        wall = statistics.median(r.wall for r in model_runs)
        flag = " *" if model == "default" and w == default_workers else ""
        print(
            f"{model:<9} {w:>7} {per_step * 1000:9.1f} {wait:8.2%} {wait * per_step * 1000:13.2f} "
            f"{wall:9.0f}  {load_ms[model]:26.2f}{flag}"
        )
    sizes = ", ".join(f"{m}: {t}" for m, t in models.items())
    print(f"models (model.tiny): {sizes}")
    same_vae = prepared["default"]["vae_sha256"] == prepared["larger"]["vae_sha256"]
    print(
        f"larger model: VAE {'unchanged' if same_vae else 'CHANGED'} "
        f"(vae_sha256 {prepared['larger']['vae_sha256'][:12]} vs "
        f"{prepared['default']['vae_sha256'][:12]}), "
        f"{prepared['larger']['encoded']} latents encoded when preparing it"
    )
    note = load_note(r.timing for rs in runs.values() for r in rs)
    if note:
        print(note)
    result = statistics.median(r.data_wait_fraction for r in runs["default", default_workers])
    print(f"* the default configuration (num_workers={default_workers} from params.yaml)")
    print(f"RESULT data_wait ratio={result:.4f} (goal <= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

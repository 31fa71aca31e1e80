"""Training modes: LoRA against full fine-tuning, and the trainer against a bare PyTorch loop.

What is measured
    For the default tiny Wan (``model.tiny`` of params.yaml) and a CPU-sized Wan of about 35M
    parameters (8 layers, 8 heads of 64, ffn 2048), in ``train.mode`` full and lora (the
    repository's ``train.lora``): trainable parameters, optimizer steps per second (from the
    worker's ``seconds_per_step``: after step 1, without checkpoint writes) and the worker
    process's peak resident memory (``ru_maxrss`` of the child). The worker is the one the
    ``trained_model`` asset launches (``python -m dagster_project.cli.worker params.yaml``).

    Trainer overhead: on the CPU-sized Wan in full mode, the trainer's steps per second against
    a bare loop over the same cached latents, model and batch size (``bare_loop`` below: the
    base transformer, AdamW, same-bucket batches indexed straight from the preloaded cache, a
    posterior draw, noise, logit-normal sigmas, forward, MSE, backward, step; no accelerate, no
    DataLoader, no sampler). RESULT is that ratio; the goal is at least 0.95.

How
    Clips come from ``benchmarks/clips.py`` (40 small clips); the project is
    ``benchmarks/.data/training_modes/`` and its cache is kept between runs. Each
    configuration runs ``--rounds`` times (default 3), alternating the order; medians.

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.training_modes [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.clips import (
    DATA_DIR,
    REPO,
    ensure_clips,
    materialize_quietly,
    reused_project,
    small_clip,
    write_params,
)

WORK_DIR = DATA_DIR / "training_modes"
SELECTION = "base_model,videos,manifest,rejects,text_embeddings,video_latents"
CPU_SIZED = {"num_layers": 8, "num_attention_heads": 8, "attention_head_dim": 64, "ffn_dim": 2048}
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"}
GOAL = 0.95


def config_params(model: str, tiny: dict, mode: str, steps: int) -> Path:
    return write_params(
        WORK_DIR,
        name=f"params_{model}_{mode}.yaml",
        model={"base_dir": f"data/models/{model}", "tiny": tiny},
        train={
            "steps": steps,
            "mode": mode,
            "output_dir": f"data/train_{model}_{mode}",
            "resume": "never",  # every round trains from step 1
        },
        guard={"max_exposures": 100000.0, "warn_exposures": 100000.0},
    )


def run_child(command: list[str]) -> tuple[str, float]:
    """Run a child process; (its stdout, its own peak resident memory in MiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **ENV}, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage, not all children's
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:  # the worker names its failure on stdout, tracebacks on stderr
            tails = ("\n".join(f.read().decode().strip().splitlines()[-15:]) for f in (out, err))
            raise RuntimeError(f"{command} failed:\n" + "\n".join(tails))
        return out.read().decode(), usage.ru_maxrss / 1024  # KiB on Linux


def worker(params: Path) -> dict:
    """The training worker on `params`: its metrics and peak memory."""
    _, peak = run_child([sys.executable, "-m", "dagster_project.cli.worker", str(params)])
    out = yaml.safe_load(params.read_text())["train"]["output_dir"]
    metrics = json.loads((WORK_DIR / out / "metrics.json").read_text())
    return {**metrics, "peak_mib": peak}


def bare_loop(params_path: str, steps: int) -> float:
    """Seconds per optimizer step of a plain PyTorch loop over the same cached latents, model,
    batch and forward (the spec's), without the trainer's machinery (run in a child process:
    `python -m benchmarks.training_modes --bare PARAMS`)."""
    import torch

    from dagster_project.core.params import load_params
    from dagster_project.models.families import family_spec
    from dagster_project.training.data import CachedClips, clip_table, collate, split_batch

    p = load_params(params_path)
    spec = family_spec(p.model.family, p.base_model)
    table = clip_table(p.cache_files, "train")
    clips = CachedClips(table)
    size = p.train.batch_size
    members: dict[str, list[int]] = {}
    for index, bucket in enumerate(table["bucket"]):
        members.setdefault(bucket, []).append(index)
    batches = [m[i : i + size] for m in members.values() for i in range(0, len(m) - size + 1, size)]
    torch.manual_seed(0)
    model = spec.load_transformer().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.train.lr)
    generator = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    started = 0.0
    for step in range(steps):
        if step == 1:
            started = time.perf_counter()  # as in the trainer, step 1 pays for start-up
        batch = collate([clips[i] for i in batches[step % len(batches)]])
        moments, conditioning = split_batch(batch, cpu)
        latents = spec.latents(moments, generator)
        noise = torch.randn(latents.shape, generator=generator)
        levels = spec.sample_noise_levels(len(latents), "logit_normal", generator)
        loss = spec.loss(model, latents, conditioning, levels, noise).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - started) / (steps - 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--steps", type=int, default=40, help="train.steps (40)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--bare", help=argparse.SUPPRESS)  # the child: a bare loop on params
    args = parser.parse_args(argv)
    if args.bare:
        print(json.dumps({"seconds_per_step": bare_loop(args.bare, args.steps)}))
        return 0
    os.environ.update(ENV)
    repo_params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    models = {"tiny": dict(repo_params["model"]["tiny"]), "cpu-sized": CPU_SIZED}
    modes = ("full", "lora")

    clips = [small_clip(i) for i in range(args.videos)]
    ensure_clips(clips)
    reused_project(WORK_DIR, clips)
    (WORK_DIR / "params.yaml").unlink(missing_ok=True)
    files = {
        (m, mode): config_params(m, t, mode, args.steps)
        for m, t in models.items()
        for mode in modes
    }
    for model in models:
        if not materialize_quietly(files[model, "full"], SELECTION).success:
            print(f"FAILED: preparing {model}")
            return 1

    runs: dict[tuple[str, str], list[dict]] = {key: [] for key in files}
    bare: list[float] = []
    for round_ in range(args.rounds):
        for key in files if round_ % 2 == 0 else list(files)[::-1]:
            run = worker(files[key])
            runs[key].append(run)
            ms = run["seconds_per_step"] * 1000
            print(f"  round {round_ + 1}: {key}: {ms:.1f} ms/step, {run['peak_mib']:.0f} MiB")
        bare_params = str(files["cpu-sized", "full"])
        child = [
            "-m",
            "benchmarks.training_modes",
            "--bare",
            bare_params,
            "--steps",
            str(args.steps),
        ]
        out, _ = run_child([sys.executable, *child])
        bare.append(json.loads(out.strip().splitlines()[-1])["seconds_per_step"])
        print(f"  round {round_ + 1}: bare loop: {bare[-1] * 1000:.1f} ms/step", flush=True)

    print()
    batch = repo_params["train"]["batch_size"]
    print(f"{args.videos} clips, batch {batch}, {args.steps} steps, median of {args.rounds}")
    print(
        f"{'model':<10} {'mode':<5} {'trainable':>12} {'steps/s':>8} {'ms/step':>8} {'peak MiB':>9}"
    )
    for (model, mode), model_runs in runs.items():
        per_step = statistics.median(r["seconds_per_step"] for r in model_runs)
        peak = statistics.median(r["peak_mib"] for r in model_runs)
        trainable = model_runs[0]["trainable_parameters"]
        rate, ms = 1 / per_step, per_step * 1000
        print(f"{model:<10} {mode:<5} {trainable:>12,} {rate:8.2f} {ms:8.1f} {peak:9.0f}")
    trainer = statistics.median(r["seconds_per_step"] for r in runs["cpu-sized", "full"])
    ratio = statistics.median(bare) / trainer
    print(f"bare loop (cpu-sized, full): {statistics.median(bare) * 1000:.1f} ms/step")
    print(f"RESULT trainer_vs_bare ratio={ratio:.3f} (goal >= {GOAL})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The training loop: one readable loop over an endless, bucketed stream of cached clips.

Steps count optimizer updates (gradient accumulation does not stretch the LR schedule).
Runs alone, under `torchrun` (accelerate picks up the process group) or as a Dagster Pipes
worker (see worker.py).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable

import polars as pl
import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader
from tqdm import tqdm

from dagster_project.atomic import atomic_dir, atomic_path, write_json
from dagster_project.dataset.sampler import ResolutionSampler
from dagster_project.models.adapters import add_lora, apply_memory_switches
from dagster_project.models.spec import ModelSpec
from dagster_project.params import TrainParams
from dagster_project.paths import TrainOutputs
from dagster_project.training.data import CachedClips, collate, split_batch
from dagster_project.training.loss_plot import plot_losses


def train(
    cfg: TrainParams,
    spec: ModelSpec,
    table: pl.DataFrame,
    out: TrainOutputs,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Train the spec's base transformer on the training clips of `table` (a `clip_table`);
    write under `out` and return summary metrics (on the main process; other ranks: {})."""
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=cfg.mixed_precision,
        # without a GPU, accelerate only joins a torchrun process group (gloo) when told cpu=True
        cpu=not torch.cuda.is_available(),
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    if accelerator.is_main_process:
        shutil.rmtree(out.checkpoints, ignore_errors=True)  # only this run's checkpoints

    sampler = ResolutionSampler(
        table["bucket"].to_list(),
        cfg.batch_size,
        seed=cfg.seed,
        rank=rank,
        world_size=world,
        grad_accum=cfg.grad_accum,
    )
    loader = DataLoader(
        CachedClips(table),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        pin_memory=accelerator.device.type == "cuda",
    )

    torch.manual_seed(cfg.seed)
    transformer = spec.load_transformer()
    lora = cfg.mode == "lora"
    if lora:
        add_lora(transformer, cfg.lora, spec.lora_targets)
    apply_memory_switches(transformer, cfg.memory, accelerator.device)
    transformer.train()
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps
    )
    transformer, optimizer = accelerator.prepare(transformer, optimizer)
    generator = torch.Generator(device=accelerator.device).manual_seed(cfg.seed * 1000 + rank)

    if accelerator.is_main_process:
        log(
            f"training {sum(p.numel() for p in trainable):,} parameters ({cfg.mode}) of "
            f"{spec.name} on {len(table)} clips for {cfg.steps} steps "
            f"({world} process(es), {accelerator.device})"
        )
    losses: list[tuple[int, float, float]] = []
    metrics: dict[str, float] = {}  # written by the main process at the end
    batches = iter(loader)
    data_wait = 0.0  # seconds the loop spent waiting for batches (after the first step)
    started = time.perf_counter()  # reset after step 1, pushed back by checkpoint writes
    progress = tqdm(range(1, cfg.steps + 1), disable=not accelerator.is_main_process, desc="train")
    for step in progress:
        step_loss = 0.0
        for _ in range(cfg.grad_accum):
            waited = time.perf_counter()
            batch = next(batches)
            if step > 1:
                data_wait += time.perf_counter() - waited
            with accelerator.accumulate(transformer):
                moments, conditioning = split_batch(batch, accelerator.device)
                # a fresh draw from the cached VAE posterior at every step
                latents = spec.latents(moments, generator)
                noise = torch.randn(latents.shape, generator=generator, device=latents.device)
                levels = spec.sample_noise_levels(len(latents), cfg.weighting_scheme, generator)
                loss = spec.loss(
                    transformer, latents, conditioning, levels, noise, cfg.weighting_scheme
                ).mean()
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                optimizer.zero_grad()
            step_loss += accelerator.reduce(loss.detach(), reduction="mean").item() / cfg.grad_accum
        lr_scheduler.step()
        losses.append((step, step_loss, lr_scheduler.get_last_lr()[0]))
        if step == 1:
            started = time.perf_counter()  # the first step pays for start-up
        progress.set_postfix(loss=f"{step_loss:.4f}")
        if accelerator.is_main_process and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            saving = time.perf_counter()
            # the DataLoader may have pulled batches ahead, so the sampler's own state would be
            # ahead too: what the model has seen is the seed plus the batches consumed
            state = {"step": step, "loss": step_loss, "sampler_seed": cfg.seed}
            state["batches_consumed"] = step * cfg.grad_accum
            _save_checkpoint(spec, accelerator.unwrap_model(transformer), lora, out, state)
            started += time.perf_counter() - saving  # step timing excludes checkpoint writes
    if accelerator.is_main_process:
        with atomic_dir(out.model) as tmp:
            spec.save_trained(accelerator.unwrap_model(transformer), tmp, lora)
        elapsed = time.perf_counter() - started
        timing = {"data_wait_fraction": data_wait / elapsed if elapsed > 0 else 0.0}
        timing["seconds_per_step"] = elapsed / max(1, cfg.steps - 1)
        timing["processes"] = world
        timing["trainable_parameters"] = sum(p.numel() for p in trainable)
        metrics = _write_loss_log(losses, out, timing)
        log(f"loss {metrics['loss_first']:.4f} -> {metrics['loss_last']:.4f}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def _save_checkpoint(
    spec: ModelSpec, model: torch.nn.Module, lora: bool, out: TrainOutputs, state: dict
) -> None:
    with atomic_dir(out.checkpoint(state["step"])) as tmp:
        (tmp / out.CHECKPOINT_MODEL).mkdir()
        spec.save_trained(model, tmp / out.CHECKPOINT_MODEL, lora)
        (tmp / out.CHECKPOINT_STATE).write_text(json.dumps(state, indent=2))


def _write_loss_log(
    losses: list[tuple[int, float, float]], out: TrainOutputs, timing: dict[str, float]
) -> dict[str, float]:
    """loss.csv (a DVC plot) and metrics.json: the mean loss of the first and last few steps."""
    with atomic_path(out.loss_csv) as tmp:
        lines = ["step,loss,lr"] + [f"{s},{loss:.6f},{lr:.6g}" for s, loss, lr in losses]
        tmp.write_text("\n".join(lines) + "\n")
    window = max(1, len(losses) // 5)
    values = [loss for _, loss, _ in losses]
    metrics = {
        "steps": len(losses),
        **timing,
        "loss_first": sum(values[:window]) / window,
        "loss_last": sum(values[-window:]) / window,
    }
    write_json(metrics, out.metrics)
    plot_losses([(s, loss) for s, loss, _ in losses], [], out.loss_plot)
    return metrics

"""The training loop: one readable loop over an endless, bucketed stream of cached clips.

Steps count optimizer updates: each takes `batch_size x grad_accum x processes` clips of one
bucket from the sampler, and the LR schedule steps once per update. Every random draw of a
sample (its posterior sample, noise and noise level) comes from a generator keyed by (seed,
step, position in the step's batch), so a run resumed from a checkpoint, or split differently
across accumulation steps and processes, sees exactly the same inputs.

Runs alone, under `torchrun` (accelerate picks up the process group) or as a Dagster Pipes
worker (see cli/worker.py).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, broadcast_object_list
from diffusers.optimization import get_scheduler
from dvclive import Live
from dvclive.plots import NumpyEncoder
from torch.utils.data import DataLoader
from tqdm import tqdm

from dagster_project.core.atomic import atomic_dirs, atomic_path, write_json
from dagster_project.core.params import TrainParams
from dagster_project.core.paths import CheckpointFiles, TrainOutputs
from dagster_project.dataset.sampler import ResolutionSampler
from dagster_project.models.adapters import apply_memory_switches, apply_speed_switches
from dagster_project.models.flow_matching import FULL_SPAN
from dagster_project.models.spec import ModelSpec
from dagster_project.training.checkpoint import (
    RunState,
    prune_checkpoints,
    register_hooks,
    resume_point,
    run_fingerprint,
    save_checkpoint,
)
from dagster_project.training.data import CachedClips, collate, split_batch
from dagster_project.training.loss_plot import plot_losses
from dagster_project.training.run_evaluations import RunEvaluations
from dagster_project.training.timing import StepTimer

LOG_EVERY_SECONDS = 10.0  # Dagster's log gets a line at most this often (and at checkpoints)


class StepLog(Live):
    """dvclive's files (per-step curves as TSV, drawn by `dvc plots show`) without its DVC
    integration: the generated dvc.yaml declares the curves itself, `dvc exp show` reads the
    metrics the stages declare, and the integration would initialize DVC in a plain git repo
    and fails in one without commits (dvclive 3.49)."""

    def _init_dvc(self) -> None:
        """No DVC repo, no experiment: only files."""

    def make_summary(self) -> None:
        """metrics.json written whole (dvclive writes it in place: a kill mid-write left an
        empty file that the resumed run could not read)."""
        if self._step is not None:
            self.summary["step"] = self.step
        with atomic_path(Path(self.metrics_file)) as tmp:
            tmp.write_text(json.dumps(self.summary, cls=NumpyEncoder, indent=4))

    def read_latest(self) -> dict:
        """The last summary; one cut short by an older run's crash is dropped (the trainer sets
        the step itself, and the next step rewrites the summary)."""
        try:
            return super().read_latest()
        except ValueError:
            return {}


class StepEvaluator(Protocol):
    """In-loop evaluation (evaluation.monitor.RunMonitor); the trainer only calls it. Every
    rank gets one (the ranks agree on when to evaluate and stop through collectives); only
    the main process evaluates."""

    fingerprint: dict  # its settings that shape what it records: part of the run's fingerprint

    def due(self, step: int, last_step: int) -> bool: ...

    def evaluate(self, step: int, transformer: torch.nn.Module, device: torch.device) -> str: ...

    def decision(self) -> StopDecisionLike: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class StopDecisionLike(Protocol):
    """What the trainer reads of an evaluator's early-stopping decision."""

    stop: bool
    reason: str

    @property
    def chosen(self) -> int | None:
        """The checkpoint to export as the model (None: the last step's weights)."""


@contextmanager
def evaluation_mode(transformer: torch.nn.Module) -> Iterator[None]:
    """Evaluate without touching the training trajectory: every RNG state (torch, CUDA, NumPy,
    Python) and the module's train/eval mode are restored afterwards, as SimpleTuner does."""
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    training = transformer.training
    transformer.eval()
    try:
        yield
    finally:
        transformer.train(training)
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@dataclass(frozen=True)
class WarmStart:
    """Trained weights a run starts from instead of the base (train.init: promoted)."""

    model: Path  # a trained model folder: full weights, or an adapter over the same base
    identity: str  # its content hash: part of the run's fingerprint


def starting_transformer(
    spec: ModelSpec, cfg: TrainParams, warm: WarmStart | None
) -> torch.nn.Module:
    """The transformer a run trains: the base's, or a warm start's weights in the same mode
    (full weights, or an adapter loaded into the new one, which must have the same rank and
    targets); in lora mode with an adapter to train."""
    lora = cfg.mode == "lora"
    adapter = warm is not None and spec.has_adapter(warm.model)
    if warm is not None and adapter != lora:
        kind = "a LoRA adapter" if adapter else "full weights"
        raise ValueError(
            f"{warm.model}: the model to continue is {kind} and train.mode is {cfg.mode}; a "
            "warm start continues in the same mode (a LoRA run saves only its adapter, which "
            "would lose a full model's weights): set train.mode to match, or train.init: base"
        )
    transformer = spec.load_transformer(warm.model if warm is not None and not lora else None)
    spec.prepare_training(transformer, cfg.mode, cfg.lora, cfg.experts)
    if adapter:
        try:
            spec.load_adapter(transformer, warm.model)
        except (RuntimeError, ValueError) as error:  # another rank, or other targets
            raise ValueError(
                f"{warm.model}: its adapter does not fit train.lora (rank, targets): {error}"
            ) from error
    return transformer


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite: the run stops, its last good checkpoint stays."""


# the position keying a step's own draw (which expert trains), beyond any batch's positions
STEP_DRAW = 2**32


def sample_generator(seed: int, step: int, position: int, device: torch.device) -> torch.Generator:
    """The generator of one sample's draws, keyed by (seed, optimizer step, position in the
    step's batch): the same whatever the batch split, the process count or a resume."""
    key = np.random.SeedSequence([seed, step, position]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(key) >> 1)


def draw_inputs(
    spec: ModelSpec,
    moments: dict[str, torch.Tensor],
    weighting_scheme: str,
    seed: int,
    step: int,
    positions: list[int],
    span: tuple[float, float] = FULL_SPAN,
    first_frame_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(latents, noise, noise levels in `span`, and with `first_frame_p` whether each sample
    keeps its first-frame condition, 1 or 0) of a micro-batch, drawn per sample."""
    latents, noise, levels, kept = [], [], [], []
    for i, position in enumerate(positions):
        generator = sample_generator(seed, step, position, moments["mean"].device)
        latent = spec.latents({k: v[i : i + 1] for k, v in moments.items()}, generator)
        latents.append(latent)
        noise.append(torch.randn(latent.shape, generator=generator, device=latent.device))
        levels.append(spec.sample_noise_levels(1, weighting_scheme, generator, span))
        if first_frame_p:  # drawn last: runs without it keep every other draw
            draw = torch.rand(1, generator=generator, device=latent.device)
            kept.append((draw >= first_frame_p).float())
    first_frame = torch.cat(kept) if kept else None
    return torch.cat(latents), torch.cat(noise), torch.cat(levels), first_frame


def train(
    cfg: TrainParams,
    spec: ModelSpec,
    table: pl.DataFrame,
    out: TrainOutputs,
    log: Callable[[str], None] = print,
    evaluator: StepEvaluator | None = None,
    warm: WarmStart | None = None,
) -> dict[str, float | str]:
    """Train the spec's base transformer (or the `warm` start's weights) on the training clips
    of `table` (a `clip_table`), resuming from the latest checkpoint of the same run; write
    under `out` and return summary metrics (on the main process; other ranks return {}).

    With an `evaluator`, the main process evaluates at step 0, at the steps it names (each of
    those a checkpoint) and at the last step, and the run stops when its early-stopping rule
    says so; `model/` is then the checkpoint it chose and `last_model/` the last step's."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=cfg.mixed_precision,
        # without a GPU, accelerate only joins a torchrun process group (gloo) when told cpu=True
        cpu=not torch.cuda.is_available(),
        # two experts trained in one run: each step runs one, and DDP must not wait for the
        # other's gradients
        kwargs_handlers=(
            [DistributedDataParallelKwargs(find_unused_parameters=True)]
            if spec.shape.experts and cfg.experts == "both"
            else []
        ),
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    fingerprint = run_fingerprint(cfg, spec, table, world)
    fingerprint["evaluation"] = evaluator.fingerprint if evaluator else None
    fingerprint["init"] = warm.identity if warm else None
    # rank 0 decides for all: ranks that decided apart would run different steps and hang
    decision = [resume_point(out, fingerprint, cfg.steps, cfg.resume) if main else None]
    resume_from, why = broadcast_object_list(decision)[0]

    torch.manual_seed(cfg.seed)
    transformer = starting_transformer(spec, cfg, warm)
    lora = cfg.mode == "lora"
    apply_memory_switches(transformer, cfg.memory, accelerator.device)
    apply_speed_switches(transformer, cfg.attention_backend, cfg.compile)
    transformer.train()
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # not passed to prepare(): accelerate would step it once per process
    lr_scheduler = get_scheduler(
        cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps
    )
    transformer, optimizer = accelerator.prepare(transformer, optimizer)
    accelerator.register_for_checkpointing(lr_scheduler)
    register_hooks(accelerator, spec, lora)

    def make_sampler(rank: int) -> ResolutionSampler:
        buckets = table["bucket"].to_list()
        return ResolutionSampler(
            buckets, cfg.batch_size, cfg.seed, rank, world, grad_accum=cfg.grad_accum
        )

    # the loader's sampler may run ahead of the loop (prefetching): the checkpointed position
    # is that of a twin walked one step batch per optimizer step
    sampler, position = make_sampler(rank), make_sampler(0)
    state = RunState(step=0, fingerprint=fingerprint, sampler=position.state_dict())
    written: list[Path] = []  # this run's checkpoints, oldest first
    timer = StepTimer()
    if resume_from is not None:
        with timer.pause("checkpoint_load"):
            accelerator.load_state(str(resume_from))
        # checkpoints fall on optimizer steps; accelerate's restored micro-step count would
        # misplace the updates if train.grad_accum changed with the same global batch
        accelerator.step = 0
        state = RunState.read(resume_from)
        sampler.load_state_dict(state.sampler)
        position.load_state_dict(state.sampler)
        written = [f for f in out.checkpoint_folders() if f <= resume_from]
        if evaluator is not None:
            evaluator.load_state_dict(state.evaluator)
    positions_taken = position.step_batches()
    loader = DataLoader(
        CachedClips(table),
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        # its own generator: iterating must not draw from the global one (dropout's)
        generator=torch.Generator().manual_seed(cfg.seed),
        pin_memory=accelerator.device.type == "cuda",
    )
    if main:
        log(why)
        log(
            f"training {sum(p.numel() for p in trainable):,} parameters ({cfg.mode}) of "
            f"{spec.name} on {len(table)} clips, steps {state.step + 1}-{cfg.steps} "
            f"({world} process(es), {accelerator.device})"
        )
    # per-step curves for `dvc plots show`; no experiment refs from runs outside `dvc exp run`
    live = (
        StepLog(str(out.dvclive), resume=resume_from is not None, save_dvc_exp=False, dvcyaml=None)
        if main
        else None
    )
    if live is not None:
        trim_curves(out.dvclive, state.step)  # a crash after the checkpoint logged steps past it

    history = state.evaluator.get("history", [])  # read by every rank: they agree on it
    evaluated_last = history[-1]["step"] if history else None

    def evaluate(step: int) -> bool:
        """Evaluate on the main process; every rank gets its decision: whether to stop."""
        nonlocal evaluated_last
        stop = [False]
        if main:
            model = accelerator.unwrap_model(transformer)
            with evaluation_mode(model):
                log(evaluator.evaluate(step, model, accelerator.device))
            stop_decision = evaluator.decision()
            state.evaluator = evaluator.state_dict()
            stop = [stop_decision.stop]
            if stop_decision.stop:
                log(stop_decision.reason)
        evaluated_last = step
        return broadcast_object_list(stop)[0]

    stopped = False
    if evaluator is not None and state.step == 0:
        evaluate(0)  # the base: the reference every later evaluation is read against
    elif evaluator is not None:  # a finished run that stopped early stays stopped
        stopped = broadcast_object_list([main and evaluator.decision().stop])[0]

    batches = iter(loader)
    micro_positions = [
        [(m * world + rank) * cfg.batch_size + i for i in range(cfg.batch_size)]
        for m in range(cfg.grad_accum)
    ]
    first, last_log = state.step + 1, 0.0
    # on a terminal only (disable=None): a DVC stage's or Dagster's log gets the log lines
    quiet = True if not main or stopped else None
    progress = tqdm(range(first, cfg.steps + 1), disable=quiet, desc="train")
    for step in progress if not stopped else ():
        timer.start_step()
        step_loss = 0.0
        # one span of noise levels per step, the same on every rank: with two experts, the step
        # trains one (the other gets no gradient, and its optimizer state does not move)
        span = spec.noise_span(
            cfg.experts,
            cfg.weighting_scheme,
            sample_generator(cfg.seed, step, STEP_DRAW, accelerator.device),
        )
        for positions in micro_positions:
            with timer.waiting(timed=step > first):
                batch = next(batches)
            with accelerator.accumulate(transformer):
                moments, conditioning = split_batch(batch, accelerator.device)
                latents, noise, levels, kept = draw_inputs(
                    spec, moments, cfg.weighting_scheme, cfg.seed, step, positions, span,
                    cfg.first_frame_p,
                )  # fmt: skip
                if kept is not None:
                    conditioning["first_frame_kept"] = kept
                loss = spec.loss(
                    transformer, latents, conditioning, levels, noise, cfg.weighting_scheme
                ).mean()
                # every rank sees the same value: all stop together, before a bad update
                shared = accelerator.reduce(loss.detach(), reduction="mean").item()
                if not math.isfinite(shared):
                    raise NonFiniteLoss(
                        f"step {step}: the loss is {shared}; training stopped before the update. "
                        f"The last good checkpoint stays in {out.checkpoints} (a changed "
                        "train.lr starts a fresh run)"
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    norm = accelerator.clip_grad_norm_(trainable, 1.0)
                    if not math.isfinite(float(norm)):  # synced: the same on every rank
                        raise NonFiniteLoss(
                            f"step {step}: the gradient norm is {float(norm)} (loss {shared}); "
                            "training stopped before the update. The last good checkpoint "
                            f"stays in {out.checkpoints}"
                        )
                optimizer.step()
                optimizer.zero_grad()
            step_loss += shared / cfg.grad_accum
        lr = lr_scheduler.get_last_lr()[0]  # the rate this step's update used
        lr_scheduler.step()
        next(positions_taken)
        state.step, state.sampler = step, position.state_dict()
        state.losses.append([step, step_loss, lr])
        seconds = timer.end_step(timed=step > first)  # the first step pays for start-up
        progress.set_postfix(loss=f"{step_loss:.4f}")
        if live is not None:
            live.step = step
            live.log_metric("train/loss", step_loss)
            live.log_metric("train/lr", lr)
            live.log_metric("train/seconds_per_step", seconds)
            live.next_step()
        evaluated = evaluator is not None and evaluator.due(step, cfg.steps)
        if evaluated:
            with timer.pause("evaluation"):
                stopped = evaluate(step)
        # every evaluated step is a checkpoint: early stopping may export any of them
        if evaluated or step % cfg.checkpoint_every == 0 or step == cfg.steps:
            with timer.pause("checkpoint_save"):
                written.append(save_checkpoint(accelerator, out, state))
                if main:
                    protected = _protected_checkpoint(evaluator, out)
                    prune_checkpoints(out, cfg.keep_checkpoints, written, protected)
        if main and (time.perf_counter() - last_log > LOG_EVERY_SECONDS or step == cfg.steps):
            last_log = time.perf_counter()
            log(f"step {step}/{cfg.steps}: loss {step_loss:.4f}, lr {lr:.3g}")
        if stopped:
            break
    progress.close()
    if evaluator is not None and evaluated_last != state.step:
        # resumed at a checkpoint that was never evaluated (train.steps lowered to it): the
        # last step is always judged
        with timer.pause("evaluation"):
            stopped = evaluate(state.step) or stopped

    metrics: dict[str, float | str] = {}
    if main:
        stop_decision = evaluator.decision() if evaluator is not None else None
        # the last step's weights and the chosen ones change together, or not at all
        with atomic_dirs(out.last_model, out.model) as (last_model, model):
            spec.save_trained(accelerator.unwrap_model(transformer), last_model, lora)
            chosen = _export_model(stop_decision, out, state.step, last_model, model, log)
        summary = {
            **timer.summary(),
            "processes": world,
            "trainable_parameters": sum(p.numel() for p in trainable),
            "resumed_from_step": first - 1,
            "last_step": state.step,
            "chosen_step": chosen,
            "stopped_early": int(stopped),
        }
        metrics = _write_loss_log(state.losses, out, summary)
        live.end()
        log(f"loss {metrics['loss_first']:.4f} -> {metrics['loss_last']:.4f}")
        if evaluator is not None:
            RunEvaluations(
                history=evaluator.state_dict()["history"],
                last_step=state.step,
                chosen_step=chosen,
                stopped_early=stopped,
                decision=stop_decision.reason,
            ).write(out.evaluations)
            log(f"model: step {chosen} ({stop_decision.reason})")
        # for the asset's metadata, not the DVC metrics
        metrics = {**metrics, "start": why}
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics


def _protected_checkpoint(evaluator: StepEvaluator | None, out: TrainOutputs) -> Path | None:
    """The checkpoint early stopping would export: pruning keeps it however old it is."""
    chosen = evaluator.decision().chosen if evaluator is not None else None
    return out.checkpoint(chosen) if chosen else None


def _export_model(
    decision: StopDecisionLike | None,
    out: TrainOutputs,
    last: int,
    last_model: Path,
    model: Path,
    log: Callable[[str], None],
) -> int:
    """Fill `model`: the checkpoint early stopping chose (its trainable weights, already in the
    export format), else the last step's weights (`last_model`). Returns the step exported."""
    best = decision.chosen if decision is not None else None
    source = CheckpointFiles(out.checkpoint(best)).model if best else last_model
    if best and not source.is_dir():
        # chosen under a rule changed since (eval.early_stopping), after it was pruned
        log(f"{source.parent.name} was pruned before it was chosen: exporting step {last}")
        best, source = None, last_model
    shutil.copytree(source, model, dirs_exist_ok=True)
    return best or last


def trim_curves(folder: Path, step: int) -> None:
    """Drop dvclive's rows after `step` (logged by a run that died before its next checkpoint),
    so a resumed run does not log those steps twice."""
    for curve in folder.glob("plots/metrics/**/*.tsv"):
        header, *rows = curve.read_text().splitlines()
        column = header.split("\t").index("step")
        kept = [row for row in rows if _row_step(row, column) <= step]
        if len(kept) < len(rows):
            with atomic_path(curve) as tmp:
                tmp.write_text("\n".join([header, *kept]) + "\n")


def _row_step(row: str, column: int) -> float:
    """A curve row's step; a row cut short by a kill mid-append counts as past every step."""
    try:
        return int(row.split("\t")[column])
    except (IndexError, ValueError):
        return float("inf")


def _write_loss_log(
    losses: list[list[float]], out: TrainOutputs, timing: dict[str, float]
) -> dict[str, float]:
    """loss.csv (a DVC plot) and metrics.json: the mean loss of the first and last few steps."""
    with atomic_path(out.loss_csv) as tmp:
        lines = ["step,loss,lr"] + [f"{int(s)},{loss:.6f},{lr:.6g}" for s, loss, lr in losses]
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
    plot_losses([(int(s), loss) for s, loss, _ in losses], [], out.loss_plot)
    return metrics

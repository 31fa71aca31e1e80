"""Checkpoints that hold the whole training state, and the decision to resume from one.

A checkpoint folder `checkpoints/step-NNNNNN/` holds accelerate's `save_state` (optimizer, LR
schedule, RNG states), the trainable weights in the family's export format (`transformer/`:
the adapter alone in LoRA mode, written by a save hook instead of accelerate's whole model) and
`state.json`: step, loss history, the sampler's position (JSON, never pickle) and the run's
fingerprint; written last, `complete.json` lists every other file with its size (as
SimpleTuner's `.guard`). It is written under a temporary name and renamed when complete; the
latest `train.keep_checkpoints` are kept. A checkpoint whose files do not match its marker (a
file missing or truncated, no marker) is passed over on resume, which says which and why.

A run resumes from the latest checkpoint of the same run: every setting that shapes the run the
same (`run_fingerprint`); checkpoints of other runs in the folder are passed over. Without one
it starts fresh, and says which settings changed since the newest.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import torch
from accelerate import Accelerator

from dagster_project.core.hashing import cache_key
from dagster_project.core.params import TrainParams
from dagster_project.core.paths import CheckpointFiles, TrainOutputs
from dagster_project.models.spec import ModelSpec

# schedules whose LR at a step does not depend on the total: raising train.steps continues them
OPEN_ENDED_SCHEDULES = ("constant", "constant_with_warmup")


@dataclass
class RunState:
    """What state.json holds besides accelerate's files."""

    step: int
    fingerprint: dict
    sampler: dict
    losses: list[list[float]] = field(default_factory=list)  # [step, loss, lr] per step
    evaluator: dict = field(default_factory=dict)  # the in-loop evaluator's history

    @classmethod
    def read(cls, folder: Path) -> RunState:
        data = json.loads(CheckpointFiles(folder).state.read_text())
        return cls(
            data["step"],
            data["fingerprint"],
            data["sampler"],
            data["losses"],
            data.get("evaluator", {}),  # none before in-loop evaluation
        )


def run_fingerprint(cfg: TrainParams, spec: ModelSpec, table: pl.DataFrame, world: int) -> dict:
    """Everything that shapes the run's trajectory; a checkpoint is resumed only if it matches.

    The number of processes is not in it, only the global batch (a run on 4 processes with batch
    1 continues one on 2 with batch 2); `train.steps` only when the LR schedule depends on it.
    """
    data = cache_key(
        clips=table["sha256"].to_list(),
        buckets=table["bucket"].to_list(),
        latents=table["latent_key"].to_list(),
        texts=table["text_key"].to_list(),
    )
    schedule = {"lr_scheduler": cfg.lr_scheduler, "warmup_steps": cfg.warmup_steps}
    if cfg.lr_scheduler not in OPEN_ENDED_SCHEDULES:
        schedule["steps"] = cfg.steps
    return {
        "data": data,
        "model": spec.base.identity(),
        "family": spec.name,
        "mode": cfg.mode,
        "lora": cfg.lora.model_dump() if cfg.mode == "lora" else None,
        "optimizer": {"lr": cfg.lr, "weight_decay": cfg.weight_decay},
        "schedule": schedule,
        "seed": cfg.seed,
        "weighting_scheme": cfg.weighting_scheme,
        "mixed_precision": cfg.mixed_precision,
        "global_batch": cfg.batch_size * cfg.grad_accum * world,
        # which experts train, for a model that has them (one-transformer runs keep their keys)
        **({"experts": cfg.experts} if spec.shape.experts else {}),
        # image-to-video and how often it drops the first frame (text-to-video keeps its keys)
        **({"task": cfg.task, "first_frame_p": cfg.first_frame_p} if cfg.task == "i2v" else {}),
    }


def write_marker(folder: Path) -> None:
    """Mark a checkpoint folder complete: every file in it and its size, written last."""
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    listing = {f.relative_to(folder).as_posix(): f.stat().st_size for f in files}
    CheckpointFiles(folder).complete.write_text(json.dumps({"files": listing}, indent=1))


def damage(folder: Path) -> str | None:
    """Why a checkpoint folder is not whole (no marker, a file missing or of another size than
    the marker lists), or None."""
    marker = CheckpointFiles(folder).complete
    try:
        listing = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no completion marker (complete.json)"
    for name, size in listing.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is {path.stat().st_size} bytes, not {size}"
    return None


def resume_point(
    out: TrainOutputs, fingerprint: dict, steps: int, resume: str
) -> tuple[Path | None, str]:
    """(the checkpoint to resume from or None, why): the newest whole checkpoint of the same
    run at or below `steps`. A damaged one (a file missing or truncated, a crash mid-write on a
    filesystem without ordered renames) is passed over, with the reason, not taken as a reason
    to start fresh and lose the rest."""
    if resume == "never":
        return None, "starting fresh: train.resume is never"
    skipped = []
    other = None  # why the newest checkpoint of another run does not continue
    for folder in reversed(out.checkpoint_folders()):
        problem = damage(folder)
        try:
            saved = None if problem else RunState.read(folder)
        except (OSError, ValueError, KeyError, TypeError) as error:
            problem = f"state.json unreadable ({error})"
        if problem:
            skipped.append(f"{folder.name} ({problem})")
            continue
        changed = [k for k, value in fingerprint.items() if saved.fingerprint.get(k) != value]
        if changed:  # another run's (an earlier one in this folder): this run's may be older
            other = other or (
                f"starting fresh: {', '.join(changed)} changed since the checkpoint at step "
                f"{saved.step}"
            )
            continue
        if saved.step > steps:
            continue  # train.steps was lowered: an earlier checkpoint of this run may do
        damaged = f"; passed over damaged {', '.join(skipped)}" if skipped else ""
        return (
            folder,
            f"resuming from the checkpoint at step {saved.step} ({folder.name}){damaged}",
        )
    if other:
        return None, other
    return None, "starting fresh: no checkpoint yet" + (
        f" (damaged: {', '.join(skipped)})" if skipped else ""
    )


def register_hooks(accelerator: Accelerator, spec: ModelSpec, lora: bool) -> None:
    """Save and load the trainable weights in the family's export format (the adapter alone in
    LoRA mode), instead of accelerate's copy of the whole model."""

    def save(models: list[torch.nn.Module], weights: list, output_dir: str) -> None:
        if accelerator.is_main_process:
            folder = CheckpointFiles(Path(output_dir)).model
            folder.mkdir(exist_ok=True)
            spec.save_trained(accelerator.unwrap_model(models[0]), folder, lora)
        weights.clear()

    def load(models: list[torch.nn.Module], input_dir: str) -> None:
        model = accelerator.unwrap_model(models.pop())
        folder = CheckpointFiles(Path(input_dir)).model
        if lora:
            spec.load_adapter(model, folder)
        else:
            model.load_state_dict(spec.load_transformer(folder).state_dict())

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def save_checkpoint(accelerator: Accelerator, out: TrainOutputs, state: RunState) -> Path:
    """Write a checkpoint on every rank (each saves its RNG state) and publish it whole."""
    final = out.checkpoint(state.step)
    partial = final.with_name(f".{final.name}.partial")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        CheckpointFiles(partial).state.write_text(json.dumps(state.__dict__, indent=1))
        write_marker(partial)
        if final.exists():  # a checkpoint of an earlier run at the same step
            shutil.rmtree(final)
        os.replace(partial, final)
    accelerator.wait_for_everyone()
    return final


def prune_checkpoints(
    out: TrainOutputs, keep: int, written: list[Path], best: Path | None = None
) -> list[Path]:
    """Keep the latest `keep` checkpoints of this run (`written`, oldest first) and `best` (the
    one early stopping would export); delete every other one, an earlier run's included.
    Called after a save, so a run that dies before its first checkpoint has deleted nothing.
    Returns what was deleted."""
    kept = written[-keep:] + ([best] if best is not None else [])
    doomed = [folder for folder in out.checkpoint_folders() if folder not in kept]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed

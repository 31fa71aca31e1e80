"""Where a process computes, and a trained model placed for inference there as training placed
it (its memory switches and mixed precision), so scoring fits wherever training fitted."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from dagster_project.core.params import MemoryParams
from dagster_project.models.adapters import apply_memory_switches

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def process_device(local_rank: int = 0) -> torch.device:
    """The device of a process of local rank `local_rank`: its GPU where there are GPUs (one
    process per GPU), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


@dataclass(frozen=True)
class InferencePlacement:
    """A model's device, memory switches (`train.memory`) and mixed precision
    (`train.mixed_precision`, applied on a GPU, as the trainer's autocast does there)."""

    device: torch.device
    memory: MemoryParams
    mixed_precision: str = "no"

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` in eval mode on the device (or offloaded to it by group), fp8-stored where
        training stored it so."""
        if self.memory.group_offload == "none":
            model.to(self.device)
        apply_memory_switches(model, self.memory, self.device)
        return model.eval()

    def autocast(self) -> AbstractContextManager:
        """The mixed precision to compute in (none on a CPU, where the scores stay fp32)."""
        dtype = AUTOCAST_DTYPES.get(self.mixed_precision)
        if dtype is None or self.device.type != "cuda":
            return nullcontext()
        return torch.autocast("cuda", dtype)

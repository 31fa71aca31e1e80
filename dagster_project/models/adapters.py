"""LoRA adapters (peft) and the memory switches (diffusers hooks), shared by every family."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file

from dagster_project.core.params import LoraParams, MemoryParams

ADAPTER = "default"
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' name: load_lora_weights finds it
# the adapter in ComfyUI's key names (`diffusion_model.` + its module names), beside LORA_FILE
COMFYUI_FILE = "comfyui_lora.safetensors"


def add_lora(transformer: torch.nn.Module, lora: LoraParams, default_targets: tuple[str, ...]):
    """Freeze the transformer and add a LoRA adapter; only the adapter's weights train."""
    transformer.requires_grad_(False)
    targets = list(lora.targets or default_targets)
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        init_lora_weights=True,  # B = 0: the adapted model starts as the base
        target_modules=targets,
    )
    transformer.add_adapter(config, adapter_name=ADAPTER)


def has_lora(transformer: torch.nn.Module) -> bool:
    return ADAPTER in (getattr(transformer, "peft_config", None) or {})


def lora_state(transformer: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """The adapter's weights (peft key names, cloned: never shared with the live model) and its
    config, which diffusers needs to restore alpha."""
    weights = get_peft_model_state_dict(transformer, adapter_name=ADAPTER)
    config = transformer.peft_config[ADAPTER].to_dict()
    return {k: v.detach().clone().contiguous() for k, v in weights.items()}, config


def load_lora_state(transformer: torch.nn.Module, folder: Path) -> None:
    """Put the adapter weights a family's `save_lora_weights` wrote in `folder` back into the
    transformer's adapter (resume: the adapter is already there, with the same config)."""
    saved = load_file(folder / LORA_FILE)
    weights = {key.removeprefix("transformer."): value for key, value in saved.items()}
    result = set_peft_model_state_dict(transformer, weights, adapter_name=ADAPTER)
    unplaced = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unplaced:
        raise ValueError(
            f"{folder / LORA_FILE}: adapter weights the model has no place for: {unplaced[:3]}"
        )


def apply_memory_switches(
    transformer: torch.nn.Module, memory: MemoryParams, device: torch.device
) -> None:
    """Gradient checkpointing, fp8 layerwise casting and group offloading, as params ask.

    Casting must come after the adapter is added: diffusers then keeps peft's LoRA layers in
    full precision (added later, they would be created in fp8).
    """
    if memory.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    if memory.layerwise_casting:
        transformer.enable_layerwise_casting(
            storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32
        )
    if memory.offload_stream and device.type != "cuda":
        raise ValueError("train.memory.offload_stream: needs a CUDA device (running on cpu)")
    if memory.group_offload != "none":
        transformer.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type=f"{memory.group_offload}_level",
            num_blocks_per_group=1 if memory.group_offload == "block" else None,
            use_stream=memory.offload_stream,
        )


def apply_speed_switches(
    transformer: torch.nn.Module, attention_backend: str, compile: bool
) -> None:
    """The attention kernel (diffusers' dispatcher; `native` leaves PyTorch's SDPA to choose)
    and torch.compile of the repeated blocks (compiled once, reused by every block)."""
    if attention_backend != "native":
        transformer.set_attention_backend(attention_backend)
    if compile:
        transformer.compile_repeated_blocks()

"""Wan 2.1: the family spec (see models/spec.py), the embedded tiny default, real checkpoints.

A base model is always a diffusers folder with `transformer/`, `vae/` and `scheduler/`. The
embedded default is written to such a folder from config (random init, fixed seed), so every
later stage loads it with `from_pretrained` exactly as it loads a real Wan2.1 checkpoint.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel
from safetensors.torch import save_file

from dagster_project.core.params import ModelParams
from dagster_project.core.shapes import FAMILY_SHAPES
from dagster_project.models import flow_matching
from dagster_project.models.diffusers_spec import DiffusersSpec, PipelinePromptEncoder

# Wan2.1's own sampling shift for 480p (5.0 for 720p); a real checkpoint's scheduler/ wins
DEFAULT_SHIFT = 3.0
# every Linear of a block that ComfyUI's (and diffusers' own) Wan LoRA key mapping covers
LORA_TARGETS = (
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
    "ffn.net.0.proj", "ffn.net.2",
)  # fmt: skip
COMFYUI_FILE = "comfyui_lora.safetensors"
# diffusers module -> the original Wan (and ComfyUI) module, inside blocks.N
COMFYUI_BLOCK_NAMES = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v", "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o",
    "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}  # fmt: skip


def tiny_transformer(model: ModelParams, text_dim: int, channels: int) -> WanTransformer3DModel:
    """A small Wan transformer over `channels` latent channels, random init from `model.seed`."""
    tiny = model.tiny
    torch.manual_seed(model.seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=tiny.num_attention_heads,
        attention_head_dim=tiny.attention_head_dim,
        in_channels=channels,
        out_channels=channels,
        text_dim=text_dim,
        freq_dim=tiny.freq_dim,
        ffn_dim=tiny.ffn_dim,
        num_layers=tiny.num_layers,
        rope_max_seq_len=256,
    )


def tiny_vae(model: ModelParams, **layout: Any) -> AutoencoderKLWan:
    """A small Wan VAE (`layout`: the architecture's own arguments), calibrated; seeded again,
    so it (and every cached latent) does not depend on the transformer's size."""
    torch.manual_seed(model.seed)
    vae = AutoencoderKLWan(
        base_dim=model.tiny.vae_base_dim,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        **layout,
    )
    calibrate_tiny_vae(vae)
    return vae


def build_tiny(model: ModelParams, text_dim: int) -> tuple[WanTransformer3DModel, AutoencoderKLWan]:
    """The embedded default: a small Wan transformer and VAE, random init from `model.seed`."""
    # z_dim=16: the real Wan 2.1 VAE's latent width
    return tiny_transformer(model, text_dim, 16), tiny_vae(model, z_dim=16)


CALIBRATION_LOGVAR = -9.0  # posterior std 0.01: a clip's latent is its content, not noise


@torch.no_grad()
def calibrate_tiny_vae(vae: AutoencoderKLWan) -> None:
    """Give a random-init VAE what a trained one has: a narrow posterior and per-channel latent
    statistics (`latents_mean`, `latents_std`) that standardize its latents.

    Without this, a random-init posterior has logvar ~ 0 (std 1) around means of std ~0.15, and
    Wan's real statistics scale that content down further: every training latent would be
    mostly posterior noise, and the embedded model could not learn (or memorize) a clip. The
    statistics come from fixed synthetic clips (smooth random color fields), not from data.
    """
    z_dim = vae.config.z_dim
    vae.quant_conv.weight[z_dim:] = 0  # the logvar half: a constant
    vae.quant_conv.bias[z_dim:] = CALIBRATION_LOGVAR
    generator = torch.Generator().manual_seed(0)
    fields = torch.rand(4, 3, 5, 4, 4, generator=generator) * 2 - 1
    clips = torch.nn.functional.interpolate(fields, size=(9, 64, 64), mode="trilinear")
    means = vae.encode(clips).latent_dist.mean
    vae.register_to_config(
        latents_mean=means.mean(dim=(0, 2, 3, 4)).tolist(),
        latents_std=means.std(dim=(0, 2, 3, 4)).tolist(),
    )


class WanPromptEncoder(PipelinePromptEncoder):
    """Captions -> `prompt_embeds` [text_len, D], through `WanPipeline.encode_prompt` itself
    (its cleaning, max-length padding and zeros past each caption's tokens)."""

    family = "wan"
    pipeline_class = WanPipeline


class WanSpec(DiffusersSpec):
    """The Wan 2.1 family over one base model folder (the `ModelSpec` protocol)."""

    name = "wan"
    shape = FAMILY_SHAPES["wan"]
    lora_targets = LORA_TARGETS
    transformer_class = WanTransformer3DModel
    vae_class = AutoencoderKLWan
    pipeline_class = WanPipeline
    default_scheduler = {"shift": DEFAULT_SHIFT}
    text_dim_key = "text_dim"
    prompt_encoder_class = WanPromptEncoder
    build_tiny = staticmethod(build_tiny)

    @functools.cached_property
    def _latent_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        # the transformer (and WanPipeline) works on (latent - latents_mean) / latents_std
        config = self.vae.config
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1, 1)
        return mean, std

    def _normalize(self, sample: torch.Tensor) -> torch.Tensor:
        """(sample - latents_mean) / latents_std, per channel, with the VAE's statistics."""
        mean, std = (t.to(sample.device) for t in self._latent_scale)
        return (sample - mean) / std

    def _denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        mean, std = (t.to(latents.device) for t in self._latent_scale)
        return latents * std + mean

    # training
    def loss(
        self,
        transformer: torch.nn.Module,
        latents: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
        levels: torch.Tensor,
        noise: torch.Tensor,
        weighting_scheme: str = "none",
    ) -> torch.Tensor:
        """Per-sample flow-matching loss at noise levels (sigmas) `levels`."""
        noisy, target = flow_matching.noisy_latents(latents, noise, levels)
        prediction = transformer(
            hidden_states=noisy,
            timestep=self._timesteps(levels, latents),
            encoder_hidden_states=conditioning["prompt_embeds"],
            return_dict=False,
        )[0]
        return flow_matching.weighted_mse(prediction, target, levels, weighting_scheme)

    def _timesteps(self, levels: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The transformer's `timestep` for each sample's level: one number per sample."""
        return levels * self.scheduler.config.num_train_timesteps

    # saving
    def save_trained(self, transformer: torch.nn.Module, folder: Path, lora: bool) -> None:
        """Full weights with `save_pretrained`; an adapter in diffusers' format (for
        `WanPipeline.load_lora_weights`) and in ComfyUI's (`COMFYUI_FILE`)."""
        if not lora:
            super().save_trained(transformer, folder, lora)
            return
        weights, config = self._save_adapter(transformer, folder)
        save_file(comfyui_lora(weights, config["lora_alpha"]), str(folder / COMFYUI_FILE))


def comfyui_lora(weights: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """peft LoRA weights of a Wan transformer -> ComfyUI's keys.

    `blocks.0.attn1.to_q.lora_A.weight` -> `diffusion_model.blocks.0.self_attn.q.lora_down.weight`
    (`lora_B` -> `lora_up`), plus one `.alpha` per module, so the update keeps alpha / rank.
    Only block modules are mapped (LORA_TARGETS); diffusers itself converts files in this
    format back (`WanPipeline.load_lora_weights`), which is how the tests check the mapping.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        module, _, leaf = key.partition(".lora_")
        prefix, index, inner = module.split(".", 2)
        if (
            prefix != "blocks"
            or inner not in COMFYUI_BLOCK_NAMES
            or leaf not in ("A.weight", "B.weight")
        ):
            raise ValueError(f"{key}: no ComfyUI name for this LoRA weight (train.lora.targets)")
        name = f"diffusion_model.blocks.{index}.{COMFYUI_BLOCK_NAMES[inner]}"
        side = "lora_down" if leaf == "A.weight" else "lora_up"
        out[f"{name}.{side}.weight"] = tensor.detach().clone().contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out

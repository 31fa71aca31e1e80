"""Wan 2.1: the family spec (see models/spec.py), the embedded tiny default, real checkpoints.

A base model is always a diffusers folder with `transformer/`, `vae/` and `scheduler/`. The
embedded default is written to such a folder from config (random init, fixed seed), so every
later stage loads it with `from_pretrained` exactly as it loads a real Wan2.1 checkpoint.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from safetensors.torch import save_file

from dagster_project.hashing import folder_sha256
from dagster_project.models import flow_matching
from dagster_project.models.adapters import ADAPTER, LORA_FILE, has_lora, lora_state
from dagster_project.models.text_encoder import TextEncoder
from dagster_project.params import ModelParams
from dagster_project.paths import BaseModelFiles
from dagster_project.shapes import FAMILY_SHAPES, Bucket

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


def build_tiny(model: ModelParams, text_dim: int) -> tuple[WanTransformer3DModel, AutoencoderKLWan]:
    """The embedded default: a small Wan transformer and VAE, random init from `model.seed`."""
    tiny = model.tiny
    torch.manual_seed(model.seed)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=tiny.num_attention_heads,
        attention_head_dim=tiny.attention_head_dim,
        in_channels=16,
        out_channels=16,
        text_dim=text_dim,
        freq_dim=tiny.freq_dim,
        ffn_dim=tiny.ffn_dim,
        num_layers=tiny.num_layers,
        rope_max_seq_len=256,
    )
    # seeded again: the VAE (and so every cached latent) must not depend on the transformer's size
    torch.manual_seed(model.seed)
    # z_dim=16 keeps the default latents_mean/std of the real Wan VAE meaningful
    vae = AutoencoderKLWan(
        base_dim=tiny.vae_base_dim,
        z_dim=16,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    return transformer, vae


def write_base_model(
    model: ModelParams, text_dim: int, out: BaseModelFiles, pretrained: Path | None = None
) -> None:
    """Save the base model folder (transformer/, vae/, scheduler/) the pipeline loads: the
    local checkpoint `pretrained`, or the embedded tiny model built from `model.tiny`."""
    if pretrained is not None:
        source = BaseModelFiles(pretrained)
        transformer = WanTransformer3DModel.from_pretrained(
            source.transformer, use_safetensors=True
        )
        vae = AutoencoderKLWan.from_pretrained(source.vae, use_safetensors=True)
        scheduler = (
            FlowMatchEulerDiscreteScheduler.from_pretrained(source.scheduler)
            if source.scheduler.is_dir()
            else FlowMatchEulerDiscreteScheduler(shift=DEFAULT_SHIFT)
        )
    else:
        transformer, vae = build_tiny(model, text_dim)
        scheduler = FlowMatchEulerDiscreteScheduler(shift=DEFAULT_SHIFT)
    if transformer.config.text_dim != text_dim:
        raise ValueError(
            f"model.text_encoder gives {text_dim}-d embeddings but the transformer expects "
            f"text_dim={transformer.config.text_dim}"
        )
    transformer.save_pretrained(out.transformer)
    vae.save_pretrained(out.vae)
    scheduler.save_pretrained(out.scheduler)


@dataclass(frozen=True)
class WanPromptEncoder:
    """Captions -> `prompt_embeds` [text_len, D], through `WanPipeline.encode_prompt` itself
    (its cleaning, max-length padding and zeros past each caption's tokens)."""

    text: TextEncoder
    text_len: int

    @property
    def identity(self) -> str:
        return f"wan:{self.text.identity}:text_len={self.text_len}"

    @torch.no_grad()
    def encode(self, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        pipe = WanPipeline(
            tokenizer=self.text.tokenizer,
            text_encoder=self.text.model,
            vae=None,
            scheduler=None,
            transformer=None,
        )
        embeds, _ = pipe.encode_prompt(
            captions,
            do_classifier_free_guidance=False,
            max_sequence_length=self.text_len,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
        return [{"prompt_embeds": e.contiguous()} for e in embeds]


class WanSpec:
    """The Wan 2.1 family over one base model folder (the `ModelSpec` protocol)."""

    name = "wan"
    shape = FAMILY_SHAPES["wan"]
    lora_targets = LORA_TARGETS

    def __init__(self, base: BaseModelFiles) -> None:
        self.base = base

    @functools.cached_property
    def vae(self) -> AutoencoderKLWan:
        vae = AutoencoderKLWan.from_pretrained(self.base.vae, use_safetensors=True)
        return vae.eval().requires_grad_(False)

    @functools.cached_property
    def scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        return FlowMatchEulerDiscreteScheduler.from_pretrained(self.base.scheduler)

    @functools.cached_property
    def identity(self) -> str:
        """The latent encoder's identity (the VAE's weights), part of every latent cache key."""
        return folder_sha256(self.base.vae)

    @functools.cached_property
    def _latent_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        # the transformer (and WanPipeline) works on (latent - latents_mean) / latents_std
        config = self.vae.config
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1, 1)
        return mean, std

    write_base_model = staticmethod(write_base_model)

    def prompt_encoder(self, text: TextEncoder, text_len: int) -> WanPromptEncoder:
        return WanPromptEncoder(text, text_len)

    # video
    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 frames [F, H, W, 3] -> the VAE posterior `mean` and `logvar` [C, f, h, w].

        The posterior is kept, not a sample, so each training step draws a fresh latent."""
        pixels = frames.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0
        posterior = self.vae.encode(pixels).latent_dist
        return {"mean": posterior.mean[0], "logvar": posterior.logvar[0]}

    def latents(
        self, moments: dict[str, torch.Tensor], generator: torch.Generator | None
    ) -> torch.Tensor:
        """Normalized latents [B, C, f, h, w]: a posterior sample (the mean when `generator`
        is None, for fixed evaluation inputs)."""
        mean, std = (t.to(moments["mean"].device) for t in self._latent_scale)
        posterior = DiagonalGaussianDistribution(
            torch.cat([moments["mean"], moments["logvar"]], dim=1)
        )
        sample = posterior.mean if generator is None else posterior.sample(generator)
        return (sample - mean) / std

    # transformer
    def load_transformer(self, folder: Path | None = None) -> WanTransformer3DModel:
        """A transformer saved with `save_pretrained` (default: the base model's)."""
        return WanTransformer3DModel.from_pretrained(
            folder or self.base.transformer, use_safetensors=True
        )

    def load_trained(self, folder: Path) -> WanTransformer3DModel:
        """A trained model: full weights, or the base with the adapter saved in `folder`
        loaded through `WanPipeline.load_lora_weights`, as a user would."""
        if not (folder / LORA_FILE).is_file():
            return self.load_transformer(folder)
        pipe = self._pipeline(self.load_transformer())
        pipe.load_lora_weights(folder, adapter_name=ADAPTER)
        return pipe.transformer

    # training
    def sample_noise_levels(
        self, count: int, weighting_scheme: str, generator: torch.Generator
    ) -> torch.Tensor:
        return flow_matching.sample_sigmas(self.scheduler, count, weighting_scheme, generator)

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
            timestep=levels * self.scheduler.config.num_train_timesteps,
            encoder_hidden_states=conditioning["prompt_embeds"],
            return_dict=False,
        )[0]
        return flow_matching.weighted_mse(prediction, target, levels, weighting_scheme)

    # sampling
    def _pipeline(self, transformer: torch.nn.Module) -> WanPipeline:
        return WanPipeline(
            tokenizer=None,
            text_encoder=None,
            vae=self.vae,
            scheduler=FlowMatchEulerDiscreteScheduler.from_config(self.scheduler.config),
            transformer=transformer,
        )

    @torch.no_grad()
    def generate(
        self,
        transformer: torch.nn.Module,
        conditioning: dict[str, torch.Tensor],
        bucket: Bucket,
        seed: int,
        steps: int,
        guidance_scale: float,
    ) -> torch.Tensor:
        """One normalized latent [C, f, h, w] through WanPipeline, from cached embeddings."""
        pipe = self._pipeline(transformer)
        pipe.set_progress_bar_config(disable=True)
        embeds = conditioning["prompt_embeds"]
        output = pipe(
            prompt_embeds=embeds,
            negative_prompt_embeds=torch.zeros_like(embeds) if guidance_scale > 1 else None,
            height=bucket.height,
            width=bucket.width,
            num_frames=bucket.frames,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=torch.Generator().manual_seed(seed),
            output_type="latent",
        )
        return output.frames[0]

    # saving
    def save_trained(self, transformer: torch.nn.Module, folder: Path, lora: bool) -> None:
        """Full weights with `save_pretrained`; an adapter in diffusers' format (for
        `WanPipeline.load_lora_weights`) and in ComfyUI's (`COMFYUI_FILE`)."""
        if not lora:
            transformer.save_pretrained(folder)
            return
        if not has_lora(transformer):
            raise ValueError("save_trained(lora=True): the transformer has no adapter")
        weights, config = lora_state(transformer)
        WanPipeline.save_lora_weights(
            folder, transformer_lora_layers=weights, transformer_lora_adapter_metadata=config
        )
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

"""Wan 2.1 family: the embedded tiny default and real local checkpoints, one spec.

A base model is always a diffusers folder with `transformer/` and `vae/` sub-folders. The
embedded default is written to such a folder from config (random init, fixed seed), so every
later stage loads it with `from_pretrained` exactly as it loads a real Wan2.1 checkpoint.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanPipeline,
    WanTransformer3DModel,
)

from dagster_project.hashing import folder_sha256
from dagster_project.params import ModelParams
from dagster_project.paths import BaseModelFiles
from dagster_project.shapes import FAMILY_SHAPES


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
    """Save the base model folder (transformer/ + vae/) the rest of the pipeline loads:
    the local checkpoint `pretrained`, or the embedded tiny model built from `model.tiny`."""
    if pretrained is not None:
        source = BaseModelFiles(pretrained)
        transformer = WanTransformer3DModel.from_pretrained(
            source.transformer, use_safetensors=True
        )
        vae = AutoencoderKLWan.from_pretrained(source.vae, use_safetensors=True)
    else:
        transformer, vae = build_tiny(model, text_dim)
    if transformer.config.text_dim != text_dim:
        raise ValueError(
            f"model.text_encoder gives {text_dim}-d embeddings but the transformer expects "
            f"text_dim={transformer.config.text_dim}"
        )
    transformer.save_pretrained(out.transformer)
    vae.save_pretrained(out.vae)


class WanSpec:
    """The Wan 2.1 family over one base model folder: what the dataset, the trainer and
    evaluation need of a model, without importing a diffusers class themselves."""

    shape = FAMILY_SHAPES["wan"]

    def __init__(self, base: BaseModelFiles) -> None:
        self.base = base

    @functools.cached_property
    def vae(self) -> AutoencoderKLWan:
        vae = AutoencoderKLWan.from_pretrained(self.base.vae, use_safetensors=True)
        return vae.eval().requires_grad_(False)

    @functools.cached_property
    def identity(self) -> str:
        """The latent encoder's identity (the VAE's weights), part of every latent cache key."""
        return folder_sha256(self.base.vae)

    def load_transformer(self, folder: Path | None = None) -> WanTransformer3DModel:
        """A transformer saved with `save_pretrained` (default: the base model's)."""
        return WanTransformer3DModel.from_pretrained(
            folder or self.base.transformer, use_safetensors=True
        )

    def latent_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std that map VAE latents to unit scale, shaped [1, C, 1, 1, 1].

        The transformer (and WanPipeline) works on (latent - mean) / std.
        """
        config = AutoencoderKLWan.load_config(self.base.vae)
        mean = torch.tensor(config["latents_mean"]).view(1, -1, 1, 1, 1)
        std = torch.tensor(config["latents_std"]).view(1, -1, 1, 1, 1)
        return mean, std

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode uint8 frames [F, H, W, 3] to the VAE posterior `mean` and `logvar`, each
        [C, f, h, w]. The posterior is kept, not a sample, so each step draws a fresh latent."""
        pixels = frames.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0
        posterior = self.vae.encode(pixels).latent_dist
        return {"mean": posterior.mean[0], "logvar": posterior.logvar[0]}

    def pipeline(self, transformer: WanTransformer3DModel) -> WanPipeline:
        """A WanPipeline that takes cached prompt embeddings (no tokenizer or text encoder)."""
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
        return WanPipeline(
            tokenizer=None,
            text_encoder=None,
            vae=self.vae,
            scheduler=scheduler,
            transformer=transformer,
        )

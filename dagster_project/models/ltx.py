"""LTX-Video: the family spec (see models/spec.py), the embedded tiny default, real checkpoints.

A base model is always a diffusers folder with `transformer/`, `vae/` and `scheduler/`. The
embedded default is written to such a folder from config (random init, fixed seed), so every
later stage loads it with `from_pretrained` exactly as it loads a real LTX-Video checkpoint.

The LTX transformer works on packed tokens [B, f*h*w, C] (`LTXPipeline._pack_latents`) and is
told the latent grid (num_frames, height, width) and the RoPE scale; everything outside this
module sees latents as [B, C, f, h, w], normalized as `LTXPipeline._normalize_latents` does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    FlowMatchEulerDiscreteScheduler,
    LTXPipeline,
    LTXVideoTransformer3DModel,
)
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from dagster_project.hashing import folder_sha256
from dagster_project.models import flow_matching
from dagster_project.models.adapters import ADAPTER, LORA_FILE, has_lora, lora_state
from dagster_project.models.text_encoder import TextEncoder
from dagster_project.params import ModelParams
from dagster_project.paths import BaseModelFiles
from dagster_project.shapes import FAMILY_SHAPES, Bucket

# LTX-Video's own scheduler config (diffusers' conversion script): the pipeline shifts sigmas by
# the video's token count (mu from base_shift to max_shift), then stretches them to end at 0.1;
# with dynamic shifting the scheduler's training sigmas are unshifted (shift=1.0)
SCHEDULER_CONFIG = {
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
}
# the real LTX VAE's latent width: the tiny default keeps it, so the transformer's input is real
LATENT_CHANNELS = 128
# every Linear of a block: self- and cross-attention and the feed-forward
LORA_TARGETS = (
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
    "ff.net.0.proj", "ff.net.2",
)  # fmt: skip


def build_tiny(
    model: ModelParams, text_dim: int
) -> tuple[LTXVideoTransformer3DModel, AutoencoderKLLTXVideo]:
    """The embedded default: a small LTX transformer and VAE, random init from `model.seed`.

    Of `model.tiny`, the transformer takes num_layers, num_attention_heads and
    attention_head_dim (LTX fixes its feed-forward at 4x and its timestep embedding at 256, so
    ffn_dim and freq_dim do not apply) and the VAE takes vae_base_dim as every block's width.
    """
    tiny = model.tiny
    torch.manual_seed(model.seed)
    inner_dim = tiny.num_attention_heads * tiny.attention_head_dim
    transformer = LTXVideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_attention_heads=tiny.num_attention_heads,
        attention_head_dim=tiny.attention_head_dim,
        cross_attention_dim=inner_dim,  # captions are projected to the model width first
        caption_channels=text_dim,
        num_layers=tiny.num_layers,
    )
    # seeded again: the VAE (and so every cached latent) must not depend on the transformer's size
    torch.manual_seed(model.seed)
    # three space-time downsamplings after a 4x4 patch: 32x in space and 8x in time, as LTX's
    width, layers = (tiny.vae_base_dim,) * 4, (1,) * 5
    vae = AutoencoderKLLTXVideo(
        latent_channels=LATENT_CHANNELS,
        block_out_channels=width,
        decoder_block_out_channels=width,
        layers_per_block=layers,
        decoder_layers_per_block=layers,
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
    )
    return transformer, vae


def write_base_model(
    model: ModelParams, text_dim: int, out: BaseModelFiles, pretrained: Path | None = None
) -> None:
    """Save the base model folder (transformer/, vae/, scheduler/) the pipeline loads: the
    local checkpoint `pretrained`, or the embedded tiny model built from `model.tiny`."""
    if pretrained is not None:
        source = BaseModelFiles(pretrained)
        transformer = LTXVideoTransformer3DModel.from_pretrained(
            source.transformer, use_safetensors=True
        )
        vae = AutoencoderKLLTXVideo.from_pretrained(source.vae, use_safetensors=True)
        scheduler = (
            FlowMatchEulerDiscreteScheduler.from_pretrained(source.scheduler)
            if source.scheduler.is_dir()
            else FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
        )
    else:
        transformer, vae = build_tiny(model, text_dim)
        scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    if transformer.config.caption_channels != text_dim:
        raise ValueError(
            f"model.text_encoder gives {text_dim}-d embeddings but the transformer expects "
            f"caption_channels={transformer.config.caption_channels}"
        )
    transformer.save_pretrained(out.transformer)
    vae.save_pretrained(out.vae)
    scheduler.save_pretrained(out.scheduler)


@dataclass(frozen=True)
class LTXPromptEncoder:
    """Captions -> `prompt_embeds` [text_len, D] and `prompt_attention_mask` [text_len] (bool),
    through `LTXPipeline.encode_prompt` itself (max-length padding; the encoder sees the padded
    ids without a mask, as LTX's T5 does; the mask marks each caption's tokens)."""

    text: TextEncoder
    text_len: int

    @property
    def identity(self) -> str:
        return f"ltx:{self.text.identity}:text_len={self.text_len}"

    @torch.no_grad()
    def encode(self, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        pipe = LTXPipeline(
            tokenizer=self.text.tokenizer,
            text_encoder=self.text.model,
            vae=None,
            scheduler=None,
            transformer=None,
        )
        embeds, masks, _, _ = pipe.encode_prompt(
            captions,
            do_classifier_free_guidance=False,
            max_sequence_length=self.text_len,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
        return [
            {"prompt_embeds": e.contiguous(), "prompt_attention_mask": m.contiguous()}
            for e, m in zip(embeds, masks, strict=True)
        ]


class LTXSpec:
    """The LTX-Video family over one base model folder (the `ModelSpec` protocol)."""

    name = "ltx"
    shape = FAMILY_SHAPES["ltx"]
    lora_targets = LORA_TARGETS

    def __init__(self, base: BaseModelFiles) -> None:
        self.base = base

    @functools.cached_property
    def vae(self) -> AutoencoderKLLTXVideo:
        vae = AutoencoderKLLTXVideo.from_pretrained(self.base.vae, use_safetensors=True)
        return vae.eval().requires_grad_(False)

    @functools.cached_property
    def scheduler(self) -> FlowMatchEulerDiscreteScheduler:
        return FlowMatchEulerDiscreteScheduler.from_pretrained(self.base.scheduler)

    @functools.cached_property
    def identity(self) -> str:
        """The latent encoder's identity (the VAE's weights), part of every latent cache key."""
        return folder_sha256(self.base.vae)

    @functools.cached_property
    def _patch(self) -> tuple[int, int]:
        # (spatial, temporal) token patch of the base transformer, read from its config: the
        # model passed to `loss` may be wrapped (accelerate) and so hide its own config
        config = LTXVideoTransformer3DModel.load_config(self.base.transformer)
        return config.get("patch_size", 1), config.get("patch_size_t", 1)

    @functools.cached_property
    def _rope_interpolation_scale(self) -> tuple[float, float, float]:
        # as LTXPipeline computes it, at the family's frame rate (the rate clips are trained at)
        spatial = self.vae.spatial_compression_ratio
        return self.vae.temporal_compression_ratio / self.shape.fps, spatial, spatial

    write_base_model = staticmethod(write_base_model)

    def prompt_encoder(self, text: TextEncoder, text_len: int) -> LTXPromptEncoder:
        return LTXPromptEncoder(text, text_len)

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
        is None, for fixed evaluation inputs), normalized with the VAE's latents_mean,
        latents_std and scaling_factor."""
        posterior = DiagonalGaussianDistribution(
            torch.cat([moments["mean"], moments["logvar"]], dim=1)
        )
        sample = posterior.mean if generator is None else posterior.sample(generator)
        return LTXPipeline._normalize_latents(
            sample, self.vae.latents_mean, self.vae.latents_std, self.vae.config.scaling_factor
        )

    # transformer
    def load_transformer(self, folder: Path | None = None) -> LTXVideoTransformer3DModel:
        """A transformer saved with `save_pretrained` (default: the base model's)."""
        return LTXVideoTransformer3DModel.from_pretrained(
            folder or self.base.transformer, use_safetensors=True
        )

    def load_trained(self, folder: Path) -> LTXVideoTransformer3DModel:
        """A trained model: full weights, or the base with the adapter saved in `folder`
        loaded through `LTXPipeline.load_lora_weights`, as a user would."""
        if not (folder / LORA_FILE).is_file():
            return self.load_transformer(folder)
        pipe = self._pipeline(self.load_transformer())
        pipe.load_lora_weights(folder, adapter_name=ADAPTER)
        return pipe.transformer

    # training
    def sample_noise_levels(
        self, count: int, weighting_scheme: str, generator: torch.Generator
    ) -> torch.Tensor:
        """Sigmas from the scheduler's training schedule. LTX shifts by resolution only when
        sampling (use_dynamic_shifting): its training sigmas carry the static `shift` (1.0)."""
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
        """Per-sample flow-matching loss at noise levels (sigmas) `levels`; the transformer is
        called on packed tokens exactly as LTXPipeline calls it."""
        noisy, target = flow_matching.noisy_latents(latents, noise, levels)
        _, _, frames, height, width = latents.shape
        patch, patch_t = self._patch
        prediction = transformer(
            hidden_states=LTXPipeline._pack_latents(noisy, patch, patch_t),
            encoder_hidden_states=conditioning["prompt_embeds"],
            timestep=levels * self.scheduler.config.num_train_timesteps,
            encoder_attention_mask=conditioning["prompt_attention_mask"],
            num_frames=frames,
            height=height,
            width=width,
            rope_interpolation_scale=self._rope_interpolation_scale,
            return_dict=False,
        )[0]
        prediction = LTXPipeline._unpack_latents(prediction, frames, height, width, patch, patch_t)
        return flow_matching.weighted_mse(prediction, target, levels, weighting_scheme)

    # sampling
    def _pipeline(self, transformer: torch.nn.Module) -> LTXPipeline:
        return LTXPipeline(
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
        """One normalized latent [C, f, h, w] through LTXPipeline, from cached embeddings;
        the unconditional branch (guidance > 1) sees zero embeddings and an empty mask."""
        pipe = self._pipeline(transformer)
        pipe.set_progress_bar_config(disable=True)
        embeds, mask = conditioning["prompt_embeds"], conditioning["prompt_attention_mask"]
        guided = guidance_scale > 1
        output = pipe(
            prompt_embeds=embeds,
            prompt_attention_mask=mask,
            negative_prompt_embeds=torch.zeros_like(embeds) if guided else None,
            negative_prompt_attention_mask=torch.zeros_like(mask) if guided else None,
            height=bucket.height,
            width=bucket.width,
            num_frames=bucket.frames,
            frame_rate=self.shape.fps,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=torch.Generator().manual_seed(seed),
            output_type="latent",
        )
        # output_type="latent" gives the packed, still normalized tokens [1, f*h*w, C]
        frames = (bucket.frames - 1) // pipe.vae_temporal_compression_ratio + 1
        height = bucket.height // pipe.vae_spatial_compression_ratio
        width = bucket.width // pipe.vae_spatial_compression_ratio
        patch, patch_t = self._patch
        return LTXPipeline._unpack_latents(output.frames, frames, height, width, patch, patch_t)[0]

    # saving
    def save_trained(self, transformer: torch.nn.Module, folder: Path, lora: bool) -> None:
        """Full weights with `save_pretrained`; an adapter in diffusers' format, for
        `LTXPipeline.load_lora_weights`."""
        if not lora:
            transformer.save_pretrained(folder)
            return
        if not has_lora(transformer):
            raise ValueError("save_trained(lora=True): the transformer has no adapter")
        weights, config = lora_state(transformer)
        LTXPipeline.save_lora_weights(
            folder, transformer_lora_layers=weights, transformer_lora_adapter_metadata=config
        )

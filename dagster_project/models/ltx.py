"""LTX-Video: the family spec (see models/spec.py), the embedded tiny default, real checkpoints.

A base model is always a diffusers folder with `transformer/`, `vae/` and `scheduler/`. The
embedded default is written to such a folder from config (random init, fixed seed), so every
later stage loads it with `from_pretrained` exactly as it loads a real LTX-Video checkpoint.

The LTX transformer works on packed tokens [B, f*h*w, C] (`LTXPipeline._pack_latents`) and is
told the latent grid (num_frames, height, width) and the RoPE scale; everything outside this
module sees latents as [B, C, f, h, w], normalized as `LTXPipeline._normalize_latents` does.

Image-to-video (`task` i2v) is `LTXImageToVideoPipeline`'s: latent frame 0 is the given frame's
latents, clean, its tokens at timestep `t x (1 - mask)` = 0, and only frames >= 1 are denoised,
so only they enter the loss. The VAE's encoder is causal, so the first frame's latents are the
clip's first latent frame; like the pipeline (which samples the posterior of the image it is
given), training takes them from each step's posterior sample of the clip.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    LTXImageToVideoPipeline,
    LTXPipeline,
    LTXVideoTransformer3DModel,
)

from dagster_project.core.params import ModelParams
from dagster_project.core.shapes import FAMILY_SHAPES, Bucket
from dagster_project.models import flow_matching
from dagster_project.models.diffusers_spec import (
    DiffusersSpec,
    PipelinePromptEncoder,
    denoised_mask,
    first_frame,
)

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


class LTXPromptEncoder(PipelinePromptEncoder):
    """Captions -> `prompt_embeds` [text_len, D] and `prompt_attention_mask` [text_len] (bool),
    through `LTXPipeline.encode_prompt` itself (max-length padding; the encoder sees the padded
    ids without a mask, as LTX's T5 does; the mask marks each caption's tokens)."""

    family = "ltx"
    pipeline_class = LTXPipeline

    def _entries(self, outputs: tuple[Any, ...]) -> list[dict[str, torch.Tensor]]:
        embeds, masks, _, _ = outputs
        return [
            {"prompt_embeds": e.contiguous(), "prompt_attention_mask": m.contiguous()}
            for e, m in zip(embeds, masks, strict=True)
        ]


class LTXSpec(DiffusersSpec):
    """The LTX-Video family over one base model folder (the `ModelSpec` protocol).

    Noise levels for training come from the scheduler's training schedule (the base class's):
    LTX shifts by resolution only when sampling (use_dynamic_shifting), so its training sigmas
    carry the static `shift` (1.0)."""

    name = "ltx"
    shape = FAMILY_SHAPES["ltx"]
    lora_targets = LORA_TARGETS
    transformer_class = LTXVideoTransformer3DModel
    vae_class = AutoencoderKLLTXVideo
    pipeline_class = LTXPipeline
    i2v_pipeline_class = LTXImageToVideoPipeline
    default_scheduler = SCHEDULER_CONFIG
    text_dim_key = "caption_channels"
    prompt_encoder_class = LTXPromptEncoder
    build_tiny = staticmethod(build_tiny)
    build_tiny_i2v = staticmethod(build_tiny)  # one model does both

    @functools.cached_property
    def _patch(self) -> tuple[int, int]:
        # (spatial, temporal) token patch of the base transformer, read from its config: the
        # model passed to `loss` may be wrapped (accelerate) and so hide its own config
        config = self._transformer_config
        return config.get("patch_size", 1), config.get("patch_size_t", 1)

    @functools.cached_property
    def _rope_interpolation_scale(self) -> tuple[float, float, float]:
        # as LTXPipeline computes it, at the family's frame rate (the rate clips are trained at)
        spatial = self.vae.spatial_compression_ratio
        return self.vae.temporal_compression_ratio / self.shape.fps, spatial, spatial

    def _normalize(self, sample: torch.Tensor) -> torch.Tensor:
        """As `LTXPipeline._normalize_latents`: with the VAE's latents_mean, latents_std and
        scaling_factor."""
        return LTXPipeline._normalize_latents(
            sample, self.vae.latents_mean, self.vae.latents_std, self.vae.config.scaling_factor
        )

    def _denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        return LTXPipeline._denormalize_latents(
            latents, self.vae.latents_mean, self.vae.latents_std, self.vae.config.scaling_factor
        )

    # video
    def encode_video(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """The VAE posterior of the frames; for i2v also the first frame (`image`, what
        sampling gives the pipeline: its latents are the clip's first latent frame)."""
        entry = super().encode_video(frames)
        if self.task == "i2v":
            entry["image"] = frames[0].contiguous()
        return entry

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
        """Per-sample flow-matching loss at noise levels (sigmas) `levels`; the transformer is
        called on packed tokens exactly as LTXPipeline (for i2v LTXImageToVideoPipeline) calls
        it."""
        noisy, target = flow_matching.noisy_latents(latents, noise, levels)
        hidden, scored = self._model_input(noisy, latents, conditioning)
        _, _, frames, height, width = latents.shape
        patch, patch_t = self._patch
        prediction = transformer(
            hidden_states=LTXPipeline._pack_latents(hidden, patch, patch_t),
            encoder_hidden_states=conditioning["prompt_embeds"],
            timestep=self._timesteps(levels, scored),
            encoder_attention_mask=conditioning["prompt_attention_mask"],
            num_frames=frames,
            height=height,
            width=width,
            rope_interpolation_scale=self._rope_interpolation_scale,
            return_dict=False,
        )[0]
        prediction = LTXPipeline._unpack_latents(prediction, frames, height, width, patch, patch_t)
        return flow_matching.weighted_mse(prediction, target, levels, weighting_scheme, scored)

    def _model_input(
        self, noisy: torch.Tensor, latents: torch.Tensor, conditioning: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the transformer's input [B, C, f, h, w], the mask of latents it denoises or None:
        all). Image-to-video: frame 0 is the clip's own, clean; a sample whose
        `first_frame_kept` is 0 trains as text-to-video."""
        if self.task != "i2v":
            return noisy, None
        mask = denoised_mask(noisy, conditioning)
        return mask * noisy + (1 - mask) * latents, mask

    def _timesteps(self, levels: torch.Tensor, scored: torch.Tensor | None) -> torch.Tensor:
        """One per sample; for i2v one per token, 0 for the given frame's (as the pipeline's
        `t x (1 - conditioning_mask)`)."""
        timesteps = levels * self.scheduler.config.num_train_timesteps
        if scored is None:
            return timesteps
        patch, patch_t = self._patch
        tokens = LTXPipeline._pack_latents(scored, patch, patch_t).squeeze(-1)
        return timesteps[:, None] * tokens

    # sampling
    def _pipeline_inputs(
        self, conditioning: dict[str, torch.Tensor], guided: bool
    ) -> dict[str, Any]:
        """The cached embeddings and mask (and for i2v the first frame); the unconditional
        branch (guidance > 1) sees zero embeddings and an empty mask."""
        embeds, mask = conditioning["prompt_embeds"], conditioning["prompt_attention_mask"]
        inputs = {
            "prompt_embeds": embeds,
            "prompt_attention_mask": mask,
            "negative_prompt_embeds": torch.zeros_like(embeds) if guided else None,
            "negative_prompt_attention_mask": torch.zeros_like(mask) if guided else None,
            "frame_rate": self.shape.fps,
        }
        if self.task == "i2v":  # the first frame: the pipeline encodes it itself
            inputs["image"] = first_frame(conditioning)
        return inputs

    def _output_latent(self, output: torch.Tensor, bucket: Bucket) -> torch.Tensor:
        """The packed, still normalized tokens [1, f*h*w, C] -> [C, f, h, w]."""
        frames = (bucket.frames - 1) // self.vae.temporal_compression_ratio + 1
        height = bucket.height // self.vae.spatial_compression_ratio
        width = bucket.width // self.vae.spatial_compression_ratio
        patch, patch_t = self._patch
        return LTXPipeline._unpack_latents(output, frames, height, width, patch, patch_t)[0]

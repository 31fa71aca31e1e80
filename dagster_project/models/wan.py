"""Wan 2.1: the family spec (see models/spec.py), the embedded tiny default, real checkpoints.

A base model is always a diffusers folder with `transformer/`, `vae/` and `scheduler/`. The
embedded default is written to such a folder from config (random init, fixed seed), so every
later stage loads it with `from_pretrained` exactly as it loads a real Wan2.1 checkpoint.

Image-to-video (`task` i2v) is Wan 2.1 I2V's layout, `WanImageToVideoPipeline`: the
transformer takes 36 channels (16 of noisy latents, then the condition: a 4-channel mask of the
given frame and the VAE latents of [first frame, zeros...]) and CLIP image embeddings
(`image_encoder/`, `image_processor/` in the base). The condition and the embeddings are what
the pipeline's own `prepare_latents` and `encode_image` make of the clip's first frame, cached
with the clip's latents; the loss covers every frame, as the pipeline denoises every frame.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLWan,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

from dagster_project.core.params import ModelParams
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import FAMILY_SHAPES
from dagster_project.models import flow_matching
from dagster_project.models.diffusers_spec import (
    DiffusersSpec,
    PipelinePromptEncoder,
    first_frame,
)

# Wan2.1's own sampling shift for 480p (5.0 for 720p); a real checkpoint's scheduler/ wins
DEFAULT_SHIFT = 3.0
# every Linear of a block that ComfyUI's (and diffusers' own) Wan LoRA key mapping covers
LORA_TARGETS = (
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
    "ffn.net.0.proj", "ffn.net.2",
)  # fmt: skip
# diffusers module -> the original Wan (and ComfyUI) module, inside blocks.N
COMFYUI_BLOCK_NAMES = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v", "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o",
    "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}  # fmt: skip


I2V_MASK_CHANNELS = 4  # the given-frame mask of the 36-channel input (the VAE's time factor)
TINY_IMAGE_SIDE = 32  # the embedded CLIP's input (the real one: 224)


def tiny_transformer(
    model: ModelParams,
    text_dim: int,
    channels: int,
    in_channels: int | None = None,
    image_dim: int | None = None,
) -> WanTransformer3DModel:
    """A small Wan transformer over `channels` latent channels (`in_channels` when its input
    holds a condition too; `image_dim`: the width of the image embeddings it attends to),
    random init from `model.seed`."""
    tiny = model.tiny
    torch.manual_seed(model.seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=tiny.num_attention_heads,
        attention_head_dim=tiny.attention_head_dim,
        in_channels=in_channels or channels,
        out_channels=channels,
        text_dim=text_dim,
        freq_dim=tiny.freq_dim,
        ffn_dim=tiny.ffn_dim,
        num_layers=tiny.num_layers,
        image_dim=image_dim,
        added_kv_proj_dim=tiny.num_attention_heads * tiny.attention_head_dim if image_dim else None,
        rope_max_seq_len=256,
    )


def tiny_image_encoder(model: ModelParams) -> tuple[CLIPVisionModel, CLIPImageProcessorPil]:
    """A small CLIP vision model and its preprocessing (Wan 2.1 I2V's image encoder)."""
    torch.manual_seed(model.seed + 2)
    width = model.tiny.num_attention_heads * model.tiny.attention_head_dim
    config = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=model.tiny.ffn_dim,
        num_hidden_layers=2,  # the pipeline reads the second-to-last layer's states
        num_attention_heads=model.tiny.num_attention_heads,
        image_size=TINY_IMAGE_SIDE,
        patch_size=8,
    )
    side = {"height": TINY_IMAGE_SIDE, "width": TINY_IMAGE_SIDE}
    processor = CLIPImageProcessorPil(size={"shortest_edge": TINY_IMAGE_SIDE}, crop_size=side)
    return CLIPVisionModel(config).eval(), processor


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


def i2v_channels(channels: int) -> int:
    """The input width of a Wan image-to-video transformer over `channels` latent channels."""
    return 2 * channels + I2V_MASK_CHANNELS


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
    transformer_class = WanTransformer3DModel
    vae_class = AutoencoderKLWan
    pipeline_class = WanPipeline
    i2v_pipeline_class = WanImageToVideoPipeline
    default_scheduler = {"shift": DEFAULT_SHIFT}
    text_dim_key = "text_dim"
    prompt_encoder_class = WanPromptEncoder
    build_tiny = staticmethod(build_tiny)
    # image-to-video: CLIP image embeddings beside the condition (Wan 2.1 I2V; Wan 2.2 has none)
    i2v_image_encoder = True
    # a timestep per token, the given first frame's tokens at 0 (Wan 2.2 TI2V's pipeline)
    expand_timesteps = False

    @property
    def lora_targets(self) -> tuple[str, ...]:
        """Every Linear of a block; with image embeddings, their key and value projections too
        (ComfyUI's `cross_attn.k_img`, `v_img`)."""
        image = self.task == "i2v" and self.i2v_image_encoder
        return LORA_TARGETS + (("attn2.add_k_proj", "attn2.add_v_proj") if image else ())

    @classmethod
    def build_tiny_i2v(cls, model: ModelParams, text_dim: int) -> tuple[Any, Any]:
        """The embedded image-to-video default: Wan 2.1 I2V's 36-channel layout (with image
        embeddings where the family has an image encoder) over the tiny VAE."""
        transformer, vae = build_tiny(model, text_dim)
        width = model.tiny.num_attention_heads * model.tiny.attention_head_dim
        image_dim = width if cls.i2v_image_encoder else None  # the tiny CLIP's width
        channels = transformer.config.out_channels
        return tiny_transformer(model, text_dim, channels, i2v_channels(channels), image_dim), vae

    @classmethod
    def _check_transformer(cls, transformer: Any, task: str) -> None:
        config = transformer.config
        wanted = i2v_channels(config.out_channels) if task == "i2v" else config.out_channels
        if config.in_channels != wanted:
            kinds = {config.out_channels: "text-to-video", i2v_channels(config.out_channels): "I2V"}
            raise ValueError(
                f"model.pretrained: the transformer takes {config.in_channels} input channels "
                f"(a {kinds.get(config.in_channels, 'different')} model), train.task {task} "
                f"needs {wanted}: set train.task to the checkpoint's task"
            )
        if task == "i2v" and cls.i2v_image_encoder and config.image_dim is None:
            raise ValueError(
                "model.pretrained: the transformer has no image_dim: Wan 2.1 I2V attends to CLIP "
                "image embeddings (a Wan 2.2 I2V A14B folder is model.family: wan22)"
            )

    @classmethod
    def _write_more_parts(
        cls, model: ModelParams, out: BaseModelFiles, pretrained: Path | None, task: str
    ) -> None:
        """For i2v with an image encoder: the checkpoint's `image_encoder/` and
        `image_processor/`, or the embedded tiny CLIP."""
        if task != "i2v" or not cls.i2v_image_encoder:
            return
        if pretrained is None:
            encoder, processor = tiny_image_encoder(model)
        else:
            source = BaseModelFiles(pretrained)
            for folder in (source.image_encoder, source.image_processor):
                if not folder.is_dir():
                    raise ValueError(
                        f"model.pretrained: {pretrained} has no {folder.name}/: Wan 2.1 I2V "
                        "encodes the first frame with CLIP (its diffusers folder has both)"
                    )
            encoder = CLIPVisionModel.from_pretrained(source.image_encoder, use_safetensors=True)
            processor = CLIPImageProcessorPil.from_pretrained(source.image_processor)
        encoder.save_pretrained(out.image_encoder)
        processor.save_pretrained(out.image_processor)

    # image-to-video: the first frame, as the pipeline makes its inputs of it
    @functools.cached_property
    def _image_parts(self) -> dict[str, Any]:
        """The image-to-video pipeline's image encoder and processor (None where it has none)."""
        if self.task != "i2v" or not self.base.image_encoder.is_dir():
            return {}
        encoder = CLIPVisionModel.from_pretrained(self.base.image_encoder, use_safetensors=True)
        processor = CLIPImageProcessorPil.from_pretrained(self.base.image_processor)
        return {"image_encoder": encoder.to(self.device).eval(), "image_processor": processor}

    @functools.cached_property
    def _condition_pipeline(self) -> Any:
        """The image-to-video pipeline with its VAE and image encoder only."""
        return WanImageToVideoPipeline(
            tokenizer=None,
            text_encoder=None,
            vae=self.vae,
            scheduler=None,
            expand_timesteps=self.expand_timesteps,
            **self._image_parts,
        )

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """The VAE posterior of the frames; for i2v also the first frame (`image`) and what the
        pipeline makes of it: `condition` (its `prepare_latents`) and `image_embeds` (its
        `encode_image`, where the model has an image encoder)."""
        entry = super().encode_video(frames)
        if self.task != "i2v":
            return entry
        count, height, width = frames.shape[:3]
        pipe = self._condition_pipeline
        image = Image.fromarray(frames[0].numpy())
        pixels = pipe.video_processor.preprocess(image, height=height, width=width)
        condition = pipe.prepare_latents(
            pixels.float(),
            1,
            self.vae.config.z_dim,
            height,
            width,
            count,
            torch.float32,
            self.device,
            torch.Generator().manual_seed(0),  # its noise is not kept
        )[1]
        entry |= {"image": frames[0].contiguous(), "condition": condition[0].contiguous()}
        if pipe.image_encoder is not None:
            embeds = pipe.encode_image(image, self.device)
            entry["image_embeds"] = embeds[0].contiguous()
        return entry

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
        """Per-sample flow-matching loss at noise levels (sigmas) `levels`; for i2v with the
        first frame's condition as the pipeline gives it (`_model_input`)."""
        noisy, target = flow_matching.noisy_latents(latents, noise, levels)
        hidden, scored = self._model_input(noisy, conditioning)
        image = {}
        if "image_embeds" in conditioning:
            image["encoder_hidden_states_image"] = conditioning["image_embeds"]
        prediction = transformer(
            hidden_states=hidden,
            timestep=self._timesteps(levels, latents, scored),
            encoder_hidden_states=conditioning["prompt_embeds"],
            return_dict=False,
            **image,
        )[0]
        return flow_matching.weighted_mse(prediction, target, levels, weighting_scheme, scored)

    def _model_input(
        self, noisy: torch.Tensor, conditioning: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the transformer's input, the mask of latents scored by the loss or None: all).
        Image-to-video: the condition after the noisy latents, channel-wise (36 channels)."""
        if self.task != "i2v":
            return noisy, None
        return torch.cat([noisy, conditioning["condition"].to(noisy.dtype)], dim=1), None

    def _timesteps(
        self, levels: torch.Tensor, latents: torch.Tensor, scored: torch.Tensor | None
    ) -> torch.Tensor:
        """The transformer's `timestep` for each sample's level: one number per sample."""
        return levels * self.scheduler.config.num_train_timesteps

    # sampling
    def _pipeline_parts(self, transformer: torch.nn.Module) -> dict[str, Any]:
        parts = {"transformer": transformer, **self._image_parts}
        return parts | ({"expand_timesteps": True} if self.expand_timesteps else {})

    def _pipeline_inputs(
        self, conditioning: dict[str, torch.Tensor], guided: bool
    ) -> dict[str, Any]:
        """The prompt embeddings; for i2v also the first frame, from which the pipeline makes
        its condition (and image embeddings) itself."""
        inputs: dict[str, Any] = super()._pipeline_inputs(conditioning, guided)
        if self.task == "i2v":
            inputs["image"] = first_frame(conditioning)
        return inputs

    # saving
    def _comfyui_lora(
        self, weights: dict[str, torch.Tensor], config: dict
    ) -> dict[str, torch.Tensor] | None:
        return comfyui_lora(weights, config["lora_alpha"])


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

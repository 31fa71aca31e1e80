"""What a model family is to the rest of the pipeline: one protocol, one spec module each.

As finetrainers' ModelSpecification: everything a family means (loading, prompt and video
encoding, the training forward, its scheduler and shift, sampling through its pipeline, LoRA
targets, saving and loading) lives in `models/<family>.py` behind this protocol. Dataset
encoding, training and evaluation receive a spec and import no diffusers model class. What the
families have in common (loading and saving a diffusers folder, adapters through the family
pipeline) is written once in models/diffusers_spec.py; callers only ever see this protocol.

Conditioning travels as a dict whose keys are the family pipeline's own argument names
(`prompt_embeds`, `prompt_attention_mask`, `pooled_prompt_embeds`), one entry per caption in the
text cache, stacked for a batch: the cache, the trainer and sampling speak the pipeline's words.
Image-to-video (`task` i2v) adds what the latent cache keeps of each window's first frame:
`image` (its pixels, uint8 [H, W, 3], the pipeline's input), `condition` (what the pipeline's
`prepare_latents` builds from it) and, where the family has an image encoder, `image_embeds`;
the trainer adds `first_frame_kept` (1 or 0 per sample, `train.first_frame_p`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from dagster_project.core.params import LoraParams, ModelParams
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import Bucket, FamilyShape
from dagster_project.models.text_encoder import TextEncoder


class PromptEncoder(Protocol):
    """Captions -> conditioning tensors, exactly as the family's pipeline encodes prompts."""

    identity: str  # part of every text cache key: another encoder gives other entries

    def encode(self, captions: list[str]) -> list[dict[str, torch.Tensor]]: ...


class ModelSpec(Protocol):
    name: str
    shape: FamilyShape
    base: BaseModelFiles
    lora_targets: tuple[str, ...]  # default LoRA target modules
    identity: str  # the VAE's identity, part of every latent cache key
    task: str  # t2v | i2v (train.task)

    # what each modality's loss weighs in `loss` (the video's 1.0; LTX-2's audio too)
    modality_weights: dict[str, float]

    def __init__(
        self, base: BaseModelFiles, task: str = "t2v", audio_loss_weight: float = 1.0
    ) -> None: ...

    # loading: the base model folder every later stage reads
    @staticmethod
    def write_base_model(
        model: ModelParams,
        text_dim: int,
        out: BaseModelFiles,
        pretrained: Path | None,
        task: str = "t2v",
    ) -> None: ...

    # text: captions -> conditioning, as the family's pipeline encodes them
    def prompt_encoder(self, text: TextEncoder, text_len: int) -> PromptEncoder: ...

    @staticmethod
    def caption_tokens(tokenizer: Any, captions: list[str]) -> list[int]: ...

    # video: frames -> VAE posterior moments (cached; for i2v with the first frame's
    # condition) -> normalized latents (each step) and back; the VAE (and an image or audio
    # encoder) on the device given to `place_on` (the CPU until then), where encoded entries
    # and samples come out; moments and latents on any device
    def place_on(self, device: torch.device) -> None: ...

    def encode_video(self, frames: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def latents(
        self, moments: dict[str, torch.Tensor], generator: torch.Generator | None
    ) -> torch.Tensor: ...

    # audio, for a family that trains on sound (LTX-2; None for the others): a window's
    # waveform at (sample rate, channels), or None for a clip without audio -> cached entries
    @property
    def audio_format(self) -> tuple[int, int] | None: ...

    def encode_audio(self, waveform: Any, frames: int) -> dict[str, torch.Tensor]: ...

    def decode_video(self, latent: torch.Tensor) -> torch.Tensor: ...

    # the transformer: base, trained (full weights or base + adapter)
    def load_transformer(self, folder: Path | None = None) -> torch.nn.Module: ...

    def load_trained(self, folder: Path) -> torch.nn.Module: ...

    # training: what trains (an adapter, an expert), noise levels (with the family's shift, in
    # the span of levels a step draws from: an expert's) and the per-sample loss at given levels;
    # evaluation scores fixed levels in (0, 1), and `evaluation_point` says what one means
    def prepare_training(
        self, transformer: torch.nn.Module, mode: str, lora: LoraParams, experts: str
    ) -> None: ...

    def has_adapter(self, folder: Path) -> bool: ...

    def load_adapter(self, transformer: torch.nn.Module, folder: Path) -> None: ...

    def noise_span(
        self, experts: str, weighting_scheme: str, generator: torch.Generator
    ) -> tuple[float, float]: ...

    def sample_noise_levels(
        self,
        count: int,
        weighting_scheme: str,
        generator: torch.Generator,
        span: tuple[float, float] = (0.0, 1.0),
    ) -> torch.Tensor: ...

    def evaluation_point(self, level: float) -> str: ...

    def loss(
        self,
        transformer: torch.nn.Module,
        latents: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
        levels: torch.Tensor,
        noise: torch.Tensor,
        weighting_scheme: str = "none",
    ) -> torch.Tensor: ...

    # the same per-sample losses by modality (NaN where a sample has none, as a clip without
    # audio); `loss` is their weighted sum (flow_matching.weighted_total)
    def modality_losses(
        self,
        transformer: torch.nn.Module,
        latents: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
        levels: torch.Tensor,
        noise: torch.Tensor,
        weighting_scheme: str = "none",
    ) -> dict[str, torch.Tensor]: ...

    # sampling through the family's pipeline, from cached conditioning (on any device): the
    # video's latent ("video", the layout of `latents`) and, for a family with sound, the
    # audio's ("audio"), on the device of `place_on`, where the transformer must compute
    def generate(
        self,
        transformer: torch.nn.Module,
        conditioning: dict[str, torch.Tensor],
        bucket: Bucket,
        seed: int,
        steps: int,
        guidance_scale: float,
    ) -> dict[str, torch.Tensor]: ...

    # a generated audio latent -> (waveform [channels, samples], its sample rate)
    def decode_audio(self, latent: torch.Tensor) -> tuple[torch.Tensor, int]: ...

    # saving: full weights with save_pretrained; adapters in the formats people load
    def save_trained(self, transformer: torch.nn.Module, folder: Path, lora: bool) -> None: ...

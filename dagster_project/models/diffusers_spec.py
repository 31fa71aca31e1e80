"""What the family specs share: a base class for a family whose base model is a diffusers folder.

Every family (models/<family>.py) keeps a base model as `transformer/`, `vae/` and `scheduler/`,
loads each part with `from_pretrained`, and loads and saves adapters through its own pipeline
class, as a user of that pipeline would. `DiffusersSpec` holds that code once, parametrized by
class attributes (the diffusers classes, the default scheduler config, the transformer config
key that holds the text width). A family subclass adds only what is its own:

- `build_tiny`: the embedded tiny default (a staticmethod, also importable from the module),
  and `build_tiny_i2v` where the family trains image-to-video;
- `_normalize`, where the scale latents are trained and sampled in is not the VAE's
  `scaling_factor` alone;
- `loss` (the `ModelSpec` protocol's, see models/spec.py);
- where needed, the pipeline's sampling arguments and output layout (`_pipeline_inputs`,
  `_output_latent`), a different prompt encoder, noise-level sampling, base model checks or
  export.

`PipelinePromptEncoder` is the same for prompt encoding: the pipeline's own `encode_prompt`,
run on a pipeline that holds only the text encoder.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import (
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    ModelMixin,
    SchedulerMixin,
)
from diffusers.configuration_utils import FrozenDict
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from PIL import Image
from safetensors.torch import save_file

from dagster_project.core.hashing import folder_sha256
from dagster_project.core.params import LoraParams, ModelParams
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import Bucket, FamilyShape
from dagster_project.models import flow_matching
from dagster_project.models.adapters import (
    ADAPTER,
    COMFYUI_FILE,
    LORA_FILE,
    add_lora,
    has_lora,
    load_lora_state,
    lora_state,
)
from dagster_project.models.spec import PromptEncoder
from dagster_project.models.text_encoder import TextEncoder


def text_pipeline(pipeline_class: type[DiffusionPipeline], **text_parts: Any) -> Any:
    """`pipeline_class` with only its tokenizer(s) and text encoder(s): enough for the
    pipeline's own `encode_prompt`, without a transformer or VAE in memory."""
    return pipeline_class(**text_parts, vae=None, scheduler=None, transformer=None)


@dataclass(frozen=True)
class PipelinePromptEncoder:
    """Captions -> conditioning through `pipeline_class.encode_prompt` itself, at
    `max_sequence_length=text_len` (the `PromptEncoder` protocol).

    A family sets `family` and `pipeline_class`; by default an entry is the pipeline's
    `prompt_embeds` alone, and a family whose pipeline returns more overrides `_entries`.
    """

    text: TextEncoder
    text_len: int

    family: ClassVar[str]
    pipeline_class: ClassVar[type[DiffusionPipeline]]

    @property
    def identity(self) -> str:
        return f"{self.family}:{self.text.identity}:text_len={self.text_len}"

    @torch.no_grad()
    def encode(self, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        pipe = text_pipeline(
            self.pipeline_class, tokenizer=self.text.tokenizer, text_encoder=self.text.model
        )
        outputs = pipe.encode_prompt(
            captions,
            do_classifier_free_guidance=False,
            max_sequence_length=self.text_len,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
        return self._entries(outputs)

    def _entries(self, outputs: tuple[Any, ...]) -> list[dict[str, torch.Tensor]]:
        """`encode_prompt`'s outputs for a batch -> one entry per caption."""
        embeds = outputs[0]  # the rest are the (here unrequested) negative prompt's
        return [{"prompt_embeds": e.contiguous()} for e in embeds]


def first_frame(conditioning: dict[str, torch.Tensor]) -> Image.Image:
    """The cached first frame of a batch of one (`image`, uint8 [1, H, W, 3]) as the image an
    image-to-video pipeline takes."""
    return Image.fromarray(conditioning["image"][0].cpu().numpy())


def denoised_mask(noisy: torch.Tensor, conditioning: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, 1, f, h, w]: 1 where the transformer denoises, 0 on a given first frame (latent
    frame 0, unless the sample's `first_frame_kept` is 0: it then trains as text-to-video)."""
    mask = torch.ones_like(noisy[:, :1])
    kept = conditioning.get("first_frame_kept", torch.ones(len(noisy), device=noisy.device))
    mask[:, :, 0] = 1 - kept.to(mask.dtype).view(-1, 1, 1, 1)
    return mask


class DiffusersSpec(ABC):
    """A family over one base model folder: the shared half of the `ModelSpec` protocol.

    Defaults are flow matching's (Wan, LTX-Video, HunyuanVideo); CogVideoX overrides the
    scheduler class and `sample_noise_levels`. Subclasses set the class attributes below and
    implement `build_tiny` and `loss`.
    """

    name: ClassVar[str]
    shape: ClassVar[FamilyShape]
    lora_targets: tuple[str, ...]  # default LoRA target modules (Wan: per task, a property)

    transformer_class: ClassVar[type[ModelMixin]]
    vae_class: ClassVar[type[ModelMixin]]
    pipeline_class: ClassVar[type[DiffusionPipeline]]
    # the image-to-video pipeline (train.task: i2v), where the family has one
    i2v_pipeline_class: ClassVar[type[DiffusionPipeline] | None] = None
    # the class whose `save_lora_weights` writes adapters, where the pipeline has none
    lora_saver_class: ClassVar[type[DiffusionPipeline] | None] = None
    scheduler_class: ClassVar[type[SchedulerMixin]] = FlowMatchEulerDiscreteScheduler
    # the scheduler of a base model without one (the tiny default, a checkpoint lacking it)
    default_scheduler: ClassVar[dict[str, Any]]
    # the transformer config key holding the text embedding width (the text encoder's output)
    text_dim_key: ClassVar[str]
    # the pipeline's text parts: absent when sampling, since prompts come from the text cache
    text_components: ClassVar[tuple[str, ...]] = ("tokenizer", "text_encoder")
    # the family's `PromptEncoder`, built from (text, text_len)
    prompt_encoder_class: ClassVar[Callable[[TextEncoder, int], PromptEncoder]]

    def __init__(
        self, base: BaseModelFiles, task: str = "t2v", audio_loss_weight: float = 1.0
    ) -> None:
        self.base = base
        self.task = task  # t2v, or i2v: the clip's first frame conditions (train.task)
        # the families without sound have one modality
        self.modality_weights = {"video": 1.0}
        # where the VAE (and an image or audio encoder) run: `place_on`
        self.device = torch.device("cpu")

    def place_on(self, device: torch.device) -> None:
        """Run the VAE and the family's image or audio encoder on `device` (the encoding
        process's GPU, the training's for in-loop sampling) from now on: those loaded move
        there, the others load there. Encoded entries come out on `device` (the cache writes
        them from the CPU), samples too; the transformer is the caller's to place."""
        self.device = device
        for module in self._placed_modules():
            module.to(device)

    def _placed_modules(self) -> list[torch.nn.Module]:
        """What `place_on` moves of what is loaded (a `cached_property` is in `__dict__` once
        read): the VAE, and the image encoder of a family's image-to-video (`_image_parts`)."""
        loaded = self.__dict__
        image = loaded.get("_image_parts", {}).get("image_encoder")
        return [module for module in (loaded.get("vae"), image) if module is not None]

    # captions
    @staticmethod
    def caption_tokens(tokenizer: Any, captions: list[str]) -> list[int]:
        """How many tokens each caption takes of `model.text_len`, as the pipeline tokenizes
        it (special tokens included); above the text length, the pipeline cuts the rest."""
        ids = tokenizer(captions, add_special_tokens=True, return_attention_mask=False)
        return [len(one) for one in ids["input_ids"]]

    # loading: the base model folder every later stage reads
    @staticmethod
    @abstractmethod
    def build_tiny(model: ModelParams, text_dim: int) -> tuple[ModelMixin, ModelMixin]:
        """The embedded default (transformer, VAE), random init from `model.seed`."""

    @classmethod
    def build_tiny_i2v(cls, model: ModelParams, text_dim: int) -> tuple[ModelMixin, ModelMixin]:
        """The embedded image-to-video default; params refuse i2v for a family without one."""
        raise ValueError(f"{cls.name} has no image-to-video model")

    @classmethod
    def write_base_model(
        cls,
        model: ModelParams,
        text_dim: int,
        out: BaseModelFiles,
        pretrained: Path | None = None,
        task: str = "t2v",
    ) -> None:
        """Save the base model folder (transformer/, vae/, scheduler/) the pipeline loads: the
        local checkpoint `pretrained`, or the embedded tiny model built from `model.tiny` (its
        image-to-video layout for `task` i2v)."""
        if pretrained is not None:
            source = BaseModelFiles(pretrained)
            transformer = cls.transformer_class.from_pretrained(
                source.transformer, use_safetensors=True
            )
            vae = cls.vae_class.from_pretrained(source.vae, use_safetensors=True)
            scheduler = (
                cls.scheduler_class.from_pretrained(source.scheduler)
                if source.scheduler.is_dir()
                else cls.scheduler_class(**cls.default_scheduler)
            )
        else:
            build = cls.build_tiny_i2v if task == "i2v" else cls.build_tiny
            transformer, vae = build(model, text_dim)
            scheduler = cls.scheduler_class(**cls.default_scheduler)
        width = transformer.config[cls.text_dim_key]
        if width != text_dim:
            raise ValueError(
                f"model.text_encoder gives {text_dim}-d embeddings but the transformer expects "
                f"{cls.text_dim_key}={width}"
            )
        cls._check_transformer(transformer, task)
        transformer.save_pretrained(out.transformer)
        vae.save_pretrained(out.vae)
        scheduler.save_pretrained(out.scheduler)
        cls._write_more_parts(model, out, pretrained, task)
        out.record_identity()

    @classmethod
    def _write_more_parts(
        cls, model: ModelParams, out: BaseModelFiles, pretrained: Path | None, task: str
    ) -> None:
        """Write the parts of the base model beyond transformer/, vae/ and scheduler/ (a
        second expert, an image encoder); by default there are none."""
        return None

    @classmethod
    def _check_transformer(cls, transformer: ModelMixin, task: str) -> None:
        """Raise if the family cannot use `transformer` for `task` (beyond its text width); by
        default every one can."""
        return None

    # the base model's parts, loaded once
    @functools.cached_property
    def vae(self) -> Any:
        vae = self.vae_class.from_pretrained(self.base.vae, use_safetensors=True)
        return vae.to(self.device).eval().requires_grad_(False)

    @functools.cached_property
    def scheduler(self) -> Any:
        return self.scheduler_class.from_pretrained(self.base.scheduler)

    @functools.cached_property
    def identity(self) -> str:
        """The latent encoder's identity (the VAE's weights; for i2v, whose entries hold the
        first frame's condition too, the task and the image encoder's), part of every latent
        cache key."""
        identity = folder_sha256(self.base.vae)
        if self.task == "i2v":
            identity += ":i2v"
            if self.base.image_encoder.is_dir():
                identity += ":" + folder_sha256(self.base.image_encoder)
        return identity

    # configs only: training reads them without loading the VAE's or the transformer's weights
    @functools.cached_property
    def _vae_config(self) -> FrozenDict:
        return FrozenDict(self.vae_class.load_config(self.base.vae))

    @functools.cached_property
    def _transformer_config(self) -> FrozenDict:
        return FrozenDict(self.transformer_class.load_config(self.base.transformer))

    # text
    def prompt_encoder(self, text: TextEncoder, text_len: int) -> PromptEncoder:
        return self.prompt_encoder_class(text, text_len)

    # video
    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 frames [F, H, W, 3] -> the VAE posterior `mean` and `logvar` [C, f, h, w].

        The posterior is kept, not a sample, so each training step draws a fresh latent."""
        pixels = frames.to(self.device).permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0
        posterior = self.vae.encode(pixels).latent_dist
        return {"mean": posterior.mean[0], "logvar": posterior.logvar[0]}

    def latents(
        self, moments: dict[str, torch.Tensor], generator: torch.Generator | None
    ) -> torch.Tensor:
        """Latents [B, C, f, h, w] as the transformer sees them: a posterior sample (the mean
        when `generator` is None, for fixed evaluation inputs), in the family's scale."""
        posterior = DiagonalGaussianDistribution(
            torch.cat([moments["mean"], moments["logvar"]], dim=1)
        )
        sample = posterior.mean if generator is None else posterior.sample(generator)
        return self._normalize(sample)

    def _normalize(self, sample: torch.Tensor) -> torch.Tensor:
        """A VAE latent sample -> the scale the family's pipeline samples in: by default the
        sample times the VAE's `scaling_factor` (the pipeline divides by it before decoding;
        read from the config alone, without the VAE's weights)."""
        return sample * self._vae_config.scaling_factor

    def _denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of `_normalize`: what the VAE decodes."""
        return latents / self._vae_config.scaling_factor

    # audio: only a family that trains on sound (LTX-2) takes any
    @property
    def audio_format(self) -> tuple[int, int] | None:
        """(sample rate, channels) of the audio the family encodes; None: it takes none."""
        return None

    def encode_audio(self, waveform: Any, frames: int) -> dict[str, torch.Tensor]:
        """A window's audio -> its cache entry's audio part (a family with `audio_format`)."""
        raise ValueError(f"{self.name} takes no audio")

    def decode_audio(self, latent: torch.Tensor) -> tuple[torch.Tensor, int]:
        """A generated audio latent -> its waveform and sample rate (a family with sound)."""
        raise ValueError(f"{self.name} generates no audio")

    @torch.no_grad()
    def decode_video(self, latent: torch.Tensor) -> torch.Tensor:
        """A normalized latent [C, f, h, w] (a sample, a clip's) -> uint8 frames [F, H, W, 3]
        through the VAE, as the family's pipeline decodes its output."""
        latent = self._denormalize(latent.unsqueeze(0).float()).to(self.device)
        pixels = self.vae.decode(latent, return_dict=False)
        video = pixels[0][0].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
        return video.permute(1, 2, 3, 0).cpu().contiguous()

    # the transformer: base, trained (full weights or base + adapter)
    def load_transformer(self, folder: Path | None = None) -> Any:
        """A transformer saved with `save_pretrained` (default: the base model's)."""
        return self.transformer_class.from_pretrained(
            folder or self.base.transformer, use_safetensors=True
        )

    def load_trained(self, folder: Path) -> Any:
        """A trained model: full weights, or the base with the adapter saved in `folder`
        loaded through the family pipeline's `load_lora_weights`, as a user would."""
        if not self.has_adapter(folder):
            return self.load_transformer(folder)
        pipe = self._pipeline(self.load_transformer())
        pipe.load_lora_weights(folder, adapter_name=ADAPTER)
        return pipe.transformer

    # training
    def prepare_training(
        self, transformer: torch.nn.Module, mode: str, lora: LoraParams, experts: str
    ) -> None:
        """Make what trains trainable: in lora mode, freeze the transformer and add the adapter
        (`lora.targets`, else the family's); in full mode every weight trains. `experts` is
        always `both` here (params refuse the others for a one-transformer family)."""
        if mode == "lora":
            add_lora(transformer, lora, self.lora_targets)

    def has_adapter(self, folder: Path) -> bool:
        """Whether a trained model folder holds an adapter (else full weights)."""
        return (folder / LORA_FILE).is_file()

    def load_adapter(self, transformer: torch.nn.Module, folder: Path) -> None:
        """Put the adapter saved in `folder` into the transformer's (resume, warm start)."""
        load_lora_state(transformer, folder)

    def noise_span(
        self, experts: str, weighting_scheme: str, generator: torch.Generator
    ) -> tuple[float, float]:
        """The levels one optimizer step draws from: all of them for one transformer."""
        return flow_matching.FULL_SPAN

    def modality_losses(
        self,
        transformer: torch.nn.Module,
        latents: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
        levels: torch.Tensor,
        noise: torch.Tensor,
        weighting_scheme: str = "none",
    ) -> dict[str, torch.Tensor]:
        """The per-sample losses by modality: the video's alone (`loss`) but for a family
        with sound."""
        return {
            "video": self.loss(transformer, latents, conditioning, levels, noise, weighting_scheme)
        }

    def evaluation_point(self, level: float) -> str:
        """What a fixed evaluation level is: here a flow-matching sigma (x = (1 - s) x0 + s e)."""
        return f"sigma {level:g}"

    def sample_noise_levels(
        self,
        count: int,
        weighting_scheme: str,
        generator: torch.Generator,
        span: tuple[float, float] = flow_matching.FULL_SPAN,
    ) -> torch.Tensor:
        """Sigmas from the scheduler's training schedule (its static `shift`), within `span`."""
        return flow_matching.sample_sigmas(self.scheduler, count, weighting_scheme, generator, span)

    # sampling
    def _pipeline(self, transformer: torch.nn.Module) -> Any:
        """The family's pipeline (the image-to-video one for i2v) around `transformer`, without
        text encoders, with a fresh scheduler (sampling sets its timesteps; the spec's own
        stays the training one)."""
        pipeline_class = self.i2v_pipeline_class if self.task == "i2v" else self.pipeline_class
        return pipeline_class(
            **dict.fromkeys(self.text_components),
            vae=self.vae,
            scheduler=self.scheduler_class.from_config(self.scheduler.config),
            **self._pipeline_parts(transformer),
        )

    def _pipeline_parts(self, transformer: torch.nn.Module) -> dict[str, Any]:
        """The pipeline's arguments that hold the trained model: here `transformer` alone."""
        return {"transformer": transformer}

    @torch.no_grad()
    def generate(
        self,
        transformer: torch.nn.Module,
        conditioning: dict[str, torch.Tensor],
        bucket: Bucket,
        seed: int,
        steps: int,
        guidance_scale: float,
    ) -> dict[str, torch.Tensor]:
        """One sample through the family's pipeline for a video of `bucket`'s size, from cached
        conditioning (`output_type="latent"`): its latent [C, f, h, w] ("video", the layout of
        `latents`), and its audio latent ("audio") for a family with sound. It runs on the
        device of `place_on` (the conditioning moves there; the noise is drawn on the CPU, the
        same on every device), where the transformer must compute."""
        pipe, arguments = self.sampling_call(
            transformer, conditioning, bucket, seed, steps, guidance_scale
        )
        output = pipe(**arguments)
        return {"video": self._output_latent(output.frames, bucket)} | self._output_audio(output)

    def sampling_call(
        self,
        transformer: torch.nn.Module,
        conditioning: dict[str, torch.Tensor],
        bucket: Bucket,
        seed: int,
        steps: int,
        guidance_scale: float,
    ) -> tuple[Any, dict[str, Any]]:
        """What `generate` calls: the family's pipeline around `transformer` and the call's
        arguments, the tensors among them on the device of `place_on`."""
        pipe = self._pipeline(transformer)
        pipe.set_progress_bar_config(disable=True)
        inputs = self._pipeline_inputs(conditioning, guided=guidance_scale > 1)
        return pipe, {
            **{k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()},
            **self._size_inputs(pipe, bucket),
            "num_inference_steps": steps,
            **self._guidance(pipe, guidance_scale),
            "generator": torch.Generator().manual_seed(seed),
            "output_type": "latent",
        }

    def _output_audio(self, output: Any) -> dict[str, torch.Tensor]:
        """The pipeline's audio output, for a family with sound: none here."""
        return {}

    def _size_inputs(self, pipe: Any, bucket: Bucket) -> dict[str, int]:
        """The pipeline call's video size arguments: `bucket`'s frames and sides."""
        return {"height": bucket.height, "width": bucket.width, "num_frames": bucket.frames}

    def _guidance(self, pipe: Any, guidance_scale: float) -> dict[str, Any]:
        """The pipeline call's guidance argument(s): by default its `guidance_scale`."""
        return {"guidance_scale": guidance_scale}

    def _pipeline_inputs(
        self, conditioning: dict[str, torch.Tensor], guided: bool
    ) -> dict[str, torch.Tensor | None]:
        """The pipeline's own arguments for cached conditioning: by default its prompt
        embeddings, and zeros as the negative prompt's when guidance is on."""
        embeds = conditioning["prompt_embeds"]
        return {
            "prompt_embeds": embeds,
            "negative_prompt_embeds": torch.zeros_like(embeds) if guided else None,
        }

    def _output_latent(self, output: torch.Tensor, bucket: Bucket) -> torch.Tensor:
        """The pipeline's latent output (its own layout, a batch of one) -> [C, f, h, w]."""
        return output[0]

    # saving
    def save_trained(self, transformer: torch.nn.Module, folder: Path, lora: bool) -> None:
        """Full weights with `save_pretrained`; an adapter in diffusers' format, for the family
        pipeline's `load_lora_weights`, and in ComfyUI's (`COMFYUI_FILE`) where the family
        has ComfyUI's names (`_comfyui_lora`)."""
        if not lora:
            transformer.save_pretrained(folder)
            return
        weights, config = self._save_adapter(transformer, folder)
        comfy = self._comfyui_lora(weights, config)
        if comfy is not None:
            save_file(comfy, str(folder / COMFYUI_FILE))

    def _comfyui_lora(
        self, weights: dict[str, torch.Tensor], config: dict
    ) -> dict[str, torch.Tensor] | None:
        """The adapter (peft weights and config) in ComfyUI's key names; None: the family
        exports diffusers' format only."""
        return None

    def _save_adapter(
        self, transformer: torch.nn.Module, folder: Path
    ) -> tuple[dict[str, torch.Tensor], dict]:
        """Save the adapter with the pipeline class's `save_lora_weights` (its peft config as
        metadata); returns the weights and config for a family that writes other formats too."""
        if not has_lora(transformer):
            raise ValueError("save_trained(lora=True): the transformer has no adapter")
        weights, config = lora_state(transformer)
        (self.lora_saver_class or self.pipeline_class).save_lora_weights(
            folder, transformer_lora_layers=weights, transformer_lora_adapter_metadata=config
        )
        return weights, config

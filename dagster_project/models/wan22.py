"""Wan 2.2: the A14B pair of experts (`wan22`) and the TI2V 5B (`wan22_ti2v`), family specs
(see models/spec.py).

Wan 2.2's 14B models split denoising between two transformers of one architecture: the
high-noise expert (the pipeline's `transformer`) takes the timesteps t >= boundary_ratio x
num_train_timesteps, the low-noise expert (`transformer_2`) the rest, as `WanPipeline.__call__`
switches. A base model is a Wan 2.2 diffusers folder: transformer/, transformer_2/, vae/,
scheduler/ and model_index.json (which holds `boundary_ratio`). The VAE, the text and the loss
are Wan 2.1's (models/wan.py).

Training sees the two as one module, `ExpertPair`, which sends each sample to the expert that
owns its level; a step draws one span of levels (one expert, `noise_span`), so the other expert
gets no gradient and its optimizer state stays as it was (one state per expert, as
musubi-tuner keeps them). Saving writes one file per expert: the diffusers LoRA in
`high_noise/` and `low_noise/` (`load_lora_weights(high)`, `load_lora_weights(low,
load_into_transformer_2=True)`), ComfyUI's in `comfyui_lora_high_noise.safetensors` and
`..._low_noise`, full weights in `transformer/` and `transformer_2/` (only the experts that
trained).

The TI2V 5B is one transformer over the Wan 2.2 VAE (48 latent channels; a patch of 2 before
its three downsamplings: 16x spatial, 4x temporal) whose pipeline gives the timestep per token
(`expand_timesteps`); training does the same. Its sides are multiples of 32 (the VAE's 16 x the
transformer's patch of 2) and it was trained at 24 fps.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from dagster_project.core.atomic import write_json
from dagster_project.core.params import LoraParams, ModelParams
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import FAMILY_SHAPES
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
from dagster_project.models.diffusers_spec import denoised_mask
from dagster_project.models.wan import WanSpec, comfyui_lora, tiny_transformer, tiny_vae

# Wan2.2-T2V-A14B's and -I2V-A14B's model_index.json; a real checkpoint's wins
BOUNDARY_RATIO = {"t2v": 0.875, "i2v": 0.9}
TI2V_CHANNELS = 48  # the Wan 2.2 VAE's latent width
TI2V_SHIFT = 5.0  # Wan2.2-TI2V-5B's flow_shift; a real checkpoint's scheduler/ wins
# each expert's diffusers component (its full weights' folder) and its LoRA files' name
COMPONENTS = {"high": "transformer", "low": "transformer_2"}
LORA_NAMES = {"high": "high_noise", "low": "low_noise"}


def comfyui_file(expert: str) -> str:
    """The ComfyUI LoRA file of one expert (ComfyUI loads one per expert's model)."""
    stem, suffix = COMFYUI_FILE.rsplit(".", 1)
    return f"{stem}_{LORA_NAMES[expert]}.{suffix}"


class ExpertPair(torch.nn.Module):
    """The two experts as one model: each sample goes to the expert that owns its timestep, as
    `WanPipeline` switches (`high` for t >= boundary, else `low`). The memory switches and
    adapters of diffusers' models apply to both."""

    def __init__(self, high: Any, low: Any, boundary: float) -> None:
        super().__init__()
        self.high, self.low = high, low
        self.boundary = boundary  # a timestep: boundary_ratio x num_train_timesteps

    def experts(self) -> dict[str, Any]:
        return {"high": self.high, "low": self.low}

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        return_dict: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor]:
        timesteps = timestep.expand(len(hidden_states))  # one per sample
        high = timesteps >= self.boundary
        outputs = {}
        for owned, expert in ((high, self.high), (~high, self.low)):
            if owned.any():  # an expert that owns no sample is not run: it gets no gradient
                per_sample = {
                    k: v[owned] if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()
                }
                outputs[expert] = expert(
                    hidden_states=hidden_states[owned],
                    timestep=timesteps[owned],
                    encoder_hidden_states=encoder_hidden_states[owned],
                    return_dict=False,
                    **per_sample,
                )[0]
        if len(outputs) == 1:
            return (next(iter(outputs.values())),)
        first = outputs[self.high]
        merged = first.new_empty((len(hidden_states), *first.shape[1:]))
        merged[high], merged[~high] = first, outputs[self.low]
        return (merged,)

    # diffusers' model switches, on both experts
    def enable_gradient_checkpointing(self) -> None:
        for expert in self.experts().values():
            expert.enable_gradient_checkpointing()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return all(e.is_gradient_checkpointing for e in self.experts().values())

    def enable_layerwise_casting(self, **kwargs: Any) -> None:
        for expert in self.experts().values():
            expert.enable_layerwise_casting(**kwargs)

    def enable_group_offload(self, **kwargs: Any) -> None:
        for expert in self.experts().values():
            expert.enable_group_offload(**kwargs)

    def set_attention_backend(self, backend: str) -> None:
        for expert in self.experts().values():
            expert.set_attention_backend(backend)

    def compile_repeated_blocks(self, **kwargs: Any) -> None:
        for expert in self.experts().values():
            expert.compile_repeated_blocks(**kwargs)

    def add_adapter(self, config: Any, adapter_name: str = ADAPTER) -> None:
        for expert in self.experts().values():
            expert.add_adapter(config, adapter_name=adapter_name)


class Wan22Spec(WanSpec):
    """Wan 2.2 A14B over one base model folder (the `ModelSpec` protocol)."""

    name = "wan22"
    shape = FAMILY_SHAPES["wan22"]
    i2v_image_encoder = False  # Wan 2.2 I2V A14B: the 36-channel input, no image embeddings

    @classmethod
    def _write_more_parts(
        cls, model: ModelParams, out: BaseModelFiles, pretrained: Path | None, task: str
    ) -> None:
        """The low-noise expert (transformer_2/) and the boundary (model_index.json): the local
        checkpoint's, or for the embedded default a second expert of the first's architecture
        with its own seed."""
        config = cls.transformer_class.load_config(out.transformer)
        if pretrained is None:
            torch.manual_seed(model.seed + 1)
            low = cls.transformer_class.from_config(config)
            boundary = BOUNDARY_RATIO[task]
        else:
            source = BaseModelFiles(pretrained)
            if not source.transformer_2.is_dir():
                raise ValueError(
                    f"model.pretrained: {pretrained} has no transformer_2/: a Wan 2.2 A14B "
                    "folder keeps its low-noise expert there (a one-transformer Wan is "
                    "model.family: wan)"
                )
            low = cls.transformer_class.from_pretrained(source.transformer_2, use_safetensors=True)
            pipeline = (
                json.loads(source.pipeline_config.read_text())
                if source.pipeline_config.is_file()
                else {}
            )
            boundary = pipeline.get("boundary_ratio")
            if not isinstance(boundary, int | float) or not 0 < boundary < 1:
                raise ValueError(
                    f"model.pretrained: {source.pipeline_config} has no boundary_ratio in (0, 1) "
                    f"(got {boundary!r}): it says which expert owns which noise levels"
                )
        for key in (cls.text_dim_key, "in_channels", "out_channels", "patch_size"):
            if low.config[key] != config[key]:
                raise ValueError(
                    f"model.pretrained: the experts differ in {key} ({config[key]} and "
                    f"{low.config[key]}): not a Wan 2.2 A14B pair"
                )
        low.save_pretrained(out.transformer_2)
        pipeline = cls.i2v_pipeline_class if task == "i2v" else cls.pipeline_class
        index = {"_class_name": pipeline.__name__, "boundary_ratio": boundary}
        write_json(index, out.pipeline_config)

    @functools.cached_property
    def boundary_ratio(self) -> float:
        return float(json.loads(self.base.pipeline_config.read_text())["boundary_ratio"])

    def load_transformer(self, folder: Path | None = None) -> ExpertPair:
        """Both experts: those saved in `folder` (a full fine-tune's transformer/,
        transformer_2/), the base's for the rest."""
        experts = {}
        for expert, component in COMPONENTS.items():
            saved = folder / component if folder is not None else None
            source = (
                saved if saved is not None and saved.is_dir() else getattr(self.base, component)
            )
            experts[expert] = self.transformer_class.from_pretrained(source, use_safetensors=True)
        timesteps = self.scheduler.config.num_train_timesteps
        return ExpertPair(experts["high"], experts["low"], self.boundary_ratio * timesteps)

    def load_trained(self, folder: Path) -> ExpertPair:
        """Full weights, or the base with each expert's adapter loaded through `WanPipeline`'s
        `load_lora_weights` (the low-noise one with `load_into_transformer_2=True`)."""
        if not self.has_adapter(folder):
            return self.load_transformer(folder)
        pair = self.load_transformer()
        pipe = self._pipeline(pair)
        for expert, name in LORA_NAMES.items():
            if (folder / name / LORA_FILE).is_file():
                pipe.load_lora_weights(
                    folder / name, adapter_name=ADAPTER, load_into_transformer_2=expert == "low"
                )
        return pair

    def _pipeline_parts(self, transformer: torch.nn.Module) -> dict[str, Any]:
        return {
            "transformer": transformer.high,
            "transformer_2": transformer.low,
            "boundary_ratio": self.boundary_ratio,
        }

    # training
    def prepare_training(
        self, transformer: torch.nn.Module, mode: str, lora: LoraParams, experts: str
    ) -> None:
        """Only the chosen experts train (both, or the high- or low-noise one): an adapter on
        each in lora mode, every weight of each in full mode; the rest is frozen."""
        transformer.requires_grad_(False)
        for name, expert in transformer.experts().items():
            if experts in ("both", name):
                if mode == "lora":
                    add_lora(expert, lora, self.lora_targets)
                else:
                    expert.requires_grad_(True)

    def has_adapter(self, folder: Path) -> bool:
        return any((folder / name / LORA_FILE).is_file() for name in LORA_NAMES.values())

    def load_adapter(self, transformer: torch.nn.Module, folder: Path) -> None:
        for expert_name, expert in transformer.experts().items():
            saved = folder / LORA_NAMES[expert_name]
            if has_lora(expert) != (saved / LORA_FILE).is_file():
                raise ValueError(
                    f"{folder}: the {LORA_NAMES[expert_name]} expert "
                    f"{'has' if has_lora(expert) else 'has no'} adapter to train, and the "
                    f"folder {'lacks' if has_lora(expert) else 'holds'} one (train.experts)"
                )
            if has_lora(expert):
                load_lora_state(expert, saved)

    def noise_span(
        self, experts: str, weighting_scheme: str, generator: torch.Generator
    ) -> tuple[float, float]:
        """The levels of the expert this step trains: the one asked for, or with both, the
        owner of a level drawn from the training density (so each expert trains on its share
        of the steps). A level >= boundary_ratio is the high-noise expert's (t = level x
        num_train_timesteps, as the pipeline compares)."""
        if experts == "both":
            [level] = flow_matching.sample_sigmas(self.scheduler, 1, weighting_scheme, generator)
            experts = "high" if float(level) >= self.boundary_ratio else "low"
        return (self.boundary_ratio, 1.0) if experts == "high" else (0.0, self.boundary_ratio)

    # saving
    def save_trained(self, transformer: torch.nn.Module, folder: Path, lora: bool) -> None:
        """Per expert that trained: its adapter in diffusers' format (`high_noise/`,
        `low_noise/`) and ComfyUI's, or its full weights (`transformer/`, `transformer_2/`)."""
        saved = []
        for expert, module in transformer.experts().items():
            if lora and has_lora(module):
                weights, config = lora_state(module)
                self.pipeline_class.save_lora_weights(
                    folder / LORA_NAMES[expert],
                    transformer_lora_layers=weights,
                    transformer_lora_adapter_metadata=config,
                )
                comfy = comfyui_lora(weights, config["lora_alpha"])
                save_file(comfy, str(folder / comfyui_file(expert)))
                saved.append(expert)
            elif not lora and any(p.requires_grad for p in module.parameters()):
                module.save_pretrained(folder / COMPONENTS[expert])
                saved.append(expert)
        if not saved:
            raise ValueError(f"save_trained(lora={lora}): no expert of the pair trains")


def build_tiny_ti2v(model: ModelParams, text_dim: int) -> tuple[Any, Any]:
    """The embedded TI2V default: a small transformer over a small Wan 2.2 VAE (48 latent
    channels, residual, patch 2: 16x spatial as the real one)."""
    vae = tiny_vae(
        model,
        z_dim=TI2V_CHANNELS,
        decoder_base_dim=model.tiny.vae_base_dim,
        is_residual=True,
        in_channels=12,  # RGB after the 2x2 patch
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
    )
    return tiny_transformer(model, text_dim, TI2V_CHANNELS), vae


class Wan22TI2VSpec(WanSpec):
    """Wan 2.2 TI2V 5B over one base model folder (the `ModelSpec` protocol)."""

    name = "wan22_ti2v"
    shape = FAMILY_SHAPES["wan22_ti2v"]
    default_scheduler = {"shift": TI2V_SHIFT}
    build_tiny = staticmethod(build_tiny_ti2v)
    build_tiny_i2v = staticmethod(build_tiny_ti2v)  # one model does both
    i2v_image_encoder = False
    expand_timesteps = True

    @classmethod
    def _check_transformer(cls, transformer: Any, task: str) -> None:
        if transformer.config.in_channels != TI2V_CHANNELS:
            raise ValueError(
                f"model.pretrained: the transformer takes {transformer.config.in_channels} latent "
                f"channels, the TI2V 5B {TI2V_CHANNELS} (an A14B folder is model.family: wan22, "
                "Wan 2.1 is wan)"
            )

    def _model_input(
        self, noisy: torch.Tensor, conditioning: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image-to-video: latent frame 0 is the given frame's latents (`condition`), clean,
        and out of the loss, as the pipeline mixes `(1 - mask) x condition + mask x latents`;
        a sample whose `first_frame_kept` is 0 trains as text-to-video."""
        if self.task != "i2v":
            return noisy, None
        mask = denoised_mask(noisy, conditioning)
        condition = conditioning["condition"].to(noisy.dtype)
        return (1 - mask) * condition + mask * noisy, mask

    def _timesteps(
        self, levels: torch.Tensor, latents: torch.Tensor, scored: torch.Tensor | None
    ) -> torch.Tensor:
        """One timestep per token, as the pipeline with `expand_timesteps` gives them: the
        level's, and 0 for the tokens of a given first frame (the mask at each patch)."""
        _, patch_h, patch_w = self._transformer_config["patch_size"]
        timesteps = super()._timesteps(levels, latents, scored)
        if scored is None:
            scored = torch.ones_like(latents[:, :1])
        return (scored[:, 0, :, ::patch_h, ::patch_w] * timesteps.view(-1, 1, 1, 1)).flatten(1)

"""CogVideoX (2B, 5B, 1.5): the family spec (see models/spec.py), the embedded tiny default,
real checkpoints.

A base model is always a diffusers folder with `transformer/`, `vae/` and `scheduler/`, written
by `write_base_model` with `save_pretrained` (so every config there holds every key).

CogVideoX trains by v-prediction, not flow matching, as diffusers'
examples/cogvideo/train_cogvideox_lora.py does: integer timesteps t uniform over
`num_train_timesteps` (N), the transformer's velocity turned into a clean-latent prediction,
scored against the latents with weight 1 / (1 - alphas_cumprod[t]). A noise level in the
protocol is t / N: the evaluation's fixed levels 0.1 ... 0.9 are timesteps 100 ... 900.

Latents, here as in every family, are [B, C, f, h, w] (the VAE's layout), scaled by the VAE's
`scaling_factor`; only the transformer sees them as [B, f, C, h, w], its own layout.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
    ModelMixin,
)

from dagster_project.core.params import ModelParams
from dagster_project.core.shapes import FAMILY_SHAPES, Bucket
from dagster_project.models.diffusers_spec import DiffusersSpec, PipelinePromptEncoder
from dagster_project.models.flow_matching import FULL_SPAN
from dagster_project.models.spec import PromptEncoder
from dagster_project.models.text_encoder import TextEncoder

SHAPE = FAMILY_SHAPES["cogvideox"]
# CogVideoX-2b's scheduler_config.json (5B: snr_shift_scale 1.0); a real checkpoint's wins
DEFAULT_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "v_prediction",
    "timestep_spacing": "trailing",
    "rescale_betas_zero_snr": True,
    "snr_shift_scale": 3.0,
}
# the attention projections of every block, as diffusers' CogVideoX LoRA script targets them
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def build_tiny(
    model: ModelParams, text_dim: int
) -> tuple[CogVideoXTransformer3DModel, AutoencoderKLCogVideoX]:
    """The embedded default: a small CogVideoX transformer and VAE, random init from `model.seed`.

    `model.tiny` is shared with Wan: its layers, heads and head width size the transformer,
    `freq_dim` the timestep embedding and `vae_base_dim` every VAE block; `ffn_dim` has no
    counterpart (CogVideoX's feed-forward is 4x the width). Rotary embeddings are on, as in 5B
    and 1.5, so the tiny model runs the code real checkpoints need.
    """
    tiny = model.tiny
    torch.manual_seed(model.seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=tiny.num_attention_heads,
        attention_head_dim=tiny.attention_head_dim,
        in_channels=16,
        out_channels=16,
        time_embed_dim=tiny.freq_dim,
        text_embed_dim=text_dim,
        num_layers=tiny.num_layers,
        sample_width=8,  # latent pixels: the rotary grid's reference size (64 x 64 pixels)
        sample_height=8,
        sample_frames=17,
        patch_size=2,
        max_text_seq_length=SHAPE.text_len,
        use_rotary_positional_embeddings=True,
    )
    # seeded again: the VAE (and so every cached latent) must not depend on the transformer's size
    torch.manual_seed(model.seed)
    # four blocks: 8x spatial and (first two) 4x temporal compression, as the real VAE;
    # 16 latent channels keep the real scaling_factor meaningful
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(tiny.vae_base_dim,) * 4,
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    return transformer, vae


class CogVideoXPromptEncoder(PipelinePromptEncoder):
    """Captions -> `prompt_embeds` [text_len, D], through `CogVideoXPipeline.encode_prompt`
    itself (max-length padding, the encoder's output at every position, padding included)."""

    family = "cogvideox"
    pipeline_class = CogVideoXPipeline


class CogVideoXSpec(DiffusersSpec):
    """The CogVideoX family over one base model folder (the `ModelSpec` protocol)."""

    name = "cogvideox"
    shape = SHAPE
    lora_targets = LORA_TARGETS
    transformer_class = CogVideoXTransformer3DModel
    vae_class = AutoencoderKLCogVideoX
    pipeline_class = CogVideoXPipeline
    scheduler_class = CogVideoXDDIMScheduler
    default_scheduler = DEFAULT_SCHEDULER
    text_dim_key = "text_embed_dim"
    prompt_encoder_class = CogVideoXPromptEncoder
    build_tiny = staticmethod(build_tiny)

    @classmethod
    def _check_transformer(cls, transformer: ModelMixin, task: str) -> None:
        # prompts are encoded at SHAPE.text_len without reading the base model (see prompt_encoder)
        if transformer.config.max_text_seq_length != SHAPE.text_len:
            raise ValueError(
                f"the transformer reads {transformer.config.max_text_seq_length} text tokens "
                f"(max_text_seq_length), not CogVideoX's {SHAPE.text_len}"
            )

    def prompt_encoder(self, text: TextEncoder, text_len: int) -> PromptEncoder:
        """The pipeline's prompt encoding at the transformer's fixed text length, its
        `max_text_seq_length`: SHAPE.text_len, which `write_base_model` holds every base model
        to, since captions are encoded without waiting for the base model."""
        if text_len != SHAPE.text_len:
            raise ValueError(
                f"model.text_len: {text_len}, but the CogVideoX transformer reads exactly "
                f"{SHAPE.text_len} text tokens (max_text_seq_length): set model.text_len: "
                f"{SHAPE.text_len}"
            )
        return super().prompt_encoder(text, text_len)

    # training
    def evaluation_point(self, level: float) -> str:
        """v-prediction has no sigma: a fixed evaluation level is the timestep level x N."""
        return f"timestep {int(self._timesteps(torch.tensor([level]))[0])}"

    def _timesteps(self, levels: torch.Tensor) -> torch.Tensor:
        """Noise levels t / N -> the integer timesteps t."""
        steps = self.scheduler.config.num_train_timesteps
        return (levels * steps).round().long().clamp(0, steps - 1)

    def sample_noise_levels(
        self,
        count: int,
        weighting_scheme: str,
        generator: torch.Generator,
        span: tuple[float, float] = FULL_SPAN,
    ) -> torch.Tensor:
        """Levels t / N for timesteps t uniform over [0, N), as CogVideoX's training draws them.

        `weighting_scheme` is not used: its densities are flow matching's (the SD3 scripts'),
        and v-prediction weights timesteps in the loss instead (see `loss`). `span` is always
        the full one (one transformer)."""
        if span != FULL_SPAN:
            raise ValueError(f"cogvideox has one transformer: no noise span {span}")
        steps = self.scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (count,), generator=generator, device=generator.device)
        return timesteps.float() / steps

    def _frame_padding(self, latent_frames: int) -> int:
        """Leading latent frames CogVideoX 1.5 adds so that frames divide by `patch_size_t`
        (its pipeline generates them and drops them before decoding); 0 for 1.0."""
        patch_size_t = self._transformer_config.patch_size_t
        if patch_size_t is None or latent_frames % patch_size_t == 0:
            return 0
        return patch_size_t - latent_frames % patch_size_t

    def _rotary_embeddings(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """RoPE (5B, 1.5, the tiny default) for transformer-layout latents [B, f, C, h, w]."""
        config = self._transformer_config
        if not config.use_rotary_positional_embeddings:
            return None
        # the pipeline's own method reads just these two attributes; a stand-in carries them
        # because `loss` may be handed a wrapped transformer (DDP) that has no `.config`
        factor = 2 ** (len(self._vae_config.block_out_channels) - 1)
        holder = SimpleNamespace(
            transformer=SimpleNamespace(config=config), vae_scale_factor_spatial=factor
        )
        _, frames, _, height, width = hidden.shape
        return CogVideoXPipeline._prepare_rotary_positional_embeddings(
            holder, height * factor, width * factor, frames, hidden.device
        )

    def loss(
        self,
        transformer: torch.nn.Module,
        latents: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
        levels: torch.Tensor,
        noise: torch.Tensor,
        weighting_scheme: str = "none",
    ) -> torch.Tensor:
        """Per-sample v-prediction loss at noise levels `levels` (timestep / N).

        As train_cogvideox_lora.py: noisy = add_noise(latents, noise, t); the transformer's
        velocity v gives the clean latent sqrt(a) * noisy - sqrt(1 - a) * v (`get_velocity`
        with the roles that identity needs), scored against `latents` with weight 1 / (1 - a),
        a = alphas_cumprod[t]: that weighting makes it the MSE of the velocity itself.
        `weighting_scheme` (flow matching's) is not used."""
        scheduler = self.scheduler
        timesteps = self._timesteps(levels).to(latents.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        hidden = noisy.transpose(1, 2)  # the transformer's layout [B, f, C, h, w]
        pad = self._frame_padding(hidden.shape[1])
        if pad:  # 1.5: the first noisy frame repeated in front, its output not scored
            hidden = torch.cat([hidden[:, :1].expand(-1, pad, -1, -1, -1), hidden], dim=1)
        output = transformer(
            hidden_states=hidden,
            encoder_hidden_states=conditioning["prompt_embeds"],
            timestep=timesteps,
            image_rotary_emb=self._rotary_embeddings(hidden),
            return_dict=False,
        )[0]
        # back to [B, C, f, h, w]; in float, as the pipeline takes it (get_velocity computes
        # in its first argument's dtype)
        velocity = output[:, pad:].transpose(1, 2).float()
        prediction = scheduler.get_velocity(velocity, noisy, timesteps)
        # alphas_cumprod is float64: the weights follow the loss (float32), as add_noise does
        weights = 1 / (1 - scheduler.alphas_cumprod.to(latents.device)[timesteps].float())
        return (prediction - latents.float()).pow(2).flatten(1).mean(1) * weights

    # sampling
    def _output_latent(self, output: torch.Tensor, bucket: Bucket) -> torch.Tensor:
        """[f, C, h, w] after 1.5's leading padding frames (which the pipeline drops to decode)
        -> [C, f, h, w]."""
        latent_frames = (bucket.frames - 1) // self.vae.config.temporal_compression_ratio + 1
        return output[0, self._frame_padding(latent_frames) :].transpose(0, 1)

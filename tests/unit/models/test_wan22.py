"""Wan 2.2 A14B's two experts: each noise level goes to its expert as in WanPipeline, one
expert or both train, and each expert's LoRA loads as a user loads it (diffusers' files with
`load_into_transformer_2`, ComfyUI's files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import WanPipeline

from dagster_project.core.params import LoraParams, ModelParams, parse_params
from dagster_project.core.paths import BaseModelFiles
from dagster_project.models.families import FAMILIES
from dagster_project.models.wan22 import ExpertPair, Wan22Spec, comfyui_file
from dagster_project.video.decode import decode_clip
from tests.unit.models.test_families import batch, sample, tiny_spec

HIGH, LOW = 0.95, 0.3  # noise levels either side of the tiny default's boundary (0.875)


def spec_and_inputs(folder: Path, clip: Path) -> tuple[Wan22Spec, dict, dict, object]:
    spec = tiny_spec("wan22", folder)
    moments, conditioning, bucket = batch(spec, clip)
    return spec, moments, conditioning, bucket


def two_samples(spec: Wan22Spec, moments: dict, conditioning: dict):
    """One sample at a high and one at a low noise level, with their noise."""
    latents = spec.latents({k: v.repeat(2, *[1] * (v.ndim - 1)) for k, v in moments.items()}, None)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    cond = {k: v.repeat(2, *[1] * (v.ndim - 1)) for k, v in conditioning.items()}
    return latents, noise, cond, torch.tensor([HIGH, LOW])


def test_each_level_goes_to_the_expert_that_owns_it(clip: Path, tmp_path: Path) -> None:
    spec, moments, conditioning, _ = spec_and_inputs(tmp_path / "base", clip)
    pair = spec.load_transformer()
    assert spec.boundary_ratio == 0.875 and pair.boundary == 875.0
    latents, _, cond, levels = two_samples(spec, moments, conditioning)
    timesteps = levels * 1000
    with torch.no_grad():
        both = pair(latents, timesteps, cond["prompt_embeds"])[0]
        for i, expert in enumerate((pair.high, pair.low)):
            alone = expert(
                hidden_states=latents[i : i + 1],
                timestep=timesteps[i : i + 1],
                encoder_hidden_states=cond["prompt_embeds"][i : i + 1],
                return_dict=False,
            )[0]
            torch.testing.assert_close(both[i : i + 1], alone)
    # a batch of low levels runs the low-noise expert only: the other gets no gradient
    spec.prepare_training(pair, "lora", LoraParams(rank=4, alpha=4), "both")
    low = spec.loss(pair, latents, cond, torch.tensor([LOW, LOW]), torch.randn_like(latents))
    low.mean().backward()
    grads = {n.split(".")[0]: p.grad is not None for n, p in pair.named_parameters() if "lora" in n}
    assert grads == {"high": False, "low": True}


def test_a_step_draws_one_experts_levels(tmp_path: Path) -> None:
    spec = tiny_spec("wan22", tmp_path / "base")
    b = spec.boundary_ratio
    generator = torch.Generator().manual_seed(0)
    assert spec.noise_span("high", "logit_normal", generator) == (b, 1.0)
    assert spec.noise_span("low", "logit_normal", generator) == (0.0, b)
    spans = [
        spec.noise_span("both", "logit_normal", torch.Generator().manual_seed(i))
        for i in range(400)
    ]
    high_share = spans.count((b, 1.0)) / len(spans)
    # the density's mass above the boundary: shift 3 maps sigma 0.875 to u = 0.7, and a
    # logit-normal u falls below 1 - 0.7 with probability 0.20
    assert 0.14 < high_share < 0.26 and spans.count((0.0, b)) + spans.count((b, 1.0)) == 400
    for span in ((b, 1.0), (0.0, b)):
        levels = spec.sample_noise_levels(256, "logit_normal", generator, span)
        assert len(levels) == 256 and bool(((levels >= span[0]) & (levels <= span[1])).all())


def test_both_experts_loras_load_as_users_load_them(clip: Path, tmp_path: Path) -> None:
    spec, moments, conditioning, bucket = spec_and_inputs(tmp_path / "base", clip)
    pair = spec.load_transformer()
    spec.prepare_training(pair, "lora", LoraParams(rank=4, alpha=8), "both")
    latents, noise, cond, levels = two_samples(spec, moments, conditioning)
    optimizer = torch.optim.AdamW([p for p in pair.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        spec.loss(pair, latents, cond, levels, noise).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    spec.save_trained(pair, tmp_path / "adapter", lora=True)
    trained = sample(spec, pair, conditioning, bucket)
    assert not torch.equal(trained, sample(spec, spec.load_transformer(), conditioning, bucket))

    def user_pipeline() -> WanPipeline:
        base = spec.load_transformer()
        return WanPipeline(
            tokenizer=None, text_encoder=None, vae=spec.vae, scheduler=spec.scheduler,
            transformer=base.high, transformer_2=base.low, boundary_ratio=spec.boundary_ratio,
        )  # fmt: skip

    folder = tmp_path / "adapter"
    files = {  # diffusers' format, one folder per expert; ComfyUI's, one file per expert
        "diffusers": (folder / "high_noise", folder / "low_noise"),
        "comfyui": (folder / comfyui_file("high"), folder / comfyui_file("low")),
    }
    for high, low in files.values():
        pipe = user_pipeline()
        pipe.load_lora_weights(str(high), adapter_name="user")
        pipe.load_lora_weights(str(low), adapter_name="user", load_into_transformer_2=True)
        user = ExpertPair(pipe.transformer, pipe.transformer_2, pair.boundary)
        assert torch.equal(sample(spec, user, conditioning, bucket), trained)
    assert torch.equal(sample(spec, spec.load_trained(folder), conditioning, bucket), trained)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_one_expert_trains_and_is_saved_alone(clip: Path, tmp_path: Path, mode: str) -> None:
    spec, moments, conditioning, _ = spec_and_inputs(tmp_path / "base", clip)
    pair = spec.load_transformer()
    spec.prepare_training(pair, mode, LoraParams(rank=4, alpha=4), "high")
    trainable = {n.split(".")[0] for n, p in pair.named_parameters() if p.requires_grad}
    assert trainable == {"high"}
    with torch.no_grad():
        for weight in pair.high.parameters():
            if weight.requires_grad:
                weight.add_(0.01)
    spec.save_trained(pair, tmp_path / "model", lora=mode == "lora")
    saved = {p.name for p in (tmp_path / "model").iterdir()}
    assert saved == ({"transformer"} if mode == "full" else {"high_noise", comfyui_file("high")})
    loaded = spec.load_trained(tmp_path / "model")
    base = spec.load_transformer()
    for name, weight in loaded.low.state_dict().items():  # the base's low-noise expert
        assert torch.equal(weight, base.low.state_dict()[name]), name
    latents, noise, cond, levels = two_samples(spec, moments, conditioning)
    with torch.no_grad():
        ours = spec.loss(pair, latents, cond, levels, noise)
        theirs = spec.loss(loaded, latents, cond, levels, noise)
    torch.testing.assert_close(ours, theirs)
    if mode == "lora":  # a run training the other expert cannot take this adapter
        other = spec.load_transformer()
        spec.prepare_training(other, "lora", LoraParams(rank=4, alpha=4), "low")
        with pytest.raises(ValueError, match="the high_noise expert has no adapter to train"):
            spec.load_adapter(other, tmp_path / "model")


def test_params_and_checkpoints_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train.experts: high .* wan has one transformer"):
        parse_params({"train": {"experts": "high"}})
    parse_params({"model": {"family": "wan22"}, "train": {"experts": "low"}})
    one = tiny_spec("wan", tmp_path / "wan21")  # a one-transformer folder
    with pytest.raises(ValueError, match="has no transformer_2/"):
        FAMILIES["wan22"].write_base_model(
            ModelParams(), 384, BaseModelFiles(tmp_path / "out"), one.base.root
        )


def test_ti2v_gives_a_timestep_per_token_as_its_pipeline(clip: Path, tmp_path: Path) -> None:
    """The TI2V 5B layout: the Wan 2.2 VAE (48 channels, 16x spatial, 4x temporal, causal: the
    first frame alone encodes to the first latent frame) and the timestep per token that
    `WanPipeline(expand_timesteps=True)` gives."""
    spec = tiny_spec("wan22_ti2v", tmp_path / "base")
    moments, conditioning, bucket = batch(spec, clip)
    assert bucket == (9, 64, 64) and moments["mean"].shape == (1, 48, 3, 4, 4)
    frames = torch.from_numpy(decode_clip(clip, *bucket, fps=24.0, sample_aspect_ratio="1:1"))
    first = spec.encode_video(frames[:1])["mean"]
    torch.testing.assert_close(first[:, 0], spec.encode_video(frames)["mean"][:, 0])

    latents = spec.latents(moments, None)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    transformer = spec.load_transformer().eval()
    with torch.no_grad():
        loss = spec.loss(transformer, latents, conditioning, torch.tensor([0.5]), noise)
        mask = torch.ones(latents.shape)  # the pipeline's, for text-to-video
        timestep = (mask[0][0][:, ::2, ::2] * 500.0).flatten().unsqueeze(0)
        prediction = transformer(
            hidden_states=0.5 * latents + 0.5 * noise,
            timestep=timestep,
            encoder_hidden_states=conditioning["prompt_embeds"],
            return_dict=False,
        )[0]
    torch.testing.assert_close(loss, (prediction - (noise - latents)).pow(2).flatten(1).mean(1))
    wan21 = tiny_spec("wan", tmp_path / "wan21")
    with pytest.raises(ValueError, match="takes 16 latent channels, the TI2V 5B 48"):
        FAMILIES["wan22_ti2v"].write_base_model(
            ModelParams(), 384, BaseModelFiles(tmp_path / "out"), wan21.base.root
        )

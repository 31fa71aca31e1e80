"""Image-to-video (`train.task: i2v`): what the trainer builds from a clip's first frame is
what the family's image-to-video pipeline builds from it, tensor for tensor; the given frame is
left out of the loss where the pipeline keeps it clean; params name the families that can."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from dagster_project.core.params import LoraParams, ModelParams, parse_params
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import FAMILY_SHAPES
from dagster_project.models.adapters import add_lora
from dagster_project.models.families import FAMILIES, family_spec
from dagster_project.models.text_encoder import TextEncoder
from dagster_project.video.decode import decode_clip
from tests.unit.models.test_families import I2V, batch, tiny_spec, train_steps


def first_call(module: torch.nn.Module) -> tuple[dict[str, Any], torch.utils.hooks.RemovableHandle]:
    """The keyword arguments of `module`'s next forward call, recorded by a hook."""
    seen: dict[str, Any] = {}

    def record(_: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if not seen:
            seen.update(kwargs)

    return seen, module.register_forward_pre_hook(record, with_kwargs=True)


@pytest.mark.parametrize("family", I2V)
def test_the_condition_is_the_pipelines(family: str, clip: Path, tmp_path: Path) -> None:
    spec = tiny_spec(family, tmp_path / "base", "i2v")
    moments, conditioning, bucket = batch(spec, clip)
    frames = decode_clip(clip, *bucket, fps=spec.shape.fps, sample_aspect_ratio="1:1")
    assert torch.equal(conditioning["image"][0], torch.from_numpy(frames[0]))
    # Wan 2.1 I2V's CLIP, HunyuanVideo 1.5's SigLIP
    assert ("image_embeds" in conditioning) == (family in {"wan", "hunyuan15"})

    # sampling from the cached first frame: the pipeline's first transformer call gets the
    # input and timestep the trainer builds from its own latents and level
    transformer = spec.load_transformer().eval()
    first = transformer.high if family == "wan22" else transformer
    seen, hook = first_call(first)
    spec.generate(transformer, conditioning, bucket, seed=0, steps=2, guidance_scale=1.0)
    hook.remove()
    level = seen["timestep"].max() / spec.scheduler.config.num_train_timesteps
    if family in ("ltx", "ltx2"):  # LTX-2's video stream is laid out as LTX-Video's
        check_ltx_input(spec, seen, conditioning, level)
        return
    if family == "hunyuan15":  # [noisy | first frame's latents at frame 0 | mask 1 there]
        noisy = seen["hidden_states"][:, : spec.vae.config.latent_channels]
        assert torch.equal(spec._model_input(noisy, conditioning), seen["hidden_states"])
        assert torch.equal(seen["image_embeds"], conditioning["image_embeds"])
        assert seen["hidden_states"].shape[-2:] == (
            bucket.height // spec.shape.spatial_multiple,
            bucket.width // spec.shape.spatial_multiple,
        )  # sampled at the bucket's size, not at a size of the pipeline's choosing
        return
    channels = spec.vae.config.z_dim
    noisy = seen["hidden_states"][:, :channels]
    if family == "wan22_ti2v":  # frame 0 is the condition itself: the rest is the noise
        noisy = torch.cat([conditioning["condition"], noisy[:, :, 1:]], dim=2)
    hidden, scored = spec._model_input(noisy, conditioning)
    assert torch.equal(hidden, seen["hidden_states"])
    timesteps = spec._timesteps(level.view(1), noisy, scored)
    torch.testing.assert_close(timesteps, seen["timestep"].float())
    if family == "wan":
        assert torch.equal(seen["encoder_hidden_states_image"], conditioning["image_embeds"])


def check_ltx_input(spec: Any, seen: dict, conditioning: dict, level: torch.Tensor) -> None:
    """LTX: frame 0 of the input is the given frame's latents (from the clip's own latents in
    training), the rest the noisy latents; its tokens at timestep 0, the others at t."""
    from diffusers import LTXPipeline

    patch, patch_t = spec._patch
    grid = seen["num_frames"], seen["height"], seen["width"]
    given = LTXPipeline._unpack_latents(seen["hidden_states"], *grid, patch, patch_t)
    junk = torch.full_like(given, 7.0)
    noisy = torch.cat([junk[:, :, :1], given[:, :, 1:]], dim=2)  # frame 0 must not come from here
    latents = torch.cat([given[:, :, :1], junk[:, :, 1:]], dim=2)  # ... nor the rest from here
    hidden, scored = spec._model_input(noisy, latents, conditioning)
    assert torch.equal(hidden, given)
    torch.testing.assert_close(spec._timesteps(level.view(1), scored), seen["timestep"].float())


@pytest.mark.parametrize("family", ["ltx", "ltx2", "wan22_ti2v"])
def test_a_causal_vae_gives_the_first_frame_the_clips_first_latents(
    family: str, clip: Path, tmp_path: Path
) -> None:
    """What the pipeline encodes (the frame alone) is the clip's first latent frame."""
    spec = tiny_spec(family, tmp_path / "base", "i2v")
    moments, _, bucket = batch(spec, clip)
    frames = decode_clip(clip, *bucket, fps=spec.shape.fps, sample_aspect_ratio="1:1")
    alone = spec.encode_video(torch.from_numpy(frames[:1]))["mean"]
    torch.testing.assert_close(alone, moments["mean"][0][:, :1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", sorted(f for f in I2V if FAMILY_SHAPES[f].drops_first_frame))
def test_the_given_frame_is_kept_out_of_the_loss(family: str, clip: Path, tmp_path: Path) -> None:
    spec = tiny_spec(family, tmp_path / "base", "i2v")
    moments, conditioning, _ = batch(spec, clip)
    transformer = spec.load_transformer().eval()
    latents = spec.latents(moments, None)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    levels = torch.tensor([0.6])
    with torch.no_grad():
        loss = spec.loss(transformer, latents, conditioning, levels, noise)
        other = noise.clone()
        other[:, :, 0] += 1.0  # frame 0 is given: its noise and target do not count
        assert torch.equal(spec.loss(transformer, latents, conditioning, levels, other), loss)
        assert not torch.equal(
            spec.loss(transformer, latents, conditioning, levels, noise * 1.1), loss
        )
        # a sample whose condition is dropped (train.first_frame_p) trains as text-to-video
        dropped = conditioning | {"first_frame_kept": torch.zeros(1)}
        text_to_video = family_spec(family, spec.base, "t2v")
        # (per-token timesteps and a masked mean: the same sums, in another order)
        torch.testing.assert_close(
            spec.loss(transformer, latents, dropped, levels, noise),
            text_to_video.loss(transformer, latents, conditioning, levels, noise),
            rtol=1e-5,
            atol=1e-6,
        )


def test_a_text_to_video_checkpoint_is_refused_for_i2v(tmp_path: Path) -> None:
    checkpoint = tiny_spec("wan", tmp_path / "t2v")
    with pytest.raises(ValueError, match="takes 16 input channels .* train.task i2v needs 36"):
        FAMILIES["wan"].write_base_model(
            ModelParams(), 384, BaseModelFiles(tmp_path / "out"), checkpoint.base.root, "i2v"
        )
    i2v = tiny_spec("wan", tmp_path / "i2v", "i2v")
    shutil.rmtree(i2v.base.image_encoder)
    with pytest.raises(ValueError, match="has no image_encoder/: Wan 2.1 I2V"):
        FAMILIES["wan"].write_base_model(
            ModelParams(), 384, BaseModelFiles(tmp_path / "again"), i2v.base.root, "i2v"
        )


TI2V_BUCKETS = {"buckets": {"sizes": [[17, 64, 64]]}}  # sides of 32


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"model": {"family": "hunyuan"}, "train": {"task": "i2v"}},
            r"train.task: hunyuan does not train i2v \(model.family hunyuan15, ltx, ltx2, wan, "
            r"wan22, wan22_ti2v do\)",
        ),
        (
            {"model": {"family": "wan22_ti2v"}, "train": {"first_frame_p": 0.3}, **TI2V_BUCKETS},
            "train.first_frame_p: .* wan22_ti2v with task t2v cannot",
        ),
        (
            {"model": {"family": "wan22"}, "train": {"task": "i2v", "first_frame_p": 0.3}},
            r"train.first_frame_p: .*\(model.family ltx, ltx2, wan22_ti2v with task i2v can\)",
        ),
        (
            {"model": {"family": "wan", "text_len": 32}, "train": {"task": "i2v"}},
            "model.text_len: wan image-to-video takes exactly 512 caption tokens",
        ),
        ({"train": {"task": "v2v"}}, "train.task: Input should be 't2v' or 'i2v'"),
    ],
)
def test_params_refuse_what_a_family_cannot_do(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_params(params)


def test_params_accept_each_i2v_family() -> None:
    parse_params({"model": {"family": "wan", "text_len": 512}, "train": {"task": "i2v"}})
    parse_params({"model": {"family": "wan22"}, "train": {"task": "i2v"}})
    parse_params(
        {
            "model": {"family": "wan22_ti2v"},
            "train": {"task": "i2v", "first_frame_p": 0.2},
            **TI2V_BUCKETS,
        }
    )


def test_an_ltx_i2v_adapter_samples_through_ltx_condition_pipeline(
    clip: Path, tmp_path: Path
) -> None:
    """The other LTX image-to-video pipeline loads the exported adapter and samples from the
    same first frame; its own schedule needs a scheduler without dynamic shifting."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LTXConditionPipeline
    from PIL import Image

    spec = tiny_spec("ltx", tmp_path / "base", "i2v")
    moments, conditioning, bucket = batch(spec, clip)
    transformer = spec.load_transformer()
    add_lora(transformer, LoraParams(rank=4, alpha=8), spec.lora_targets)
    train_steps(spec, transformer, moments, conditioning, steps=3)
    spec.save_trained(transformer, tmp_path / "adapter", lora=True)

    def sample(with_adapter: bool) -> torch.Tensor:
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            spec.scheduler.config, use_dynamic_shifting=False
        )
        text = TextEncoder(None)  # its encode_prompt reads the encoder's dtype even with embeds
        pipe = LTXConditionPipeline(
            scheduler=scheduler, vae=spec.vae, text_encoder=text.model, tokenizer=text.tokenizer,
            transformer=spec.load_transformer(),
        )  # fmt: skip
        if with_adapter:
            pipe.load_lora_weights(tmp_path / "adapter")
        pipe.set_progress_bar_config(disable=True)
        return pipe(
            image=Image.fromarray(conditioning["image"][0].numpy()),
            prompt_embeds=conditioning["prompt_embeds"],
            prompt_attention_mask=conditioning["prompt_attention_mask"],
            height=bucket.height, width=bucket.width, num_frames=bucket.frames,
            num_inference_steps=2, guidance_scale=1.0, frame_rate=spec.shape.fps,
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
        ).frames  # fmt: skip

    trained = sample(with_adapter=True)
    assert torch.isfinite(trained).all()
    assert not torch.equal(trained, sample(with_adapter=False))

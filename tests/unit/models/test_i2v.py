"""Image-to-video (`train.task: i2v`): what the trainer builds from a clip's first frame is
what the family's image-to-video pipeline builds from it, tensor for tensor; the given frame is
left out of the loss where the pipeline keeps it clean; params name the families that can."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from dagster_project.core.params import ModelParams, parse_params
from dagster_project.core.paths import BaseModelFiles
from dagster_project.models.families import FAMILIES
from dagster_project.video.decode import decode_clip
from tests.unit.models.test_families import I2V, batch, tiny_spec


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
    assert ("image_embeds" in conditioning) == (family == "wan")  # Wan 2.1 I2V's CLIP

    # sampling from the cached first frame: the pipeline's first transformer call gets the
    # input and timestep the trainer builds from its own latents and level
    transformer = spec.load_transformer().eval()
    first = transformer.high if family == "wan22" else transformer
    seen, hook = first_call(first)
    spec.generate(transformer, conditioning, bucket, seed=0, steps=2, guidance_scale=1.0)
    hook.remove()
    channels = spec.vae.config.z_dim
    noisy = seen["hidden_states"][:, :channels]
    if family == "wan22_ti2v":  # frame 0 is the condition itself: the rest is the noise
        noisy = torch.cat([conditioning["condition"], noisy[:, :, 1:]], dim=2)
    hidden, scored = spec._model_input(noisy, conditioning)
    assert torch.equal(hidden, seen["hidden_states"])
    level = seen["timestep"].max() / spec.scheduler.config.num_train_timesteps
    timesteps = spec._timesteps(level.view(1), noisy, scored)
    torch.testing.assert_close(timesteps, seen["timestep"].float())
    if family == "wan":
        assert torch.equal(seen["encoder_hidden_states_image"], conditioning["image_embeds"])


def test_ti2v_keeps_the_given_frame_out_of_the_loss(clip: Path, tmp_path: Path) -> None:
    spec = tiny_spec("wan22_ti2v", tmp_path / "base", "i2v")
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
        text_only = {"prompt_embeds": conditioning["prompt_embeds"]}
        assert torch.equal(
            spec.loss(transformer, latents, dropped, levels, noise),
            spec.loss(transformer, latents, text_only, levels, noise),
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
            {"model": {"family": "ltx"}, "train": {"task": "i2v"}},
            r"train.task: ltx does not train i2v \(model.family wan, wan22, wan22_ti2v do\)",
        ),
        (
            {"model": {"family": "wan22_ti2v"}, "train": {"first_frame_p": 0.3}, **TI2V_BUCKETS},
            "train.first_frame_p: .* wan22_ti2v with task t2v cannot",
        ),
        (
            {"model": {"family": "wan22"}, "train": {"task": "i2v", "first_frame_p": 0.3}},
            r"train.first_frame_p: .*\(model.family wan22_ti2v with task i2v can\)",
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

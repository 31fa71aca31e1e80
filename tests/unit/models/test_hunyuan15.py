"""HunyuanVideo 1.5's own rules: the chat template's crop counted with the tokenizer in use,
the glyph text through ByT5, the trainer's transformer input equal to the pipeline's, and
the adapter in ComfyUI's names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from dagster_project.models.adapters import COMFYUI_FILE
from dagster_project.models.hunyuan15 import (
    chat_template,
    comfyui_lora,
    crop_start,
    template_ids,
)
from dagster_project.models.text_encoder import TextEncoder, load_tokenizer
from tests.unit.models.test_families import batch, sample, tiny_spec, trained_adapter

# ComfyUI's HunyuanVideo 1.5 Linears (comfy/ldm/hunyuan_video/model.py: Flux's DoubleStreamBlock,
# HunyuanVideo's TokenRefinerBlock) and the diffusers Linears each one holds, in order along its
# output (diffusers' scripts/convert_hunyuan_video1_5_to_diffusers.py pairs them with the
# original checkpoint's, which ComfyUI renames and fuses)
DOUBLE, REFINER = "transformer_blocks.{i}.", "context_embedder.token_refiner.refiner_blocks.{i}."
COMFYUI_LINEARS = {
    "double_blocks.{i}.img_attn.qkv": [
        DOUBLE + "attn.to_q", DOUBLE + "attn.to_k", DOUBLE + "attn.to_v"
    ],
    "double_blocks.{i}.img_attn.proj": [DOUBLE + "attn.to_out.0"],
    "double_blocks.{i}.txt_attn.qkv": [
        DOUBLE + "attn.add_q_proj", DOUBLE + "attn.add_k_proj", DOUBLE + "attn.add_v_proj"
    ],
    "double_blocks.{i}.txt_attn.proj": [DOUBLE + "attn.to_add_out"],
    "double_blocks.{i}.img_mlp.0": [DOUBLE + "ff.net.0.proj"],
    "double_blocks.{i}.img_mlp.2": [DOUBLE + "ff.net.2"],
    "double_blocks.{i}.txt_mlp.0": [DOUBLE + "ff_context.net.0.proj"],
    "double_blocks.{i}.txt_mlp.2": [DOUBLE + "ff_context.net.2"],
    "txt_in.individual_token_refiner.blocks.{i}.self_attn.qkv": [
        REFINER + "attn.to_q", REFINER + "attn.to_k", REFINER + "attn.to_v"
    ],
    "txt_in.individual_token_refiner.blocks.{i}.self_attn.proj": [REFINER + "attn.to_out.0"],
    "txt_in.individual_token_refiner.blocks.{i}.mlp.0": [REFINER + "ff.net.0.proj"],
    "txt_in.individual_token_refiner.blocks.{i}.mlp.2": [REFINER + "ff.net.2"],
}  # fmt: skip


def test_the_crop_ends_where_the_caption_begins() -> None:
    tokenizer = chat_template(load_tokenizer(None))
    caption = "a red kite over grey water"
    ids = template_ids(tokenizer, caption)
    crop = crop_start(tokenizer)
    words = tokenizer(caption, add_special_tokens=False)["input_ids"]
    assert crop > 0 and ids[crop : crop + len(words)] == words


def test_caption_tokens_are_what_the_encoder_keeps_and_quotes_reach_byt5(tmp_path: Path) -> None:
    spec = tiny_spec("hunyuan15", tmp_path / "base")
    text = TextEncoder(None)
    captions = ["a red kite", 'a sign that reads "OPEN" in neon']
    [plain, quoted] = spec.prompt_encoder(text, 48).encode(captions)
    counts = spec.caption_tokens(text.tokenizer, captions)
    assert [int(plain["prompt_embeds_mask"].sum()), int(quoted["prompt_embeds_mask"].sum())] == (
        counts
    )
    # no quoted text: ByT5's part is zeros, masked out; quoted text is encoded
    assert plain["prompt_embeds_mask_2"].sum() == 0 and not plain["prompt_embeds_2"].any()
    assert quoted["prompt_embeds_mask_2"].sum() > 0


def test_the_trainers_input_is_the_pipelines(clip: Path, tmp_path: Path) -> None:
    """The pipeline's first transformer call (its 729 masked image tokens, its condition and
    mask channels) predicts what the trainer's call predicts for the same noisy latents and
    level: the loss computed both ways is the same."""
    spec = tiny_spec("hunyuan15", tmp_path / "base")
    _, conditioning, bucket = batch(spec, clip)
    transformer = spec.load_transformer().eval()
    seen: dict[str, Any] = {}

    def record(_: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if not seen:
            seen.update(kwargs, output=output[0])

    hook = transformer.register_forward_hook(record, with_kwargs=True)
    spec.generate(transformer, conditioning, bucket, seed=0, steps=2, guidance_scale=1.0)
    hook.remove()
    assert seen["image_embeds"].shape[1] == 729 and not seen["image_embeds"].any()
    channels = spec.vae.config.latent_channels
    noisy = seen["hidden_states"][:, :channels]
    assert not seen["hidden_states"][:, channels:].any()  # text-to-video: no condition
    level = seen["timestep"].float() / spec.scheduler.config.num_train_timesteps
    # latents 0 and noise = noisy / level: the trainer's noisy latents are the pipeline's
    with torch.no_grad():
        loss = spec.loss(transformer, torch.zeros_like(noisy), conditioning, level, noisy / level)
    expected = (seen["output"] - noisy / level).pow(2).mean()
    torch.testing.assert_close(loss[0], expected, rtol=1e-5, atol=1e-6)


def test_an_i2v_checkpoint_needs_its_siglip_as_wide_as_the_transformer(tmp_path: Path) -> None:
    """`model.pretrained` for i2v: an I2V transformer (its config's `task_type`), the diffusers
    folder's `image_encoder/` and `feature_extractor/`, named when missing; an encoder of
    another width is refused."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from dagster_project.core.params import ModelParams
    from dagster_project.core.paths import BaseModelFiles
    from dagster_project.models.families import FAMILIES

    checkpoint = tiny_spec("hunyuan15", tmp_path / "checkpoint", "i2v").base
    write = FAMILIES["hunyuan15"].write_base_model
    text_to_video = tiny_spec("hunyuan15", tmp_path / "t2v").base
    with pytest.raises(
        ValueError, match="is a t2v checkpoint .* train.task i2v needs a checkpoint of that"
    ):
        write(ModelParams(), 384, BaseModelFiles(tmp_path / "c"), text_to_video.root, "i2v")
    with pytest.raises(ValueError, match="has no feature_extractor/: HunyuanVideo 1.5 I2V"):
        write(ModelParams(), 384, BaseModelFiles(tmp_path / "a"), checkpoint.root, "i2v")
    checkpoint.image_processor.rename(checkpoint.root / "feature_extractor")
    narrow = SiglipVisionConfig(
        hidden_size=24, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8,
    )  # fmt: skip
    SiglipVisionModel(narrow).save_pretrained(checkpoint.image_encoder)
    with pytest.raises(ValueError, match="gives 24-d embeddings but the transformer expects"):
        write(ModelParams(), 384, BaseModelFiles(tmp_path / "b"), checkpoint.root, "i2v")


def test_a_lora_in_comfyui_names_patches_comfyuis_model_into_the_trained_one(
    clip: Path, tmp_path: Path
) -> None:
    """The adapter in ComfyUI's names covers every adapted Linear of every block, and applied
    as ComfyUI applies a LoRA (each key `diffusion_model.<module>` to that module's weight,
    `weight += lora_up @ lora_down`, no alpha: scale 1) to the base's weights laid out as
    ComfyUI's model holds them (q, k and v fused), gives the trained model's samples."""
    spec = tiny_spec("hunyuan15", tmp_path / "base")
    transformer, conditioning, bucket = trained_adapter(spec, clip, tmp_path / "adapter")
    comfy = load_file(tmp_path / "adapter" / COMFYUI_FILE)

    base = spec.load_transformer()
    blocks = {"double_blocks": base.config.num_layers, "txt_in": base.config.num_refiner_layers}
    modules = {
        name.format(i=i): [d.format(i=i) for d in inner]
        for name, inner in COMFYUI_LINEARS.items()
        for i in range(blocks[name.split(".")[0]])
    }
    assert set(comfy) == {
        f"diffusion_model.{m}.lora_{side}.weight" for m in modules for side in ("up", "down")
    }
    weights = base.state_dict()
    for module, inner in modules.items():
        fused = torch.cat([weights[f"{d}.weight"] for d in inner])  # ComfyUI's weight
        up = comfy[f"diffusion_model.{module}.lora_up.weight"]
        fused += up @ comfy[f"diffusion_model.{module}.lora_down.weight"]
        for d, part in zip(inner, fused.chunk(len(inner)), strict=True):
            weights[f"{d}.weight"] = part
    base.load_state_dict(weights)
    patched = sample(spec, base, conditioning, bucket)
    assert torch.allclose(patched, sample(spec, transformer, conditioning, bucket), atol=1e-5)
    assert not torch.allclose(patched, sample(spec, spec.load_transformer(), conditioning, bucket))


def test_comfyui_fuses_the_thirds_trained_and_refuses_modules_it_has_no_name_for() -> None:
    """An adapter on q and v only: ComfyUI's qkv update holds q's in its first third, zeros in
    k's, v's in the last; a Linear ComfyUI names otherwise (`proj_out`) is refused by name."""
    gen = torch.Generator().manual_seed(0)
    a_q, a_v = torch.randn(2, 8, generator=gen), torch.randn(3, 8, generator=gen)
    b_q, b_v = torch.randn(8, 2, generator=gen), torch.randn(8, 3, generator=gen)
    weights = {
        "transformer_blocks.1.attn.to_q.lora_A.weight": a_q,
        "transformer_blocks.1.attn.to_q.lora_B.weight": b_q,
        "transformer_blocks.1.attn.to_v.lora_A.weight": a_v,
        "transformer_blocks.1.attn.to_v.lora_B.weight": b_v,
    }
    comfy = comfyui_lora(weights, 0.5)
    prefix = "diffusion_model.double_blocks.1.img_attn.qkv"
    assert set(comfy) == {f"{prefix}.lora_up.weight", f"{prefix}.lora_down.weight"}
    update = comfy[f"{prefix}.lora_up.weight"] @ comfy[f"{prefix}.lora_down.weight"]
    q, k, v = update.chunk(3)
    torch.testing.assert_close(q, 0.5 * b_q @ a_q)
    assert not k.any()
    torch.testing.assert_close(v, 0.5 * b_v @ a_v)
    refused = {"proj_out.lora_A.weight": a_q, "proj_out.lora_B.weight": b_q}
    with pytest.raises(ValueError, match="proj_out: no ComfyUI name"):
        comfyui_lora(refused, 1.0)

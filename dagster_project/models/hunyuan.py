"""HunyuanVideo: the family spec (see models/spec.py), the embedded tiny default, real checkpoints.

A base model is always a diffusers folder with `transformer/`, `vae/` and `scheduler/`. The
embedded default is written to such a folder from config (random init, fixed seed), so every
later stage loads it with `from_pretrained` exactly as it loads a real HunyuanVideo checkpoint.

Prompts go through `HunyuanVideoPipeline.encode_prompt`: the Llama prompt template (its crop
counted with the tokenizer in use), the attention mask of the cropped tokens, and CLIP's pooled
vector. HunyuanVideo is guidance-distilled: the transformer takes the (embedded) guidance scale
as an input, fixed at `TRAIN_GUIDANCE` for training.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerBase

from dagster_project.core.params import ModelParams
from dagster_project.core.shapes import FAMILY_SHAPES
from dagster_project.models import flow_matching
from dagster_project.models.diffusers_spec import DiffusersSpec, text_pipeline
from dagster_project.models.text_encoder import TextEncoder

# the shift of HunyuanVideo's own scheduler config; a real checkpoint's scheduler/ wins
DEFAULT_SHIFT = 7.0
# Embedded guidance while training. The flow-matching target is the plain conditional velocity,
# which is what a guidance-distilled model gives at guidance 1.0 (no CFG folded in): finetrainers
# and musubi-tuner train HunyuanVideo at 1.0 too. Sampling passes its own scale (`generate`).
TRAIN_GUIDANCE = 1.0
# attention and feed-forward Linears of the dual-stream, single-stream and token-refiner blocks;
# the single-stream `proj_out` (fused attention + MLP output) is left out: as a suffix it would
# also catch the model's final `proj_out`
LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp",
)  # fmt: skip
# the embedded default's CLIP (text_encoder_2): a small random-init text model, so the pooled
# vector the transformer is conditioned on exists without a CLIP checkpoint
TINY_CLIP_WIDTH = 32
TINY_CLIP_SEED = 0


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """RoPE dims (time, height, width) summing to `head_dim`, each even, in the real model's
    proportions (16, 56, 56 for 128)."""
    spatial = 2 * (head_dim * 7 // 32)
    return head_dim - 2 * spatial, spatial, spatial


def build_tiny(
    model: ModelParams, text_dim: int
) -> tuple[HunyuanVideoTransformer3DModel, AutoencoderKLHunyuanVideo]:
    """The embedded default: a small HunyuanVideo transformer and VAE, random init from
    `model.seed`, sized by `model.tiny` (the families' shared tiny sizes)."""
    tiny = model.tiny
    inner_dim = tiny.num_attention_heads * tiny.attention_head_dim
    torch.manual_seed(model.seed)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=tiny.num_attention_heads,
        attention_head_dim=tiny.attention_head_dim,
        num_layers=tiny.num_layers,
        num_single_layers=tiny.num_layers,
        num_refiner_layers=1,
        mlp_ratio=tiny.ffn_dim / inner_dim,
        guidance_embeds=True,
        text_embed_dim=text_dim,
        pooled_projection_dim=TINY_CLIP_WIDTH,
        rope_axes_dim=rope_axes(tiny.attention_head_dim),
    )
    # seeded again: the VAE (and so every cached latent) must not depend on the transformer's size
    torch.manual_seed(model.seed)
    # 4 blocks: 8x spatial and 4x temporal compression, as the real VAE; 16 latent channels
    base = tiny.vae_base_dim
    vae = AutoencoderKLHunyuanVideo(
        latent_channels=16,
        block_out_channels=(base, 2 * base, 2 * base, 2 * base),
        layers_per_block=1,
        norm_num_groups=base,
    )
    return transformer, vae


def prompt_template(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """The pipeline's prompt template, with `crop_start` counted by `tokenizer`.

    diffusers hard-codes 95, the template's length in the real Llama 3 tokenizer; any other
    tokenizer splits it differently. The crop is every token before the caption: the special
    tokens the tokenizer puts in front (Llama's BOS, BERT's [CLS]) and the template's prefix.
    """
    template = DEFAULT_PROMPT_TEMPLATE["template"]
    prefix = template[: template.index("{}")]
    plain = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    ids = tokenizer(prefix)["input_ids"]
    leading = next(i for i in range(len(ids)) if ids[i : i + len(plain)] == plain)
    return {"template": template, "crop_start": leading + len(plain)}


def tiny_clip(tokenizer: PreTrainedTokenizerBase) -> CLIPTextModel:
    """A small deterministic CLIP text model over `tokenizer`'s vocabulary; its pooled vector
    is read at the tokenizer's end token ([SEP] for MiniLM), as CLIP reads it at its EOS."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_CLIP_WIDTH,
        intermediate_size=2 * TINY_CLIP_WIDTH,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,  # the pipeline pads CLIP prompts to 77 tokens
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id or tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id or tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded without moving the caller's RNG
        torch.manual_seed(TINY_CLIP_SEED)
        clip = CLIPTextModel(config)
    return clip.eval().requires_grad_(False)


class HunyuanPromptEncoder:
    """Captions -> `prompt_embeds` [text_len, D], `prompt_attention_mask` [text_len] and
    `pooled_prompt_embeds` [D_clip], through `HunyuanVideoPipeline.encode_prompt` itself (its
    template, max-length padding, crop, the hidden states 2 layers before the last, CLIP's
    pooled output).

    `text_len` is the pipeline's `max_sequence_length`: caption tokens after the template's crop.
    Without a CLIP model (`model.text_encoder_2`) the tiny CLIP stands in, over `text`'s tokenizer.
    """

    def __init__(self, text: TextEncoder, text_len: int) -> None:
        if text.tokenizer.padding_side != "right":
            # the crop and the transformer (mask = a count of leading tokens) need right padding
            raise ValueError(
                f"model.text_encoder: HunyuanVideo needs a right-padding tokenizer, "
                f"not {text.tokenizer.padding_side!r}"
            )
        self.text = text
        self.text_len = text_len
        self.template = prompt_template(text.tokenizer)
        if text.model_2 is None:
            self.clip, self.clip_tokenizer = tiny_clip(text.tokenizer), text.tokenizer
            clip_identity = (
                f"+tiny-clip(width={TINY_CLIP_WIDTH},seed={TINY_CLIP_SEED},"
                f"transformers=={version('transformers')})"
            )
        elif not isinstance(text.model_2, CLIPTextModel):
            raise ValueError(
                f"model.text_encoder_2: HunyuanVideo takes a CLIP text model, not "
                f"{text.model_2.config.model_type!r}"
            )
        else:  # the CLIP is already in text.identity
            self.clip, self.clip_tokenizer = text.model_2, text.tokenizer_2
            clip_identity = ""
        self.identity = f"hunyuan:{text.identity}{clip_identity}:text_len={text_len}"

    @torch.no_grad()
    def encode(self, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        pipe = text_pipeline(
            HunyuanVideoPipeline,
            tokenizer=self.text.tokenizer,
            text_encoder=self.text.model,
            tokenizer_2=self.clip_tokenizer,
            text_encoder_2=self.clip,
        )
        embeds, pooled, mask = pipe.encode_prompt(
            captions,
            prompt_template=self.template,
            max_sequence_length=self.text_len,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
        return [
            {
                "prompt_embeds": e.contiguous(),
                "prompt_attention_mask": m.contiguous(),
                "pooled_prompt_embeds": p.float().contiguous(),
            }
            for e, m, p in zip(embeds, mask, pooled, strict=True)
        ]


class HunyuanSpec(DiffusersSpec):
    """The HunyuanVideo family over one base model folder (the `ModelSpec` protocol)."""

    name = "hunyuan"
    shape = FAMILY_SHAPES["hunyuan"]
    lora_targets = LORA_TARGETS
    transformer_class = HunyuanVideoTransformer3DModel
    vae_class = AutoencoderKLHunyuanVideo
    pipeline_class = HunyuanVideoPipeline
    default_scheduler = {"shift": DEFAULT_SHIFT}
    text_dim_key = "text_embed_dim"
    # Llama (prompt_embeds) and CLIP (pooled_prompt_embeds)
    text_components = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")
    prompt_encoder_class = HunyuanPromptEncoder
    build_tiny = staticmethod(build_tiny)

    @staticmethod
    def caption_tokens(tokenizer: PreTrainedTokenizerBase, captions: list[str]) -> list[int]:
        """Caption tokens after the template's crop, as `encode_prompt` counts them against
        `max_sequence_length`."""
        template = prompt_template(tokenizer)
        texts = [template["template"].format(c) for c in captions]
        return [len(ids) - template["crop_start"] for ids in tokenizer(texts)["input_ids"]]

    # training
    def loss(
        self,
        transformer: torch.nn.Module,
        latents: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
        levels: torch.Tensor,
        noise: torch.Tensor,
        weighting_scheme: str = "none",
    ) -> torch.Tensor:
        """Per-sample flow-matching loss at noise levels (sigmas) `levels`, at the embedded
        guidance `TRAIN_GUIDANCE` (scaled by 1000, as the pipeline passes it)."""
        noisy, target = flow_matching.noisy_latents(latents, noise, levels)
        prediction = transformer(
            hidden_states=noisy,
            timestep=levels * self.scheduler.config.num_train_timesteps,
            encoder_hidden_states=conditioning["prompt_embeds"],
            encoder_attention_mask=conditioning["prompt_attention_mask"],
            pooled_projections=conditioning["pooled_prompt_embeds"],
            guidance=noisy.new_full((noisy.shape[0],), TRAIN_GUIDANCE * 1000.0),
            return_dict=False,
        )[0]
        return flow_matching.weighted_mse(prediction, target, levels, weighting_scheme)

    # sampling
    def _pipeline_inputs(
        self, conditioning: dict[str, torch.Tensor], guided: bool
    ) -> dict[str, torch.Tensor | None]:
        """The cached embeddings, mask and pooled vector. `guidance_scale` is the pipeline's
        own here: the embedded (distilled) guidance; true CFG (`true_cfg_scale`, which needs
        negative prompts) stays off."""
        names = ("prompt_embeds", "prompt_attention_mask", "pooled_prompt_embeds")
        return {name: conditioning[name] for name in names}

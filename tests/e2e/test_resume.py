"""Training you can interrupt and scale out: exact resume after kill -9, fresh starts that say
why, the NaN stop, accumulation and process-count equivalence, a 2-node c10d rendezvous."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from dagster_project.core.launch import launch_command
from dagster_project.core.params import load_params
from dagster_project.core.paths import CheckpointFiles
from dagster_project.dataset.cache import CacheError, TensorCache
from dagster_project.models.families import FAMILIES, family_spec
from dagster_project.models.text_encoder import text_embedding_dim
from dagster_project.shell.assets.train import TRAIN_WORKER
from dagster_project.training.data import clip_table
from dagster_project.training.trainer import NonFiniteLoss, train
from tests.conftest import write_params
from tests.materialize import materialize

pytestmark = pytest.mark.slow

ENCODE = "base_model,videos,manifest,rejects,text_embeddings,video_latents"


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory, sample_raw: Path) -> Path:
    """A project with the sample data encoded once; each test writes its own params file."""
    folder = tmp_path_factory.mktemp("resume")
    shutil.copytree(sample_raw, folder / "data" / "raw")
    assert materialize(write_params(folder), selection=ENCODE).success
    return folder


def params_file(folder: Path, name: str, **train: object) -> Path:
    """params.yaml of the repo with `train` overrides, as `name` in the project folder."""
    data = yaml.safe_load((folder / "params.yaml").read_text())
    data["train"].update({"output_dir": f"data/{name}", "checkpoint_every": 3, **train})
    data["guard"] = {"max_exposures": 10000.0, "warn_exposures": 10000.0}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def worker(params: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *extra, "-m", "dagster_project.cli.worker", str(params)]
    return subprocess.Popen(
        command, cwd=params.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def weights(params: Path) -> dict[str, torch.Tensor]:
    model = load_params(params).train_outputs.model
    return {k: v for f in sorted(model.glob("*.safetensors")) for k, v in load_file(f).items()}


def metrics(params: Path) -> dict:
    return json.loads(load_params(params).train_outputs.metrics.read_text())


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_kill_9_then_rerun_gives_the_weights_of_an_uninterrupted_run(
    encoded: Path, mode: str
) -> None:
    settings = {"mode": mode, "steps": 24, "lr": 1e-3, "lora": {"rank": 4, "alpha": 4}}
    reference = params_file(encoded, f"ref_{mode}", **settings)
    finish(worker(reference))

    interrupted = params_file(encoded, f"killed_{mode}", **settings)
    checkpoints = load_params(interrupted).train_outputs.checkpoints
    process = worker(interrupted)
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("step-*")):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.1))  # a random step after the first checkpoint
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not load_params(interrupted).train_outputs.model.exists(), "killed too late"
    assert all(not p.name.endswith(".partial") for p in checkpoints.glob("step-*"))

    output = finish(worker(interrupted))
    resumed = metrics(interrupted)["resumed_from_step"]
    assert resumed > 0 and f"resuming from the checkpoint at step {resumed}" in output
    expected, got = weights(reference), weights(interrupted)
    assert expected.keys() == got.keys() and expected
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key  # bitwise, on CPU
    loss_csv = load_params(interrupted).train_outputs.loss_csv
    assert len(loss_csv.read_text().splitlines()) == 1 + 24  # the whole history, resumed too
    # dvclive's curve too: the steps the killed run logged past its checkpoint are not repeated
    curve = load_params(interrupted).train_outputs.dvclive / "plots/metrics/train/loss.tsv"
    steps = [int(row.split("\t")[0]) for row in curve.read_text().splitlines()[1:]]
    assert steps == list(range(1, 25))


def run_in_process(params: Path) -> tuple[dict, list[str]]:
    p = load_params(params)
    lines: list[str] = []
    spec = family_spec(p.model.family, p.base_model)
    table = clip_table(p.cache_files, "train")
    result = train(p.train, spec, table, p.train_outputs, lines.append)
    return result, lines


def two_experts(folder: Path, name: str, **train: object) -> Path:
    """params for the tiny Wan 2.2 A14B (its base written beside the demo's; its VAE, and so the
    cached latents, are the tiny Wan's)."""
    path = params_file(folder, name, **train)
    data = yaml.safe_load(path.read_text())
    data["model"].update(family="wan22", base_dir="data/models/base_wan22")
    path.write_text(yaml.safe_dump(data))
    p = load_params(path)
    if not p.base_model.identity_file.is_file():
        FAMILIES["wan22"].write_base_model(p.model, text_embedding_dim(None), p.base_model, None)
    return path


def expert_steps(params: Path, step: int) -> dict[str, set[int]]:
    """The optimizer steps each expert's adapter weights took, read from the checkpoint at
    `step` (AdamW counts per weight)."""
    p = load_params(params)
    state = torch.load(CheckpointFiles(p.train_outputs.checkpoint(step)).root / "optimizer.bin",
                       weights_only=True)["state"]  # fmt: skip
    spec = family_spec("wan22", p.base_model)
    pair = spec.load_transformer()
    spec.prepare_training(pair, "lora", p.train.lora, "both")
    owners = [n.split(".")[0] for n, w in pair.named_parameters() if w.requires_grad]
    taken = {i: int(s["step"]) for i, s in state.items()}  # a frozen expert has no state
    return {owner: {taken[i] for i, o in enumerate(owners) if o == owner and i in taken}
            for owner in ("high", "low")}  # fmt: skip


def exported(params: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a run's exported model, by file and key."""
    model = load_params(params).train_outputs.model
    files = sorted(model.rglob("*.safetensors"))
    return {f"{f.relative_to(model)}:{k}": v for f in files for k, v in load_file(f).items()}


def test_two_experts_train_one_per_step_resume_exactly_and_export_each(encoded: Path) -> None:
    """Wan 2.2's pair through the trainer: each optimizer step trains the expert owning the
    level it drew (the other's optimizer state does not move), on one process or two, a
    resumed run ends with the weights of an uninterrupted one, and each trained expert's
    adapter is exported."""
    lora = {"mode": "lora", "lora": {"rank": 4, "alpha": 4}, "lr_scheduler": "constant"}
    whole = two_experts(encoded, "experts_whole", steps=10, checkpoint_every=5, **lora)
    run_in_process(whole)
    steps = expert_steps(whole, 10)
    [high], [low] = steps["high"], steps["low"]  # one count per expert: its steps
    assert high > 0 and low > 0 and high + low == 10, steps

    first = two_experts(encoded, "experts", steps=5, checkpoint_every=5, **lora)
    run_in_process(first)
    resumed = two_experts(encoded, "experts", steps=10, checkpoint_every=5, **lora)
    result, _ = run_in_process(resumed)
    assert result["resumed_from_step"] == 5
    expected, got = exported(whole), exported(resumed)
    assert {k.split(":")[0] for k in expected} == {
        "high_noise/pytorch_lora_weights.safetensors",
        "low_noise/pytorch_lora_weights.safetensors",
        "comfyui_lora_high_noise.safetensors",
        "comfyui_lora_low_noise.safetensors",
    }
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key

    # two processes of batch 1 (the same global batch): DDP leaves the idle expert alone
    ranks = two_experts(encoded, "experts_p2", steps=10, checkpoint_every=5, batch_size=1,
                        nproc_per_node=2, **lora)  # fmt: skip
    finish(worker(ranks, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"))
    assert expert_steps(ranks, 10) == steps
    close(expected, exported(ranks), dict.fromkeys(expected, 0.0))

    high_only = two_experts(encoded, "experts_high", steps=3, experts="high", **lora)
    run_in_process(high_only)
    model = load_params(high_only).train_outputs.model
    assert {p.name for p in model.iterdir()} == {
        "high_noise",
        "comfyui_lora_high_noise.safetensors",
    }
    assert expert_steps(high_only, 3) == {"high": {3}, "low": set()}


def test_a_changed_setting_starts_fresh_and_says_why(encoded: Path) -> None:
    first = params_file(encoded, "fresh", steps=6, lr_scheduler="constant")
    result, lines = run_in_process(first)
    assert result["resumed_from_step"] == 0 and "starting fresh: no checkpoint yet" in lines

    longer = params_file(encoded, "fresh", steps=9, lr_scheduler="constant")
    result, lines = run_in_process(longer)  # a constant schedule: more steps continue the run
    assert result["resumed_from_step"] == 6
    assert "resuming from the checkpoint at step 6 (step-000006)" in lines

    other_lr = params_file(encoded, "fresh", steps=9, lr_scheduler="constant", lr=2e-3)
    result, lines = run_in_process(other_lr)
    assert result["resumed_from_step"] == 0
    assert "starting fresh: optimizer changed since the checkpoint at step 9" in lines

    cosine = params_file(encoded, "fresh", steps=12, lr_scheduler="cosine", lr=2e-3)
    run_in_process(cosine)
    cosine_longer = params_file(encoded, "fresh", steps=15, lr_scheduler="cosine", lr=2e-3)
    result, lines = run_in_process(cosine_longer)  # the schedule depends on the total: fresh
    assert result["resumed_from_step"] == 0
    assert "starting fresh: schedule changed since the checkpoint at step 12" in lines
    # the earlier runs' checkpoints were replaced, the latest keep_checkpoints (3) kept
    folders = load_params(cosine_longer).train_outputs.checkpoint_folders()
    assert [f.name for f in folders] == ["step-000009", "step-000012", "step-000015"]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(encoded: Path) -> None:
    before = params_file(encoded, "nan", steps=3, checkpoint_every=1)
    run_in_process(before)
    model = load_params(before).train_outputs.model
    kept = {f.name: f.stat().st_mtime_ns for f in model.iterdir()}

    absurd = params_file(encoded, "nan", steps=40, checkpoint_every=1, lr=1e12, resume="never")
    with pytest.raises(NonFiniteLoss, match=r"step \d+: the loss is (nan|inf)") as stopped:
        run_in_process(absurd)
    step = int(str(stopped.value).split()[1].rstrip(":"))
    out = load_params(absurd).train_outputs
    last = out.checkpoint_folders()[-1]
    assert out.checkpoint_step(last) == step - 1  # the step before the bad one, complete
    state = json.loads(CheckpointFiles(last).state.read_text())
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss, _ in state["losses"])
    assert {f.name: f.stat().st_mtime_ns for f in model.iterdir()} == kept  # not replaced


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], base: dict) -> None:
    """The two runs moved the weights the same way: their difference is tiny next to how far
    training moved them (float sums in another order differ in the last bits, and Adam
    magnifies that for weights whose gradient is near zero)."""
    assert a.keys() == b.keys() and a
    difference = sum((a[k] - b[k]).pow(2).sum() for k in a).sqrt()
    moved = sum((a[k] - base[k]).pow(2).sum() for k in a).sqrt()
    assert moved > 0 and difference / moved < 1e-4, float(difference / moved)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accumulation_processes_and_nodes_give_the_same_weights(encoded: Path) -> None:
    """One optimizer step of 4 clips: batch 4; batch 2 x 2 accumulation; 2 processes of batch 2
    under torchrun (gloo); 2 nodes of 1 process each through a c10d rendezvous on localhost."""
    common = {"steps": 6, "lr_scheduler": "constant", "lr": 1e-3}
    single = params_file(encoded, "b4", batch_size=4, **common)
    finish(worker(single))
    reference = weights(single)
    p = load_params(single)
    base = load_file(p.base_model.transformer / "diffusion_pytorch_model.safetensors")

    accumulated = params_file(encoded, "b2x2", batch_size=2, grad_accum=2, **common)
    finish(worker(accumulated))
    close(reference, weights(accumulated), base)

    ranks = params_file(encoded, "p2", batch_size=2, nproc_per_node=2, **common)
    finish(worker(ranks, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"))
    assert metrics(ranks)["processes"] == 2
    close(reference, weights(ranks), base)

    endpoint = f"127.0.0.1:{free_port()}"
    launch = {"nnodes": 2, "rdzv_endpoint": endpoint, "rdzv_id": "test"}
    nodes = params_file(encoded, "n2", batch_size=2, launch=launch, **common)
    train = load_params(nodes).train
    command = launch_command(TRAIN_WORKER, str(nodes), train.nproc_per_node, train.launch)
    assert f"--rdzv-endpoint={endpoint}" in command and "--nnodes=2" in command
    both = [
        subprocess.Popen(
            command,
            cwd=encoded,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    for process in both:
        finish(process)
    assert metrics(nodes)["processes"] == 2
    close(reference, weights(nodes), base)


def test_resuming_with_another_split_of_the_same_global_batch(encoded: Path) -> None:
    """batch 2 x 2 accumulation, resumed as batch 1 x 4: the updates still fall on whole
    optimizer steps (accelerate's restored micro-step count is reset)."""
    common = {"steps": 6, "lr_scheduler": "constant", "checkpoint_every": 3}
    whole = params_file(encoded, "split_whole", batch_size=2, grad_accum=2, **common)
    run_in_process(whole)
    first = params_file(encoded, "split", batch_size=2, grad_accum=2, **{**common, "steps": 3})
    run_in_process(first)
    resumed = params_file(encoded, "split", batch_size=1, grad_accum=4, **common)
    result, lines = run_in_process(resumed)
    assert result["resumed_from_step"] == 3
    base = load_file(
        load_params(whole).base_model.transformer / "diffusion_pytorch_model.safetensors"
    )
    close(weights(whole), weights(resumed), base)


@pytest.mark.parametrize("damage", ["optimizer.bin missing", "weights truncated", "no marker"])
def test_resume_passes_over_a_damaged_checkpoint_and_says_why(encoded: Path, damage: str) -> None:
    reference = params_file(encoded, f"intact_{damage[:3]}", steps=9)
    run_in_process(reference)
    damaged = params_file(encoded, f"damaged_{damage[:3]}", steps=6)
    run_in_process(damaged)
    out = load_params(damaged).train_outputs
    latest = out.checkpoint(6)
    if damage == "optimizer.bin missing":
        (latest / "optimizer.bin").unlink()
    elif damage == "weights truncated":
        [weights_file] = CheckpointFiles(latest).model.glob("*.safetensors")
        weights_file.write_bytes(weights_file.read_bytes()[:-100])
    else:
        CheckpointFiles(latest).complete.unlink()

    longer = params_file(encoded, f"damaged_{damage[:3]}", steps=9)
    result, lines = run_in_process(longer)
    assert result["resumed_from_step"] == 3, lines
    [said] = [line for line in lines if line.startswith("resuming")]
    assert "passed over damaged step-000006" in said
    why = {
        "optimizer.bin missing": "optimizer.bin is missing",
        "weights truncated": "bytes, not",
        "no marker": "no completion marker",
    }[damage]
    assert why in said
    expected, got = weights(reference), weights(longer)
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key


def test_model_and_last_model_change_together_or_not_at_all(
    encoded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = params_file(encoded, "pair", steps=3)
    run_in_process(first)
    out = load_params(first).train_outputs
    before = {f: f.read_bytes() for d in (out.model, out.last_model) for f in d.iterdir()}

    import dagster_project.training.trainer as trainer

    def broken_export(*args: object, **kwargs: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(trainer, "_export_model", broken_export)
    other = params_file(encoded, "pair", steps=3, lr=2e-3)  # another run, same folder
    with pytest.raises(OSError, match="disk full"):
        run_in_process(other)
    after = {f: f.read_bytes() for d in (out.model, out.last_model) for f in d.iterdir()}
    assert after == before  # neither replaced: both still the first run's
    assert not list(out.root.glob(".*.tmp"))  # no temporary folder left


def test_a_damaged_cache_entry_names_its_file_and_clip(encoded: Path) -> None:
    p = load_params(params_file(encoded, "cache_nan", steps=2))
    table = clip_table(p.cache_files, "train")
    victim = Path(table["latent_file"][0])
    original = victim.read_bytes()
    try:
        entry = load_file(victim)
        entry["mean"][0] = float("nan")  # non-finite data, written with a fresh checksum
        TensorCache(p.path(p.data.cache_dir), "latents").write(victim.stem, entry)
        with pytest.raises(CacheError) as caught:
            run_in_process(params_file(encoded, "cache_nan", steps=2))
        said = str(caught.value)
        assert str(victim) in said and table["path"][0] in said and "non-finite" in said
        assert "train.lr" not in said

        victim.write_bytes(original[:-64] + bytes(64))  # finite garbage: the checksum fails
        with pytest.raises(CacheError, match="checksum mismatch"):
            run_in_process(params_file(encoded, "cache_nan", steps=2))
    finally:
        victim.write_bytes(original)

"""The verdict and early stopping on a model that can memorize in CI time.

The data: clips of drifting blocks of random colors, each its own content, all of one kind
(training and validation clips are alike but never the same). The model: the embedded Wan,
wider than the demo's, on 32x32 clips. An over-exposed run (4 clips, 300 exposures each, the
guard overridden) fits its clips and not the held-out ones; a moderate run does not.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from dagster_project.core.params import load_params
from dagster_project.core.paths import CheckpointFiles
from dagster_project.evaluation.monitor import RunMonitor
from dagster_project.models.families import family_spec
from dagster_project.training.data import clip_table
from dagster_project.training.trainer import train
from dagster_project.video.write import write_mp4
from tests.conftest import write_params
from tests.materialize import materialize

COLORS = ["amber", "cobalt", "crimson", "jade", "violet", "ochre", "teal", "scarlet", "ivory"]
OVERRIDES = {
    "model": {"tiny": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 32,
                       "ffn_dim": 128, "freq_dim": 32, "vae_base_dim": 8}},
    "buckets": {"sizes": [[17, 32, 32]]},
    "guard": {"max_exposures": 1000.0, "warn_exposures": 1000.0},
}  # fmt: skip
TRAIN = {"lr": 0.002, "lr_scheduler": "constant", "checkpoint_every": 1000}


def write_blocks(raw: Path, train: int, val: int) -> None:
    """`train` + `val` clips of 4x4 random color blocks drifting right, with sidecar captions."""
    for split, count, offset in (("train", train, 0), ("validation", val, 100)):
        for index in range(offset, offset + count):
            rng = np.random.default_rng(index)
            grid = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            canvas = np.kron(grid, np.ones((24, 24, 1), dtype=np.uint8))  # 96 x 96
            shift = int(rng.integers(1, 3))
            frames = np.stack([np.roll(canvas, shift * t, axis=1)[:48, :48] for t in range(24)])
            video = raw / split / f"blocks{index}.mp4"
            write_mp4(frames, video, fps=16)
            words = rng.choice(COLORS, 3, replace=False)
            caption = f"blocks of {words[0]}, {words[1]} and {words[2]} drifting right, {index}"
            video.with_suffix(".txt").write_text(caption + "\n")


@pytest.fixture(scope="module")
def blocks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with 4 training and 4 validation clips, cached; returns its folder."""
    root = tmp_path_factory.mktemp("blocks")
    write_blocks(root / "data" / "raw", train=4, val=4)
    params = write_params(root, **OVERRIDES)
    cached = materialize(params, "base_model,videos,manifest,rejects,text_embeddings,video_latents")
    assert cached.success
    return root


def run_pipeline(root: Path, name: str, steps: int, every: int) -> tuple[dict, dict, Path]:
    """Train and evaluate with their own output folders: (evaluation metrics, the verdict
    check's result, params path)."""
    params = write_params(
        root,
        **OVERRIDES,
        train={**TRAIN, "steps": steps, "output_dir": f"data/train_{name}"},
        eval={"every": every, "max_prompts": 4, "output_dir": f"data/eval_{name}"},
    )
    renamed = params.with_name(f"params_{name}.yaml")
    params.rename(renamed)
    result = materialize(renamed, "training_plan,trained_model,evaluation")
    assert result.success
    [check] = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "overfitting_verdict"
    ]
    p = load_params(renamed)
    metrics = json.loads(p.eval_outputs.metrics.read_text())
    return metrics, {"passed": check.passed, "severity": check.severity.value,
                     "description": check.description}, renamed  # fmt: skip


@pytest.mark.slow
def test_an_over_exposed_run_overfits_stops_early_and_exports_an_earlier_checkpoint(
    blocks: Path,
) -> None:
    metrics, check, params = run_pipeline(blocks, "over", steps=600, every=50)
    assert metrics["verdict"] == "overfitting"
    assert not check["passed"] and check["severity"] == "ERROR"
    assert "gap: validation loss further above" in check["description"]  # names the sign
    p = load_params(params)
    report = p.eval_outputs.report.read_text()
    assert report.startswith("# Verdict: overfitting")
    # early stopping: stopped before train.steps, exported an earlier (clean) checkpoint
    assert metrics["stopped_early"] == 1
    assert metrics["chosen_step"] < metrics["last_step"] < 600
    out = p.train_outputs
    chosen = CheckpointFiles(out.checkpoint(metrics["chosen_step"])).model
    for name in ("diffusion_pytorch_model.safetensors", "config.json"):
        assert (out.model / name).read_bytes() == (chosen / name).read_bytes()
    assert (out.model / "diffusion_pytorch_model.safetensors").read_bytes() != (
        out.last_model / "diffusion_pytorch_model.safetensors"
    ).read_bytes()
    assert f"Model: step {metrics['chosen_step']}" in report
    # samples decoded at step 0, the chosen and the last step, each a real H.264 mp4
    videos = sorted(p.eval_outputs.videos.rglob("*.mp4"))
    assert len(videos) == 3 * 4 * p.eval.samples_per_prompt
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height", "-of", "csv=p=0", str(videos[0])],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "h264,32,32"


@pytest.mark.slow
def test_a_moderate_run_on_the_same_data_does_not_overfit(blocks: Path) -> None:
    metrics, check, _ = run_pipeline(blocks, "moderate", steps=20, every=10)  # 10 exposures
    assert metrics["verdict"] != "overfitting"
    assert check["severity"] != "ERROR" or check["passed"]
    assert metrics["stopped_early"] == 0 and metrics["chosen_step"] == 20


class RandomDrawingMonitor(RunMonitor):
    """An evaluator that also draws from the global RNG, as careless evaluation code would."""

    def evaluate(self, step: int, transformer: torch.nn.Module, device: torch.device) -> str:
        torch.randn(1000)
        np.random.rand(10)
        return super().evaluate(step, transformer, device)


def _train(
    root: Path, name: str, steps: int, monitor: bool, every: int = 5
) -> tuple[list[str], dict | None]:
    params = write_params(
        root,
        **OVERRIDES,
        train={**TRAIN, "steps": steps, "mode": "lora", "checkpoint_every": 5,
               "lora": {"rank": 4, "alpha": 4.0, "dropout": 0.2},
               "output_dir": f"data/train_{name}"},
        eval={"every": every, "max_prompts": 2, "samples_per_prompt": 2},
    )  # fmt: skip
    p = load_params(params)
    spec = family_spec(p.model.family, p.base_model)
    table = clip_table(p.cache_files, "train")
    evaluator = None
    if monitor:
        val = clip_table(p.cache_files, "val")
        evaluator = RandomDrawingMonitor(p.eval, spec, table, val, p.train_outputs)
    train(p.train, spec, table, p.train_outputs, log=lambda _: None, evaluator=evaluator)
    losses = p.train_outputs.loss_csv.read_text().splitlines()
    history = json.loads(p.train_outputs.evaluations.read_text()) if monitor else None
    return losses, history


@pytest.mark.slow
def test_evaluation_never_changes_the_training_trajectory(blocks: Path) -> None:
    """LoRA dropout draws from the global RNG every step: an evaluation that disturbed it
    would change every later loss."""
    without, _ = _train(blocks, "plain", 15, monitor=False)
    with_eval, history = _train(blocks, "evaluated", 15, monitor=True)
    assert with_eval == without
    assert [r["step"] for r in history["history"]] == [0, 5, 10, 15]


@pytest.mark.slow
def test_resume_with_early_stopping_state_is_exact(blocks: Path) -> None:
    """A run stopped at step 10 and resumed to 15 records what an uninterrupted one does."""
    whole_losses, whole = _train(blocks, "whole", 15, monitor=True)
    _train(blocks, "split", 10, monitor=True)
    split_losses, split = _train(blocks, "split", 15, monitor=True)
    assert split_losses == whole_losses
    assert split["history"] == whole["history"]
    assert split["decision"] == whole["decision"]


@pytest.mark.slow
def test_a_run_cut_back_to_a_checkpoint_never_evaluated_is_judged_there(blocks: Path) -> None:
    """train.steps lowered from 15 to 5: the run resumes at the step-5 checkpoint, which
    eval.every 10 never evaluated; its last step is evaluated all the same."""
    _train(blocks, "lowered", 15, monitor=True, every=10)
    _, lowered = _train(blocks, "lowered", 5, monitor=True, every=10)
    assert [r["step"] for r in lowered["history"]] == [0, 5]
    assert lowered["last_step"] == 5


def test_evaluating_the_same_model_twice_gives_identical_numbers(blocks: Path) -> None:
    p = load_params(write_params(blocks, **OVERRIDES, eval={"max_prompts": 2}))
    spec = family_spec(p.model.family, p.base_model)
    train_clips, val = clip_table(p.cache_files, "train"), clip_table(p.cache_files, "val")
    monitor = RunMonitor(p.eval, spec, train_clips, val, p.train_outputs)
    cpu = torch.device("cpu")
    monitor.evaluate(0, spec.load_transformer(), cpu)
    monitor.evaluate(1, spec.load_transformer(), cpu)
    first, again = ({k: v for k, v in r.items() if k != "step"} for r in monitor.history)
    assert first == again
    assert first["samples"] == 2 * p.eval.samples_per_prompt and first["diversity"] > 0

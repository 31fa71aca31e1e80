"""End to end on the sample data: every asset materialized in-process, as the UI does."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import torch
import yaml
from safetensors.torch import load_file

from dagster_project.core.params import Params, load_params
from dagster_project.core.paths import CheckpointFiles
from dagster_project.dataset.arrivals import RAW_FINGERPRINT
from dagster_project.dataset.sample_data import write_sample_dataset
from dagster_project.definitions import build_definitions
from dagster_project.shell.schedules import raw_fingerprint
from tests.conftest import write_params
from tests.materialize import materialize

pytestmark = pytest.mark.slow


def guard_message_figures(p: Params, steps: int) -> tuple[str, str]:
    """The figures the guard must state for `steps` (batch 2, 1 process), computed here from the
    manifest: how many training clips there are depends on the data, not on this test."""
    train = pl.read_parquet(p.path(p.data.manifest)).filter(pl.col("split") == "train").height
    samples = 2 * steps
    need = math.ceil(samples / p.guard.max_exposures)
    most = int(p.guard.max_exposures * train // 2)
    return (
        f"{steps} steps x 2 samples/step over {train} training videos shows each video "
        f"{samples / train:.1f} times on average"
    ), f"at least {need} training videos, or at most {most} steps"


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    [materialization] = result.asset_materializations_for_node(key)
    return {k: v.value for k, v in materialization.metadata.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dg.ExecuteInProcessResult]:
    folder = tmp_path_factory.mktemp("e2e")
    raw = folder / "data" / "raw"
    write_sample_dataset(raw)
    (raw / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    (raw / "broken.txt").write_text("a broken file")
    shutil.copy(raw / "train" / "life_square.mp4", raw / "no_caption.mp4")
    params = write_params(folder)
    return params, materialize(params)


def test_whole_pipeline_materializes(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    params_path, result = run
    assert result.success
    p = load_params(params_path)
    model = p.path(p.train.output_dir) / "model"
    assert (model / "config.json").is_file()
    assert (model / "diffusion_pytorch_model.safetensors").is_file()

    train = json.loads((p.path(p.train.output_dir) / "metrics.json").read_text())
    assert train["loss_last"] < train["loss_first"]
    evaluation = json.loads((p.path(p.eval.output_dir) / "metrics.json").read_text())
    for name in ("val_loss", "diversity", "nearest_train_similarity_mean", "pixel_diversity"):
        assert math.isfinite(evaluation[name]), name
    # the demo's 40 steps, 7 exposures per clip: a healthy run, its last step chosen
    assert evaluation["verdict"] == "healthy"
    assert (evaluation["chosen_step"], evaluation["last_step"]) == (40, 40)
    out = p.eval_outputs
    report = out.report.read_text()
    assert report.startswith("# Verdict: healthy")
    assert "## Validation loss per noise level" in report and "loss_per_sigma.png" in report
    curve = pl.read_csv(out.evaluations_csv)
    assert curve["step"].to_list() == [0, 10, 20, 30, 40]  # eval.every 10, and step 0
    assert {f"val_loss@{s:g}" for s in p.eval.sigmas} <= set(curve.columns)
    assert {"gap", "train_fixed_loss@0.5", "diversity", "memorized"} <= set(curve.columns)
    # K samples per validation prompt, decoded at step 0 and the chosen (= last) step
    videos = sorted(out.videos.rglob("*.mp4"))
    prompts = min(p.eval.max_prompts, 3)
    assert len(videos) == 2 * prompts * p.eval.samples_per_prompt
    for plot in (out.plot, out.sigma_plot, out.signs_plot, out.exposure_plot):
        assert plot.read_bytes()[:4] == b"\x89PNG", plot
    assert out.preview.read_bytes()[:6] == b"GIF89a"
    # the model records the raw folder its data was read from (the retrain schedule compares it)
    read = metadata(result, "videos")[RAW_FINGERPRINT]
    assert (
        metadata(result, "trained_model")[RAW_FINGERPRINT]
        == read
        == raw_fingerprint(str(p.root / "params.yaml"))
    )


def test_checks_pass_on_the_sample_data(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    evaluations = checks(run[1])
    assert evaluations["manifest_contract"].passed
    assert evaluations["exposure_guard"].passed
    assert evaluations["overfitting_verdict"].passed


def test_bad_files_become_rejects_not_failures(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    p = load_params(run[0])
    rejects = pl.read_parquet(p.path(p.data.rejects))
    reasons = dict(zip(rejects["path"], rejects["reason"], strict=True))
    assert reasons == {"broken.mp4": "corrupt", "no_caption.mp4": "missing_caption"}
    manifest = pl.read_parquet(p.path(p.data.manifest))
    assert manifest.height == 14
    assert set(manifest["split"]) == {"train", "val"}
    [shown] = [  # the manifest's materialization (one of the ingest node's two)
        {k: v.value for k, v in m.metadata.items()}
        for m in run[1].asset_materializations_for_node("probe")
        if m.asset_key == dg.AssetKey("manifest")
    ]
    assert shown["clips_with_audio"] == manifest["has_audio"].sum()
    assert "has_audio" in shown["preview"]


def test_every_declared_dvc_output_is_written(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    """The assets write exactly where dvc.yaml says they do."""
    params_path = run[0]
    values = yaml.safe_load(params_path.read_text())
    defs = build_definitions(str(params_path))
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        meta = graph.get(key).metadata
        if "dvc/outs" not in meta:  # the on-demand exposure sweep: no DVC stage
            continue
        declared = meta["dvc/outs"] + meta["dvc/keep"] + meta["dvc/metrics"] + meta["dvc/plots"]
        for template in declared:
            path = template
            for ref in [part.split("}")[0] for part in template.split("${")[1:]]:
                section, name = ref.split(".")
                path = path.replace("${" + ref + "}", values[section][name])
            assert (params_path.parent / path).exists(), f"{key.to_user_string()}: {path}"


def test_second_run_encodes_nothing(run: tuple[Path, dg.ExecuteInProcessResult]) -> None:
    again = materialize(run[0], selection="text_embeddings,video_latents")
    assert again.success
    assert metadata(again, "text_embeddings")["encoded"] == 0
    assert metadata(again, "video_latents")["encoded"] == 0
    assert metadata(again, "video_latents")["already_cached"] == 14


def test_exposure_guard_blocks_an_over_planned_run(
    run: tuple[Path, dg.ExecuteInProcessResult], tmp_path: Path
) -> None:
    params_path = run[0]
    p = load_params(params_path)
    model = p.path(p.train.output_dir) / "model" / "diffusion_pytorch_model.safetensors"
    before = model.stat().st_mtime_ns
    over = yaml.safe_load(params_path.read_text())
    over["train"]["steps"] = 400
    params_path.write_text(yaml.safe_dump(over))
    try:
        result = materialize(params_path, selection="training_plan,trained_model")
    finally:
        write_params(params_path.parent)
    assert not result.success
    guard = checks(result)["exposure_guard"]
    assert not guard.passed
    assert guard.severity == dg.AssetCheckSeverity.ERROR
    for figures in guard_message_figures(p, steps=400):
        assert figures in guard.description
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert "trained_model" not in started
    assert model.stat().st_mtime_ns == before


def test_training_under_torchrun_with_two_processes(
    run: tuple[Path, dg.ExecuteInProcessResult],
) -> None:
    """The asset launches `torchrun --nproc-per-node 2` through Pipes; rank 0 writes."""
    params_path = run[0]
    params = yaml.safe_load(params_path.read_text())
    params["train"].update(nproc_per_node=2, steps=10, checkpoint_every=5, output_dir="data/ddp")
    ddp_params = params_path.parent / "ddp_params.yaml"
    ddp_params.write_text(yaml.safe_dump(params))
    result = materialize(ddp_params, selection="trained_model")
    assert result.success
    p = load_params(ddp_params)
    out = p.path(p.train.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["steps"], metrics["processes"]) == (10, 2)
    assert sorted(c.name for c in (out / "checkpoints").iterdir()) == ["step-000005", "step-000010"]


def test_lora_mode_trains_and_evaluates_an_adapter(
    run: tuple[Path, dg.ExecuteInProcessResult],
) -> None:
    """train.mode: lora through the pipeline: only the adapter is saved, in the formats people
    load (diffusers and, for Wan, ComfyUI), and evaluation loads it onto the base."""
    params_path = run[0]
    params = yaml.safe_load(params_path.read_text())
    params["train"].update(mode="lora", steps=6, checkpoint_every=3, output_dir="data/lora")
    params["eval"].update(output_dir="data/lora_eval", samples_per_prompt=2, max_prompts=1)
    lora_params = params_path.parent / "lora_params.yaml"
    lora_params.write_text(yaml.safe_dump(params))
    result = materialize(lora_params, selection="trained_model,evaluation")
    assert result.success
    p = load_params(lora_params)
    out = p.train_outputs
    for model in (out.model, out.last_model):
        assert sorted(f.name for f in model.iterdir()) == [
            "comfyui_lora.safetensors",
            "pytorch_lora_weights.safetensors",
        ]
    for checkpoint in out.checkpoint_folders():
        saved = {f.name for f in CheckpointFiles(checkpoint).model.iterdir()}
        assert "diffusion_pytorch_model.safetensors" not in saved
    train_metadata = metadata(result, "trained_model")
    weights = load_file(p.base_model.transformer / "diffusion_pytorch_model.safetensors")
    base = sum(v.numel() for v in weights.values())
    assert 0 < train_metadata["trainable_parameters"] < base / 2
    assert train_metadata["start"] == "starting fresh: no checkpoint yet"  # which, and why
    evaluation = json.loads(p.eval_outputs.metrics.read_text())
    assert math.isfinite(evaluation["val_loss"])


TO_TRAINING = (
    "base_model,videos,manifest,rejects,text_embeddings,video_latents,training_plan,trained_model"
)


def test_image_to_video_trains_and_samples_from_the_first_frames(
    sample_raw: Path, tmp_path: Path
) -> None:
    """train.task: i2v (Wan 2.2 TI2V, a share of samples without the condition) through every
    stage: the latent cache keeps each window's first frame and its condition, training and
    evaluation run, and each evaluation sample starts from its validation clip's first frame."""
    from dagster_project.evaluation.monitor import RunMonitor
    from dagster_project.models.families import family_spec
    from dagster_project.training.data import clip_table
    from dagster_project.training.run_evaluations import RunEvaluations

    shutil.copytree(sample_raw, tmp_path / "data" / "raw")
    params = write_params(
        tmp_path,
        model={"family": "wan22_ti2v"},
        buckets={"sizes": [[17, 64, 64], [17, 64, 96], [17, 96, 64]]},  # TI2V: sides of 32
        train={"task": "i2v", "first_frame_p": 0.5, "steps": 4, "checkpoint_every": 2},
        eval={"every": 2, "samples_per_prompt": 2, "max_prompts": 2, "inference_steps": 2},
    )
    # up to training and its in-loop evaluations (the evaluation stage is family-agnostic)
    assert materialize(params, TO_TRAINING).success
    p = load_params(params)
    val = clip_table(p.cache_files, "val")
    entries = [load_file(path) for path in val["latent_file"]]
    assert all({"image", "condition"} <= set(entry) for entry in entries)
    history = RunEvaluations.of(p.train_outputs).history
    assert [r["step"] for r in history] == [0, 2, 4]
    assert all(math.isfinite(r["val_loss"]) for r in history)
    # memorization compares the frames after the given one
    spec = family_spec(p.model.family, p.base_model, p.train.task)
    monitor = RunMonitor(p.eval, spec, clip_table(p.cache_files, "train"), val, p.train_outputs)
    latent = monitor.val_latents[0]
    other_first = latent.clone()
    other_first[:, 0] += 5.0
    assert torch.equal(monitor.features([latent]), monitor.features([other_first]))
    other_second = latent.clone()
    other_second[:, 1] += 5.0
    assert not torch.equal(monitor.features([latent]), monitor.features([other_second]))
    # the pipeline keeps the given frame: sample latent frame 0 is its clip's condition
    samples = load_file(p.train_outputs.samples(4))
    firsts = val.with_row_index("row").unique("sha256", keep="first", maintain_order=True)
    for prompt, row in enumerate(firsts.head(2)["row"]):
        for seed in (0, 1):
            sample = samples[f"prompt{prompt}_seed{seed}"]
            assert torch.equal(sample[:, :1], entries[row]["condition"])

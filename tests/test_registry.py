"""Lineage and promotion: every trained model registered with what made it; a new model
promoted only when it is not worse than the promoted one, re-scored on today's validation
clips; a warm start continues the promoted model, and the guard counts the lineage's
exposures."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from dagster_project.dataset.exposure import plan_exposures
from dagster_project.evaluation.promotion import promotion_gate
from dagster_project.evaluation.registry import ModelRegistry
from dagster_project.hashing import folder_sha256, sha256_file
from dagster_project.params import load_params
from dagster_project.paths import RegistryFiles
from tests.conftest import materialize, write_params

FAST = {
    "eval": {"every": 5, "samples_per_prompt": 2, "max_prompts": 1, "inference_steps": 2},
    "guard": {"max_exposures": 1000.0, "warn_exposures": 1000.0},
}
RETRAIN = "training_plan,trained_model,evaluation,model_registry"


def test_the_gate_promotes_only_a_model_that_is_not_worse() -> None:
    first = promotion_gate(1.0, "watch", None, None, 0.0)
    assert first.promote and "nothing promoted yet" in first.reason
    promoted = {"version": "v0001", "evaluation": {"verdict": "watch"}}
    better = promotion_gate(0.9, "healthy", promoted, 1.0, 0.0)
    assert better.promote and better.against == "v0001"
    worse = promotion_gate(1.08, "healthy", promoted, 1.0, 0.05)
    assert not worse.promote
    assert "1.0800 vs 1.0000 for v0001 (limit 1.0500, margin 0.05) is worse" in worse.reason
    assert promotion_gate(1.04, "healthy", promoted, 1.0, 0.05).promote  # within the margin
    verdict = promotion_gate(0.5, "overfitting", promoted, 1.0, 0.0)
    assert not verdict.promote and "verdict overfitting is worse than watch" in verdict.reason
    other_base = promotion_gate(3.0, "overfitting", promoted, None, 0.0)
    assert other_base.promote and "another base model" in other_base.reason
    assert not promotion_gate(float("nan"), "healthy", None, None, 0.0).promote
    assert not promotion_gate(0.5, "healthy", promoted, float("nan"), 0.0).promote


def test_the_registry_numbers_versions_and_points_at_the_promoted_one(tmp_path: Path) -> None:
    registry = ModelRegistry(RegistryFiles(tmp_path / "registry"))
    models = []
    for name in ("a", "b"):
        model = tmp_path / name
        model.mkdir()
        (model / "weights.safetensors").write_text(name)
        models.append(model)
    first = {"model_sha256": folder_sha256(models[0]), "parent": None}
    one = registry.register(models[0], first, True, {"reason": "first"})
    second = {"model_sha256": folder_sha256(models[1]), "parent": "v0001"}
    two = registry.register(models[1], second, False, {"reason": "worse"})
    assert (one["version"], two["version"]) == ("v0001", "v0002")
    assert registry.promoted()["version"] == "v0001"
    assert registry.find(folder_sha256(models[1]))["version"] == "v0002"
    assert (registry.model("v0002") / "weights.safetensors").read_text() == "b"
    table = pl.read_parquet(registry.files.table)
    assert table.select("version", "promoted", "parent", "decision").rows() == [
        ("v0001", True, None, "first"),
        ("v0002", False, "v0001", "worse"),
    ]
    assert not list(registry.files.versions.glob(".*"))  # no temporary folder left


def test_the_guard_counts_the_lineage_exposures() -> None:
    buckets = ["17x64x64"] * 4
    alone = plan_exposures(buckets, 10, 2, 1, 1, 0, max_exposures=8, warn_exposures=4)
    assert alone.verdict == "warn" and max(alone.per_video) == 5
    warm = plan_exposures(buckets, 10, 2, 1, 1, 0, 8, 4, inherited=[4, 4, 0, 0])
    assert warm.per_video == [9, 9, 5, 5]
    assert warm.verdict == "error"
    assert "counting 2.0 on average from the lineage" in warm.message()
    assert "train.init: base" in warm.message()


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory, sample_raw: Path) -> Path:
    """A project trained once from the base (v0001, promoted); returns its params.yaml."""
    root = tmp_path_factory.mktemp("lineage")
    shutil.copytree(sample_raw, root / "data" / "raw")
    params = write_params(root, train={"steps": 20, "checkpoint_every": 5}, **FAST)
    assert materialize(params).success
    return params


def _retrain(params: Path, **train: object) -> dg.ExecuteInProcessResult:
    settings = yaml.safe_load(params.read_text())
    settings["train"].update(train)
    params.write_text(yaml.safe_dump(settings, sort_keys=False))
    return materialize(params, RETRAIN)


@pytest.mark.slow
def test_a_trained_model_is_registered_with_its_lineage(lineage: Path) -> None:
    p = load_params(lineage)
    registry = ModelRegistry(p.registry_files)
    [first] = registry.versions()
    assert registry.promoted()["version"] == "v0001"
    assert first["parent"] is None and first["init"] == "base"
    assert first["promotion"]["reason"] == "promoted: the first model, nothing promoted yet"
    assert first["model_sha256"] == folder_sha256(registry.model("v0001"))
    assert first["model_sha256"] == folder_sha256(p.train_outputs.model)
    assert first["data"]["manifest_sha256"] == sha256_file(p.path(p.data.manifest))
    assert first["data"]["raw_fingerprint"]  # what `videos` read
    assert first["params"]["train"]["steps"] == 20
    assert len(first["code"]["source_sha256"]) == 64
    evaluated = json.loads(p.eval_outputs.metrics.read_text())
    assert first["evaluation"]["verdict"] == evaluated["verdict"]
    assert first["evaluation"]["chosen_step"] == evaluated["chosen_step"]
    # exposures up to the exported step, per training clip
    assert sum(first["exposures"].values()) == evaluated["chosen_step"] * 2
    # a second materialization without a new model registers nothing
    assert materialize(lineage, "model_registry").success
    assert len(registry.versions()) == 1


@pytest.mark.slow
def test_a_warm_start_continues_the_promoted_model(lineage: Path) -> None:
    p = load_params(lineage)
    registry = ModelRegistry(p.registry_files)
    parent = registry.promoted()
    assert _retrain(lineage, init="promoted", steps=10).success
    start = json.loads(p.train_outputs.start.read_text())
    assert (start["parent"], start["init"]) == (parent["version"], "promoted")
    # step 0 of the warm run scores the parent's weights: its re-scored loss at promotion
    history = json.loads(p.train_outputs.evaluations.read_text())["history"]
    assert math.isclose(history[0]["val_loss"], parent["promotion"]["val_loss"], rel_tol=1e-5)
    child = registry.versions()[-1]
    assert child["parent"] == parent["version"]
    # exposures add up over the lineage
    evaluated = json.loads(p.eval_outputs.metrics.read_text())
    total = sum(parent["exposures"].values()) + evaluated["chosen_step"] * 2
    assert sum(child["exposures"].values()) == total
    assert child["promotion"]["against"] == parent["version"]


@pytest.mark.slow
def test_a_worse_model_is_kept_but_not_promoted(lineage: Path) -> None:
    p = load_params(lineage)
    registry = ModelRegistry(p.registry_files)
    before = registry.promoted()
    result = _retrain(lineage, init="base", steps=1, checkpoint_every=1)
    assert result.success
    latest = registry.versions()[-1]
    assert not latest["promoted"]
    assert registry.promoted()["version"] == before["version"]
    assert latest["promotion"]["reason"].startswith("not promoted: validation loss")
    assert latest["promotion"]["val_loss"] > latest["promotion"]["against_val_loss"]
    assert registry.model(latest["version"]).is_dir()  # kept
    report = p.registry_files.report.read_text()
    assert f"# Model {latest['version']}: not promoted" in report
    [registered] = result.asset_materializations_for_node("model_registry")
    assert registered.metadata["promoted"].value is False


@pytest.mark.slow
def test_the_guard_blocks_a_warm_start_over_the_lineage_limit(lineage: Path) -> None:
    p = load_params(lineage)
    parent = ModelRegistry(p.registry_files).promoted()
    inherited = max(parent["exposures"].values())
    # this run alone stays under the limit; with the lineage's exposures it does not
    settings = yaml.safe_load(lineage.read_text())
    settings["guard"] = {"max_exposures": float(inherited), "warn_exposures": 1.0}
    settings["train"].update(init="promoted", steps=2)
    lineage.write_text(yaml.safe_dump(settings, sort_keys=False))
    result = materialize(lineage, "training_plan,trained_model")
    assert not result.success
    [guard] = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert not guard.passed and guard.severity == dg.AssetCheckSeverity.ERROR
    assert "from the lineage this warm start continues" in guard.description
    settings["train"]["init"] = "base"  # the same run from the base passes
    lineage.write_text(yaml.safe_dump(settings, sort_keys=False))
    assert materialize(lineage, "training_plan").success


def test_a_warm_start_continues_in_the_same_mode(tmp_path: Path) -> None:
    """An adapter continues as an adapter (its weights loaded into the new one), full weights
    as full weights; across modes the run is refused before it trains."""
    import torch

    from dagster_project.models.families import FAMILIES, family_spec
    from dagster_project.params import LoraParams, ModelParams, TrainParams
    from dagster_project.paths import BaseModelFiles
    from dagster_project.training.trainer import WarmStart, starting_transformer

    base = BaseModelFiles(tmp_path / "base")
    FAMILIES["wan"].write_base_model(ModelParams(), 384, base, None)
    spec = family_spec("wan", base)
    lora = TrainParams(mode="lora", lora=LoraParams(rank=4, alpha=4))
    parent = starting_transformer(spec, lora, None)
    with torch.no_grad():
        for name, weight in parent.named_parameters():
            if "lora_B" in name:
                weight.fill_(0.01)  # a trained adapter: B is no longer zero
    spec.save_trained(parent, tmp_path / "adapter", lora=True)
    child = starting_transformer(spec, lora, WarmStart(tmp_path / "adapter", "a"))
    ours = {n: p for n, p in child.named_parameters() if "lora_B" in n}
    assert ours and all(torch.all(p == 0.01) for p in ours.values())
    with pytest.raises(ValueError, match="a LoRA adapter and train.mode is full"):
        starting_transformer(spec, TrainParams(mode="full"), WarmStart(tmp_path / "adapter", "a"))
    spec.save_trained(spec.load_transformer(), tmp_path / "full", lora=False)
    with pytest.raises(ValueError, match="full weights and train.mode is lora"):
        starting_transformer(spec, lora, WarmStart(tmp_path / "full", "f"))
    with pytest.raises(ValueError, match="does not fit train.lora"):
        other = TrainParams(mode="lora", lora=LoraParams(rank=8, alpha=8))
        starting_transformer(spec, other, WarmStart(tmp_path / "adapter", "a"))

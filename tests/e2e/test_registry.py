"""Lineage and promotion through the pipeline: every trained model registered with what made
it; a new model promoted only when it is not worse than the promoted one, re-scored on today's
validation clips; a warm start continues the promoted model, and the guard counts the
lineage's exposures."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from dagster_project.core.hashing import folder_sha256, sha256_file
from dagster_project.core.params import load_params
from dagster_project.registry.model_registry import ModelRegistry
from tests.conftest import write_params
from tests.materialize import materialize

FAST = {
    "eval": {"every": 5, "samples_per_prompt": 2, "max_prompts": 1, "inference_steps": 2},
    "guard": {"max_exposures": 1000.0, "warn_exposures": 1000.0},
}
RETRAIN = "training_plan,trained_model,evaluation,model_registry"


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
    assert registry.promoted().version == "v0001"
    assert first.parent is None and first.init == "base"
    assert first.promotion.reason == "promoted: the first model, nothing promoted yet"
    assert first.model_sha256 == folder_sha256(registry.model("v0001"))
    assert first.model_sha256 == folder_sha256(p.train_outputs.model)
    assert first.data.manifest_sha256 == sha256_file(p.path(p.data.manifest))
    assert first.data.raw_fingerprint  # what `videos` read
    assert first.params["train"]["steps"] == 20
    assert len(first.code.source_sha256) == 64
    evaluated = json.loads(p.eval_outputs.metrics.read_text())
    assert first.evaluation.verdict == evaluated["verdict"]
    assert first.evaluation.chosen_step == evaluated["chosen_step"]
    # exposures up to the exported step, per training clip
    assert sum(first.exposures.values()) == evaluated["chosen_step"] * 2
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
    assert (start["parent"], start["init"]) == (parent.version, "promoted")
    # step 0 of the warm run scores the parent's weights: its re-scored loss at promotion
    history = json.loads(p.train_outputs.evaluations.read_text())["history"]
    assert math.isclose(history[0]["val_loss"], parent.promotion.val_loss, rel_tol=1e-5)
    child = registry.versions()[-1]
    assert child.parent == parent.version
    # exposures add up over the lineage
    evaluated = json.loads(p.eval_outputs.metrics.read_text())
    total = sum(parent.exposures.values()) + evaluated["chosen_step"] * 2
    assert sum(child.exposures.values()) == total
    assert child.promotion.against == parent.version


@pytest.mark.slow
def test_a_worse_model_is_kept_but_not_promoted(lineage: Path) -> None:
    p = load_params(lineage)
    registry = ModelRegistry(p.registry_files)
    before = registry.promoted()
    result = _retrain(lineage, init="base", steps=1, checkpoint_every=1)
    assert result.success
    latest = registry.versions()[-1]
    assert not latest.promoted
    assert registry.promoted().version == before.version
    assert latest.promotion.reason.startswith("not promoted: validation loss")
    assert latest.promotion.val_loss > latest.promotion.against_val_loss
    assert registry.model(latest.version).is_dir()  # kept
    report = p.registry_files.report.read_text()
    assert f"# Model {latest.version}: not promoted" in report
    [registered] = result.asset_materializations_for_node("model_registry")
    assert registered.metadata["promoted"].value is False


@pytest.mark.slow
def test_the_guard_blocks_a_warm_start_over_the_lineage_limit(lineage: Path) -> None:
    p = load_params(lineage)
    parent = ModelRegistry(p.registry_files).promoted()
    inherited = max(parent.exposures.values())
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

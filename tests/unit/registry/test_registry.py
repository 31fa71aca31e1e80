"""The registry and the gate, without training: versions numbered with the promoted one
pointed at, the gate's rules, and the guard counting a lineage's exposures."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from dagster_project.core.hashing import folder_sha256
from dagster_project.core.paths import RegistryFiles
from dagster_project.dataset.exposure import plan_exposures
from dagster_project.registry.model_registry import ModelRegistry
from dagster_project.registry.promotion import promotion_gate
from dagster_project.registry.records import (
    CodeVersion,
    DataVersion,
    EvaluationSummary,
    Lineage,
    PromotedPointer,
    Promotion,
)


def lineage(model_sha256: str, parent: str | None = None, verdict: str = "watch") -> Lineage:
    """A lineage with every field set (the figures do not matter here)."""
    return Lineage(
        created="2026-01-01T00:00:00+00:00",
        model_sha256=model_sha256,
        base_identity="base",
        family="wan",
        mode="full",
        init="base",
        parent=parent,
        parent_model_sha256=None,
        data=DataVersion(
            raw_dvc_md5=None, raw_fingerprint=None, manifest_sha256="m" * 64, train_clips=1
        ),
        params={},
        params_sha256="p" * 64,
        code=CodeVersion(git_commit=None, git_dirty=None, source_sha256="s" * 64),
        evaluation=EvaluationSummary(verdict=verdict, chosen_step=1),
        exposures={},
        exposures_max=0,
        dagster_run_id=None,
    )


def decision(promote: bool, reason: str) -> Promotion:
    return Promotion(promote=promote, reason=reason, val_loss=1.0, verdict="healthy")


def test_the_gate_promotes_only_a_model_that_is_not_worse() -> None:
    first = promotion_gate(1.0, "watch", None, None, 0.0)
    assert first.promote and "nothing promoted yet" in first.reason
    promoted = lineage("a", verdict="watch").model_copy(update={"version": "v0001"})
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
    first = lineage(folder_sha256(models[0]))
    one = registry.register(models[0], first, decision(True, "first"))
    second = lineage(folder_sha256(models[1]), parent="v0001")
    two = registry.register(models[1], second, decision(False, "worse"))
    assert (one.version, two.version) == ("v0001", "v0002")
    assert registry.promoted().version == "v0001"
    assert registry.find(folder_sha256(models[1])).version == "v0002"
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


def test_an_interrupted_registration_is_repaired_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(RegistryFiles(tmp_path / "registry"))
    models = []
    for name in ("a", "b"):
        model = tmp_path / name
        model.mkdir()
        (model / "weights.safetensors").write_text(name)
        models.append(model)
    registry.register(models[0], lineage(folder_sha256(models[0])), decision(True, "first"))

    with monkeypatch.context() as patch:  # the pointer write fails after the version is written
        patch.setattr(PromotedPointer, "write", disk_full)
        with pytest.raises(OSError, match="disk full"):
            registry.register(models[1], lineage(folder_sha256(models[1])), decision(True, "b"))
    # the version folder is the truth: v0002 is promoted, whatever the stale views say
    assert registry.promoted().version == "v0002"
    assert json.loads(registry.files.promoted.read_text())["version"] == "v0001"  # stale view
    registry.refresh()  # what the next registration run does when it finds the model known
    assert json.loads(registry.files.promoted.read_text())["version"] == "v0002"
    table = pl.read_parquet(registry.files.table)
    assert table.select("version", "promoted").rows() == [("v0001", False), ("v0002", True)]


def disk_full(self: object, path: Path) -> None:
    raise OSError("disk full")


def test_a_version_appears_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(RegistryFiles(tmp_path / "registry"))
    model = tmp_path / "a"
    model.mkdir()
    (model / "weights.safetensors").write_text("a")
    with monkeypatch.context() as patch:  # the lineage write fails inside the version folder
        patch.setattr(Lineage, "write", disk_full)
        with pytest.raises(OSError):
            registry.register(model, lineage(folder_sha256(model)), decision(True, "first"))
    assert registry.versions() == [] and registry.promoted() is None
    assert not list(registry.files.versions.iterdir())  # nothing half-written
    registry.register(model, lineage(folder_sha256(model)), decision(True, "first"))
    assert [v.version for v in registry.versions()] == ["v0001"]

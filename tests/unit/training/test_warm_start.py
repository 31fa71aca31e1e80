"""A warm start continues in the same mode: an adapter as an adapter, full weights as full
weights; across modes, or into an adapter of another shape, it is refused."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_warm_start_continues_in_the_same_mode(tmp_path: Path) -> None:
    """An adapter continues as an adapter (its weights loaded into the new one), full weights
    as full weights; across modes the run is refused before it trains."""
    import torch

    from dagster_project.core.params import LoraParams, ModelParams, TrainParams
    from dagster_project.core.paths import BaseModelFiles
    from dagster_project.models.families import FAMILIES, family_spec
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

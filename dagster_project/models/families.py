"""The model family specs by name: params.yaml's `model.family` picks one."""

from __future__ import annotations

from dagster_project.core.paths import BaseModelFiles
from dagster_project.models.cogvideox import CogVideoXSpec
from dagster_project.models.hunyuan import HunyuanSpec
from dagster_project.models.hunyuan15 import HunyuanVideo15Spec
from dagster_project.models.ltx import LTXSpec
from dagster_project.models.ltx2 import LTX2Spec
from dagster_project.models.spec import ModelSpec
from dagster_project.models.wan import WanSpec
from dagster_project.models.wan22 import Wan22Spec, Wan22TI2VSpec

FAMILIES: dict[str, type[ModelSpec]] = {
    spec.name: spec
    for spec in (
        WanSpec,
        Wan22Spec,
        Wan22TI2VSpec,
        LTXSpec,
        LTX2Spec,
        HunyuanSpec,
        HunyuanVideo15Spec,
        CogVideoXSpec,
    )
}


def family_spec(
    family: str, base: BaseModelFiles, task: str = "t2v", audio_loss_weight: float = 1.0
) -> ModelSpec:
    """The spec of `family` over the base model folder `base`, for `task` (train.task), its
    audio loss weighed `audio_loss_weight` where it trains on sound (train.audio_loss_weight)."""
    if family not in FAMILIES:
        raise ValueError(f"model.family: {family!r} is not one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[family](base, task, audio_loss_weight)

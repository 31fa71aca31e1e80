"""The asset checks on the manifest, run by Dagster: the captions' warnings (the contract
itself: tests/unit/dataset/test_captions.py)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_project.core.params import load_params
from tests.materialize import materialize
from tests.unit.dataset.test_captions import LONG


def test_the_asset_check_warns_on_a_crafted_dataset(project: Path) -> None:
    raw = project.parent / "data" / "raw"
    (raw / "train" / "life_square.txt").write_text("life")
    (raw / "train" / "gradients_square.txt").write_text("colorful moving test pattern")
    (raw / "train" / "smptebars_wide.txt").write_text("colorful moving test pattern")
    (raw / "train" / "cellauto_wide.txt").write_text(LONG)
    result = materialize(project, "videos,manifest,rejects")
    assert result.success  # warnings do not block
    [check] = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == "caption_contract"
    ]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    text = check.description
    assert "fewer than 3 words: train/life_square.mp4 ('life')" in text
    assert (
        "'colorful moving test pattern' on train/gradients_square.mp4, train/smptebars_wide.mp4"
    ) in text
    p = load_params(project)
    assert f"({p.model.text_len} tokens), the rest is cut: train/cellauto_wide.mp4 (" in text
    assert check.metadata["flagged"].value == 4

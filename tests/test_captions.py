"""The captions' contract: warnings that name the clips (shared captions, captions cut at the
family's text length, captions of fewer than three words), shown by a Dagster asset check."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl

from dagster_project.dataset.caption_contract import caption_table, caption_warnings
from dagster_project.models.hunyuan import HunyuanSpec
from dagster_project.models.text_encoder import load_tokenizer
from dagster_project.models.wan import WanSpec
from dagster_project.params import load_params
from tests.conftest import materialize

LONG = " ".join(["a slow pan over a misty valley with pine trees and a river"] * 5)


def test_the_contract_names_each_problem() -> None:
    clips = pl.DataFrame(
        {
            "path": ["a.mp4", "b.mp4", "c.mp4", "c_copy.mp4", "d.mp4"],
            "caption": ["two words", "same caption here", "same caption here",
                        "a copy's caption", "fine caption for a clip"],
            "content": ["1", "2", "3", "3", "4"],
        }
    )  # fmt: skip
    table = caption_table(clips, [3, 9, 9, 40, 6], text_len=32)
    found = caption_warnings(table, text_len=32)
    assert found == [
        "fewer than 3 words: a.mp4 ('two words')",
        "the same caption on clips of different content: 'same caption here' on b.mp4, c.mp4",
        "longer than model.text_len (32 tokens), the rest is cut: c_copy.mp4 (40 tokens, 8 cut)",
    ]
    fine = caption_table(clips.filter(pl.col("path") == "d.mp4"), [6], text_len=32)
    assert caption_warnings(fine, text_len=32) == []


def test_tokens_are_counted_with_the_family_template() -> None:
    tokenizer = load_tokenizer(None)
    captions = ["short", LONG]
    wan = WanSpec.caption_tokens(tokenizer, captions)
    hunyuan = HunyuanSpec.caption_tokens(tokenizer, captions)
    assert wan[1] > 60  # MiniLM word pieces, with [CLS] and [SEP]
    # the Llama template's suffix counts against the text length; the cropped prefix does not
    suffix = hunyuan[0] - wan[0]
    assert suffix > 0 and hunyuan[1] - wan[1] == suffix


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

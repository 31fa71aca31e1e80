"""The captions' contract: warnings that name the clips (shared captions, captions cut at the
family's text length, captions of fewer than three words)."""

from __future__ import annotations

import polars as pl

from dagster_project.dataset.caption_contract import caption_table, caption_warnings
from dagster_project.models.hunyuan import HunyuanSpec
from dagster_project.models.text_encoder import load_tokenizer
from dagster_project.models.wan import WanSpec

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

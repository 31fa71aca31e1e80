"""The captions' contract: warnings that name the clips (shared captions, captions cut at the
family's text length, captions of fewer than three words); token counts remembered per tokenizer."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from dagster_project.dataset.caption_contract import caption_table, caption_warnings
from dagster_project.dataset.token_counts import remembered_token_counts
from dagster_project.models.hunyuan import HunyuanSpec
from dagster_project.models.text_encoder import load_tokenizer, tokenizer_identity
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


def test_token_counts_are_remembered_per_tokenizer_and_counted_once(tmp_path: Path) -> None:
    memo = tmp_path / "caption_tokens.parquet"
    counted: list[list[str]] = []

    def count(captions: list[str]) -> list[int]:
        counted.append(captions)
        return WanSpec.caption_tokens(load_tokenizer(None), captions)

    captions = ["short", LONG, "short"]
    direct = WanSpec.caption_tokens(load_tokenizer(None), captions)
    assert remembered_token_counts(captions, "wan:minilm", count, memo) == direct
    assert counted == [["short", LONG]]  # each distinct caption once
    written = memo.stat().st_mtime_ns, memo.stat().st_ino
    assert remembered_token_counts(captions, "wan:minilm", count, memo) == direct
    assert len(counted) == 1 and (memo.stat().st_mtime_ns, memo.stat().st_ino) == written
    # a new caption is the only one counted; a removed one leaves the file
    assert remembered_token_counts([LONG, "a new one"], "wan:minilm", count, memo)[0] == direct[1]
    assert counted[-1] == ["a new one"]
    assert sorted(pl.read_parquet(memo)["caption"]) == sorted([LONG, "a new one"])
    # another tokenizer (or family) counts again; so does a damaged file
    remembered_token_counts([LONG], "hunyuan:minilm", count, memo)
    assert counted[-1] == [LONG]
    memo.write_bytes(b"damaged")
    assert remembered_token_counts(["short"], "wan:minilm", count, memo) == direct[:1]
    assert counted[-1] == ["short"]


def test_a_tokenizer_folder_changed_is_another_tokenizer(tmp_path: Path) -> None:
    folder = tmp_path / "text_encoder"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    first = tokenizer_identity(folder)
    assert tokenizer_identity(folder) == first != tokenizer_identity(None)
    (folder / "tokenizer.json").write_text('{"model": "changed"}')
    assert tokenizer_identity(folder) != first

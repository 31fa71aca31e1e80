"""The captions' part of the data contract: a pandera (polars) schema whose rules warn (they do
not block a run) about captions the model will read badly.

- blank: rejected at ingestion already (`missing_caption`); the schema keeps the rule;
- the same caption on clips of different content: the model cannot tell them apart by text;
- longer than the family's text length, counted with its tokenizer and prompt template: the
  pipeline cuts the rest without a word;
- fewer than `MIN_WORDS` words: too little to condition on.
"""

from __future__ import annotations

import warnings

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaWarning

MIN_WORDS = 3
SHORT = f"fewer than {MIN_WORDS} words"
DUPLICATED = "the same caption on clips of different content"
CUT = "longer than model.text_len"

CAPTION_CONTRACT = pa.DataFrameSchema(
    {
        "path": pa.Column(str),
        "caption": pa.Column(str, pa.Check.str_length(min_value=1)),
        "words": pa.Column(int, pa.Check.ge(MIN_WORDS, raise_warning=True, error=SHORT)),
        "contents_sharing": pa.Column(int, pa.Check.eq(1, raise_warning=True, error=DUPLICATED)),
        "tokens_cut": pa.Column(int, pa.Check.eq(0, raise_warning=True, error=CUT)),
    }
)


def caption_table(clips: pl.DataFrame, tokens: list[int], text_len: int) -> pl.DataFrame:
    """One row per clip of `clips` (path, caption, content): its word count, its tokens
    (`tokens`, as the family counts them) and how many of them are cut, and how many
    different contents share its caption."""
    return clips.select("path", "caption", "content").with_columns(
        words=pl.col("caption").str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        .list.len().cast(pl.Int64),
        tokens=pl.Series(tokens, dtype=pl.Int64),
        tokens_cut=(pl.Series(tokens, dtype=pl.Int64) - text_len).clip(lower_bound=0),
        contents_sharing=pl.col("content").n_unique().over("caption").cast(pl.Int64),
    )  # fmt: skip


def flagged(table: pl.DataFrame) -> pl.DataFrame:
    """The rows of a `caption_table` that break one of the warning rules."""
    return table.filter(
        (pl.col("words") < MIN_WORDS)
        | (pl.col("contents_sharing") > 1)
        | (pl.col("tokens_cut") > 0)
    )


def caption_warnings(table: pl.DataFrame, text_len: int) -> list[str]:
    """The contract's warnings on a `caption_table`, each naming the clips (and the groups of a
    shared caption, and the tokens cut)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SchemaWarning)
        CAPTION_CONTRACT.validate(table, lazy=True)
    broken = " ".join(str(w.message) for w in caught if issubclass(w.category, SchemaWarning))
    found = []
    if SHORT in broken:
        short = table.filter(pl.col("words") < MIN_WORDS)
        found.append(
            f"{SHORT}: "
            + ", ".join(f"{p} ({c!r})" for p, c in short.select("path", "caption").rows())
        )
    if DUPLICATED in broken:
        shared = (
            table.filter(pl.col("contents_sharing") > 1)
            .group_by("caption", maintain_order=True)
            .agg(pl.col("path").sort())
        )
        found += [f"{DUPLICATED}: {c!r} on {', '.join(paths)}" for c, paths in shared.rows()]
    if CUT in broken:
        cut = table.filter(pl.col("tokens_cut") > 0)
        found.append(
            f"{CUT} ({text_len} tokens), the rest is cut: "
            + ", ".join(
                f"{p} ({t} tokens, {c} cut)"
                for p, t, c in cut.select("path", "tokens", "tokens_cut").rows()
            )
        )
    return found

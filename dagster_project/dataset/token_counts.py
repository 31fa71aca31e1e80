"""Captions' token counts, remembered between runs: the caption check counts every caption of
the manifest on each run, and tokenizing thousands of captions costs more than all the rest of
the check. A count is kept by (tokenizer identity, caption); the file is rewritten atomically,
with exactly the current captions' counts, only when they change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl

from dagster_project.core.atomic import write_parquet

SCHEMA = {"tokenizer": pl.String, "caption": pl.String, "tokens": pl.Int64}


def remembered_token_counts(
    captions: list[str],
    tokenizer: str,
    count: Callable[[list[str]], list[int]],
    memo: Path | None,
) -> list[int]:
    """The token count of each caption: remembered in `memo` for the `tokenizer` identity, else
    `count`ed (once per distinct caption); None keeps nothing."""
    earlier: dict[str, int] = {}
    if memo is not None and memo.is_file():
        try:
            table = pl.read_parquet(memo).filter(pl.col("tokenizer") == tokenizer)
            earlier = dict(table.select("caption", "tokens").iter_rows())
        except (OSError, pl.exceptions.PolarsError):  # damaged, another layout: counted again
            earlier = {}
    new = [c for c in dict.fromkeys(captions) if c not in earlier]
    counts = earlier | dict(zip(new, count(new) if new else [], strict=True))
    current = {caption: counts[caption] for caption in captions}
    if memo is not None and current != earlier:
        rows = [(tokenizer, caption, tokens) for caption, tokens in current.items()]
        write_parquet(pl.DataFrame(rows, schema=SCHEMA, orient="row"), memo)
    return [current[caption] for caption in captions]

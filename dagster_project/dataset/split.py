"""The train/validation split: each clip's own split, and one split per content group
(near-duplicate clips, one content, land in one split, so validation never scores a copy of a
training clip).

Each clip has its own split (`manifest.split_of`: its split folder, `data.val_files`, or its
content hash). A group then takes one split:
- explicit designations (a split folder, a `data.val_files` entry) are never overridden; a group
  whose explicit members disagree keeps them as they are, with a warning;
- otherwise clips already split in an earlier run (the split memory) never move, and a new clip
  joins its group's split; a group that new clips link to remembered clips of both splits
  loses those new clips (rejected, reason `near_duplicate_across_splits`); remembered clips
  linked only since (a lower threshold) stay apart, with a warning;
- a group of new clips takes the own split of its content clip (the smallest sha256).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from dagster_project.core.atomic import write_parquet
from dagster_project.core.hashing import cache_key


def split_clips(manifest: pl.DataFrame, split: str) -> pl.DataFrame:
    """The clips of one split in their canonical order (by sha256), which the sampler indexes:
    the exposure replay and the trainer must see the same order."""
    return manifest.filter(pl.col("split") == split).sort("sha256")


def split_of(
    sha256: str,
    path: str,
    val_fraction: float,
    val_files: frozenset[str],
    folder_split: str | None = None,
) -> str:
    """The clip's split: fixed by its split folder (train/, validation/) if it lies in one,
    else from its content alone (or the explicit list): adding other videos never moves it,
    and the same bytes always land in the same split. Encoded bytes differ between ffmpeg
    builds, so data that must split the same everywhere uses split folders."""
    if folder_split is not None:
        return folder_split
    if val_files:
        return "val" if sha256 in val_files or path in val_files else "train"
    return "val" if int(sha256[:8], 16) / 0x1_0000_0000 < val_fraction else "train"


MEMORY_SCHEMA = {"sha256": pl.String, "split": pl.String, "rule": pl.String}


def split_rule(val_fraction: float, val_files: list[str]) -> str:
    """The settings a remembered split was made under: changing them re-splits."""
    return cache_key(val_fraction=val_fraction, val_files=sorted(val_files))[:16]


def read_memory(path: Path | None, rule: str) -> dict[str, str]:
    """The splits of earlier runs under the same rule (sha256 -> split)."""
    if path is None or not path.is_file():
        return {}
    memory = pl.read_parquet(path).filter(pl.col("rule") == rule)
    return dict(zip(memory["sha256"], memory["split"], strict=True))


def write_memory(path: Path | None, splits: dict[str, str], rule: str) -> None:
    if path is not None:
        rows = [(sha, split, rule) for sha, split in sorted(splits.items())]
        write_parquet(pl.DataFrame(rows, schema=MEMORY_SCHEMA, orient="row"), path)


@dataclass
class GroupSplit:
    """The outcome: each kept clip's split, the new clips rejected, and warnings."""

    splits: dict[str, str] = field(default_factory=dict)  # sha256 -> split
    rejected: dict[str, str] = field(default_factory=dict)  # sha256 -> message
    warnings: list[str] = field(default_factory=list)


def split_groups(
    content: dict[str, str],
    own: dict[str, str],
    explicit: set[str],
    memory: dict[str, str],
    names: dict[str, str],
) -> GroupSplit:
    """One split per content group. `content`: sha256 -> group; `own`: each clip's own split;
    `explicit`: clips whose split is designated; `memory`: splits of earlier runs; `names`:
    sha256 -> path, for messages."""
    result = GroupSplit()
    groups: dict[str, list[str]] = {}
    for sha in sorted(content):
        groups.setdefault(content[sha], []).append(sha)
    for group, members in groups.items():
        fixed = {sha: own[sha] for sha in members if sha in explicit}
        if not fixed:
            fixed = {sha: memory[sha] for sha in members if sha in memory}
            if len(set(fixed.values())) > 1:  # new clips bridged a train and a val group
                bridging = [sha for sha in members if sha not in fixed]
                if not bridging:  # linked since they were split (a lower threshold)
                    result.warnings.append(
                        "near-duplicates split apart by an earlier run stay so (existing clips "
                        "never move; list them in data.val_files to choose): "
                        + ", ".join(f"{names[s]}: {fixed[s]}" for s in sorted(fixed))
                    )
                for sha in bridging:
                    result.rejected[sha] = (
                        f"{names[sha]}: a near-duplicate of clips in both splits ("
                        + ", ".join(f"{names[s]}: {fixed[s]}" for s in sorted(fixed))
                        + "); it would leak validation content into training"
                    )
                members = [sha for sha in members if sha not in result.rejected]
        elif len(set(fixed.values())) > 1:
            result.warnings.append(
                "near-duplicates designated to both splits (split folders or data.val_files "
                "win): " + ", ".join(f"{names[s]}: {fixed[s]}" for s in sorted(fixed))
            )
        # the group's split: its designated or remembered clips' (the first by path), else
        # its content clip's own split
        anchor = min(fixed, key=names.__getitem__) if fixed else group
        for sha in members:
            result.splits[sha] = fixed.get(sha, fixed.get(anchor, own[anchor]))
    return result

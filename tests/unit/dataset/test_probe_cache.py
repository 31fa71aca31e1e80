"""The probe cache: a re-run probes only new or changed files, and a cache file it cannot use
(another layout, damaged) means probing again, never a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl

from dagster_project.dataset.probe_cache import probe_with_cache
from dagster_project.video.probe import ProbeError


def test_known_files_are_read_back_and_only_new_or_changed_ones_probed(
    sample_raw: Path, tmp_path: Path
) -> None:
    videos = [str(shutil.copy(p, tmp_path)) for p in sorted(sample_raw.rglob("*.mp4"))[:3]]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    paths, memo = [*videos, str(broken)], tmp_path / "probe_cache.parquet"
    first = probe_with_cache(paths, memo)
    assert first.probed_now == 4 and isinstance(first.results[-1], ProbeError)
    written = memo.stat().st_ino
    again = probe_with_cache(paths, memo)
    assert again.probed_now == 0 and memo.stat().st_ino == written  # nothing new: not rewritten
    assert [vars(r[0]) for r in again.results[:3]] == [vars(r[0]) for r in first.results[:3]]
    assert [r[1] for r in again.results[:3]] == [r[1] for r in first.results[:3]]
    assert again.results[-1].reason == first.results[-1].reason
    assert again.sizes == [os.stat(p).st_size for p in paths]
    os.utime(videos[0], ns=(0, 10**9))  # changed (its time): probed again, alone
    assert probe_with_cache(paths, memo).probed_now == 1
    assert probe_with_cache(paths[1:], memo).probed_now == 0  # one gone: its entry leaves
    assert pl.read_parquet(memo)["path"].to_list() == paths[1:]


def test_a_cache_file_it_cannot_use_is_probed_again(sample_raw: Path, tmp_path: Path) -> None:
    paths = sorted(str(p) for p in sample_raw.rglob("*.mp4"))[:2]
    memo = tmp_path / "probe_cache.parquet"
    old_layout = {"path": paths, "size": [1, 2], "mtime_ns": [1, 2], "result": ["{}", "{}"]}
    pl.DataFrame(old_layout).write_parquet(memo)
    assert probe_with_cache(paths, memo).probed_now == 2
    memo.write_bytes(b"damaged")
    assert probe_with_cache(paths, memo).probed_now == 2
    assert probe_with_cache(paths, memo).probed_now == 0  # the file was written anew

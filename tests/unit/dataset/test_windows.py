"""The windows of a long clip: head, chunks, uniform (data.frame_extraction)."""

from __future__ import annotations

import pytest

from dagster_project.dataset.windows import window_starts


def test_head_is_the_first_window_only() -> None:
    assert window_starts(960, 49, "head", 16) == [0]


def test_chunks_cut_the_clip_into_windows_one_after_another() -> None:
    # a 60 s clip at 16 fps in a 49-frame bucket: 19 whole windows, capped to 16 spread over it
    assert window_starts(200, 49, "chunks", 16) == [0, 49, 98, 147]
    capped = window_starts(960, 49, "chunks", 16)
    assert len(capped) == 16 and capped[0] == 0 and capped[-1] == 18 * 49
    assert all(b - a >= 49 for a, b in zip(capped, capped[1:], strict=False))  # no overlap


def test_uniform_spreads_n_windows_over_the_clip() -> None:
    starts = window_starts(960, 49, "uniform", 4)
    assert starts == [0, 304, 607, 911] and starts[-1] + 49 == 960
    assert window_starts(60, 49, "uniform", 4) == [0, 4, 7, 11]  # short: they overlap


@pytest.mark.parametrize("mode", ["head", "chunks", "uniform"])
def test_a_clip_shorter_than_its_bucket_has_no_window_and_one_that_fits_has_one(
    mode: str,
) -> None:
    assert window_starts(48, 49, mode, 16) == []
    assert window_starts(49, 49, mode, 16) == [0]
    assert len(window_starts(97, 49, mode, 1)) == 1

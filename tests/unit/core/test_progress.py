"""Progress lines: done/total, rate and time left, at most every `every` seconds, and the end."""

from __future__ import annotations

import re

from dagster_project.core.progress import Progress


def test_progress_says_the_end_and_nothing_between_within_its_interval() -> None:
    lines: list[str] = []
    progress = Progress("probing", 5, lines.append, every=3600)
    for _ in range(5):
        progress()
    assert len(lines) == 1
    assert re.fullmatch(r"probing: 5/5 clips \([\d.]+/s, 0m\d\ds so far\)", lines[0]), lines


def test_progress_says_rate_and_time_left_while_it_runs() -> None:
    lines: list[str] = []
    progress = Progress("latents", 4, lines.append, unit="windows", every=0)
    progress(1, 4)
    progress(2, 4)
    assert len(lines) == 2
    assert re.fullmatch(
        r"latents: 1/4 windows \([\d.]+/s, \dm\d\ds left, 0m\d\ds so far\)", lines[0]
    )

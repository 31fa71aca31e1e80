"""`make repro` refuses a raw folder whose links lead outside it, before DVC copies them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def check(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagster_project.cli.raw_check", str(project)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip


def test_links_inside_pass_links_outside_are_named(project: Path, tmp_path: Path) -> None:
    raw = project.parent / "data" / "raw"
    (raw / "train" / "again.mp4").symlink_to(raw / "train" / "life_square.mp4")
    assert check(project).returncode == 0  # a link to a file inside the folder is fine

    secret = tmp_path / "outside" / "secret.mp4"
    secret.parent.mkdir()
    secret.write_bytes(b"not yours")
    (raw / "train" / "leak.mp4").symlink_to(secret)
    (raw / "elsewhere").symlink_to(secret.parent, target_is_directory=True)
    result = check(project)
    assert result.returncode == 1
    assert "elsewhere" in result.stderr and "train/leak.mp4" in result.stderr
    assert "again.mp4" not in result.stderr


def test_links_into_the_dvc_cache_are_dvcs_own(project: Path) -> None:
    """With `cache.type symlink`, DVC itself links every tracked file into .dvc/cache."""
    cached = project.parent / ".dvc" / "cache" / "files" / "md5" / "ab" / "cdef"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a cached clip")
    (project.parent / "data" / "raw" / "train" / "linked.mp4").symlink_to(cached)
    assert check(project).returncode == 0

"""The synthetic sample dataset is deterministic and usable for training."""

from __future__ import annotations

from pathlib import Path

from dagster_project.sample_data import write_sample_dataset
from dagster_project.video.decode import frames_at_fps
from dagster_project.video.probe import probe_video, sha256_file


def digests(folder: Path) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted(folder.iterdir())}


def test_sample_dataset(tmp_path: Path) -> None:
    first = write_sample_dataset(tmp_path / "a")
    second = write_sample_dataset(tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    # Only videos and captions, no temporary files left behind.
    assert len(list((tmp_path / "a").iterdir())) == 2 * len(first)

    assert 12 <= len(first) <= 16
    aspect_ratios = set()
    for video in first:
        caption = video.with_suffix(".txt").read_text(encoding="utf-8")
        assert caption.strip() and len(caption.strip().splitlines()) == 1

        info = probe_video(video)
        aspect_ratios.add(round(info.width / info.height, 2))
        assert (info.codec, info.pix_fmt, info.fps) == ("h264", "yuv420p", 24.0)
        assert 1.5 <= info.duration <= 3.0
        assert frames_at_fps(info.frame_count, info.fps, 16) >= 17, video.name
    assert len(aspect_ratios) >= 3

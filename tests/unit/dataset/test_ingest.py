"""Ingestion and probing on real files made by ffmpeg: each reject reason, each awkward case."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from pathlib import Path

import polars as pl
import pytest

from dagster_project.core.shapes import Bucket
from dagster_project.dataset.ingest import confine, discover_videos, resolve_below
from dagster_project.dataset.manifest import ManifestRules, build_manifest
from dagster_project.dataset.schema import ManifestSchema, RejectsSchema, contract_errors

BUCKETS = [Bucket(17, 64, 64), Bucket(17, 48, 80), Bucket(17, 80, 48)]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def clip(path: Path, *, size: str = "64x48", frames: int = 36, source: str = "testsrc2",
         codec: list[str] = ("-c:v", "libx264", "-pix_fmt", "yuv420p"), extra: list[str] = (),
         caption: str | None = "a test clip") -> Path:  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg(
        "-f", "lavfi", "-i", f"{source}=size={size}:rate=24", *extra,
        "-frames:v", str(frames), *codec, "file:" + str(path),
    )  # fmt: skip
    if caption is not None:
        path.with_suffix(".txt").write_text(caption, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, pl.DataFrame]:
    root = tmp_path_factory.mktemp("ingest")
    data = root / "data"
    s = data / "side"
    # awkward but valid
    clip(s / "plain.mp4")
    rotated_src = clip(root / "wide.mp4", size="96x48", caption=None)
    ffmpeg(
        "-i", str(rotated_src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(s / "rotated.mp4")
    )
    (s / "rotated.txt").write_text("a rotated clip")
    clip(
        s / "vfr.mp4",
        frames=48,
        extra=["-vf", "setpts='if(lt(N,24),N/24,1+(N-24)/12)/TB'", "-fps_mode", "vfr"],
    )
    clip(s / "ten_bit.mp4", codec=["-c:v", "libx264", "-pix_fmt", "yuv420p10le"])
    clip(s / "full_chroma.mp4", codec=["-c:v", "libx264", "-pix_fmt", "yuv444p"])
    clip(s / "vp9.webm", codec=["-c:v", "libvpx-vp9", "-deadline", "realtime"])
    clip(s / "with_audio.mkv", extra=["-f", "lavfi", "-i", "sine=frequency=440:duration=2"],
         codec=["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])  # fmt: skip
    clip(
        s / "odd.mp4",
        size="99x67",
        source="testsrc",
        codec=["-c:v", "libx264", "-pix_fmt", "yuv444p"],
    )
    clip(s / "-ünïcødé clip.mp4", source="mandelbrot", size="80x48")
    clip(s / "concat:evil.mp4", source="life")
    clip(s / "anamorphic.mp4", extra=["-vf", "setsar=2/1"])
    # one per reject reason
    (s / "empty.mp4").write_bytes(b"")
    (s / "empty.txt").write_text("empty")
    clip(s / "still.mp4", frames=1, codec=["-c:v", "png", "-f", "image2"])
    full = clip(root / "full.mp4", frames=48, caption=None)
    (s / "truncated.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    (s / "truncated.txt").write_text("cut in half")
    front = clip(root / "front.mp4", frames=48, caption=None, extra=["-movflags", "+faststart"])
    (s / "cut_faststart.mp4").write_bytes(front.read_bytes()[: front.stat().st_size * 2 // 3])
    (s / "cut_faststart.txt").write_text("cut after the header")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(s / "audio.mp4"))
    (s / "audio.txt").write_text("only sound")
    clip(s / "short.mp4", frames=5)
    clip(s / "twelve.mp4", frames=18)  # 12 frames at 16 fps: enough frames, no 17-frame bucket
    clip(s / "tiny.mp4", size="16x16")
    clip(s / "uncaptioned.mp4", caption=None)
    clip(s / "blank.mp4", caption=" \r\n\t\n")
    clip(s / "latin1.mp4", caption=None)
    (s / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    os.symlink(s / "nowhere.mp4", s / "dangling.mp4")
    (s / "dangling.txt").write_text("points at nothing")
    os.symlink(rotated_src, s / "escape.mp4")
    (s / "escape.txt").write_text("points outside")
    (s / "twin.mp4").write_bytes((s / "plain.mp4").read_bytes())
    (s / "twin.txt").write_text("the same bytes again")
    # the Hugging Face videofolder convention, with a BOM, CRLF and a multi-line quoted caption
    hf = data / "hf"
    clip(hf / "a.mp4", source="smptebars", caption=None)
    clip(hf / "b.mp4", source="cellauto", caption=None)
    clip(hf / "unlisted.mp4", source="rgbtestsrc", caption=None)
    (hf / "metadata.csv").write_bytes(
        "\ufefffile_name,caption\r\na.mp4,  colour bars  \r\n"
        'b.mp4,"cells\r\ngrowing"\r\n../side/plain.mp4,sneaky\r\n../../outside.mp4,escape\r\n'
        "http://host/x.mp4,remote\r\nconcat:a.mp4|b.mp4,joined\r\n"
        "link/../../../inner.mp4,through a link\r\n".encode()
    )
    # `link/../../..` walks up from the link's target, not from hf/: it names data/inner.mp4,
    # while the same text read without following the link would name ../inner.mp4 (outside)
    (data / "side" / "a" / "b").mkdir(parents=True)
    os.symlink(data / "side" / "a" / "b", hf / "link")
    clip(data / "inner.mp4", source="smptebars", size="80x48", caption=None)
    clip(root / "inner.mp4", source="testsrc", caption=None)
    clip(root / "outside.mp4", caption=None)
    jsonl = data / "jsonl"
    clip(jsonl / "c.mp4", source="yuvtestsrc", caption=None)
    (jsonl / "metadata.jsonl").write_text('{"file_name": "c.mp4", "caption": "yuv bars"}\n\n')
    broken = data / "broken_meta"
    clip(broken / "d.mp4", source="gradients", caption=None)
    (broken / "metadata.jsonl").write_text('{"file_name": "d.mp4"}\n')
    ft = data / "ft"
    clip(ft / "videos" / "e.mp4", source="testsrc", caption=None)
    clip(ft / "videos" / "f.mp4", source="mandelbrot", caption=None)
    (ft / "prompts.txt").write_bytes(b"a test pattern\r\n  a fractal  \r\n")
    (ft / "videos.txt").write_bytes(b"videos/e.mp4\r\nvideos/f.mp4\r\nvideos/missing.mp4\r\n")

    folders = [(name, "auto") for name in ("side", "hf", "jsonl", "broken_meta", "ft")]
    videos = discover_videos(data, folders)
    manifest, rejects = build_manifest(
        videos, data.resolve(), ManifestRules(BUCKETS, 16.0, 0.25)
    ).tables()
    return data, manifest, rejects


def row(frame: pl.DataFrame, path: str) -> dict:
    [found] = frame.filter(pl.col("path") == path).to_dicts()
    return found


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("side/empty.mp4", "empty_file"),
        ("side/truncated.mp4", "corrupt"),
        ("side/cut_faststart.mp4", "corrupt"),
        ("side/still.mp4", "not_video"),
        ("side/audio.mp4", "audio_only"),
        ("side/short.mp4", "too_few_frames"),
        ("side/twelve.mp4", "no_bucket"),
        ("side/tiny.mp4", "too_small"),
        ("side/uncaptioned.mp4", "missing_caption"),
        ("side/blank.mp4", "missing_caption"),
        ("side/latin1.mp4", "unreadable"),
        ("side/dangling.mp4", "unreadable"),
        ("side/escape.mp4", "outside_data_folder"),
        ("side/twin.mp4", "duplicate"),
        ("hf/unlisted.mp4", "missing_caption"),
        ("side/plain.mp4", "duplicate"),  # listed again by hf/metadata.csv
        ("../outside.mp4", "outside_data_folder"),
        ("hf/http:/host/x.mp4", "unreadable"),
        ("hf/concat:a.mp4|b.mp4", "unreadable"),
        ("broken_meta/metadata.jsonl", "bad_metadata"),
        ("broken_meta/d.mp4", "missing_caption"),
        ("ft/videos/missing.mp4", "unreadable"),
    ],
)
def test_reject_reasons(dataset: tuple, path: str, reason: str) -> None:
    rejects = dataset[2]
    found = rejects.filter(pl.col("path") == path)
    assert found.height >= 1, f"{path} not rejected: {rejects.to_dicts()}"
    assert reason in found["reason"].to_list()
    assert all(found["message"].str.len_chars() > 0)


def test_rejects_explain_truncation(dataset: tuple) -> None:
    message = row(dataset[2], "side/cut_faststart.mp4")["message"]
    assert message.startswith("side/cut_faststart.mp4: truncated: the header declares 48 frames")
    assert "Invalid data" in row(dataset[2], "side/truncated.mp4")["message"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("side/plain.mp4", {"width": 64, "height": 48, "frame_count": 36, "fps": 24.0}),
        ("side/rotated.mp4", {"width": 48, "height": 96, "bucket": "17x80x48"}),
        ("side/vfr.mp4", {"variable_fps": True, "frame_count": 48}),
        ("side/ten_bit.mp4", {"bit_depth": 10, "pix_fmt": "yuv420p10le"}),
        ("side/full_chroma.mp4", {"pix_fmt": "yuv444p", "bit_depth": 8}),
        ("side/vp9.webm", {"codec": "vp9", "frame_count": 36}),
        ("side/with_audio.mkv", {"has_audio": True, "frame_count": 36}),
        ("side/odd.mp4", {"width": 99, "height": 67}),
        ("side/-ünïcødé clip.mp4", {"caption": "a test clip", "width": 80}),
        ("side/concat:evil.mp4", {"width": 64, "height": 48}),
        ("side/anamorphic.mp4", {"sample_aspect_ratio": "2:1", "width": 128, "bucket": "17x48x80"}),
        ("hf/a.mp4", {"caption": "colour bars", "source": "hf/metadata.csv"}),
        ("hf/b.mp4", {"caption": "cells growing"}),
        ("inner.mp4", {"caption": "through a link", "width": 80}),
        ("jsonl/c.mp4", {"caption": "yuv bars", "source": "jsonl/metadata.jsonl"}),
        ("ft/videos/e.mp4", {"caption": "a test pattern", "source": "ft/videos.txt"}),
        ("ft/videos/f.mp4", {"caption": "a fractal"}),
    ],
)
def test_accepted_rows(dataset: tuple, path: str, expected: dict) -> None:
    found = row(dataset[1], path)
    assert {k: found[k] for k in expected} == expected
    assert found["variable_fps"] == (path == "side/vfr.mp4")
    assert found["size_bytes"] == (dataset[0] / path).stat().st_size


def test_tables_meet_the_contract(dataset: tuple) -> None:
    _, manifest, rejects = dataset
    assert contract_errors(manifest, ManifestSchema) == []
    assert contract_errors(rejects, RejectsSchema) == []
    # every input is accounted for, once; only a second listing repeats an accepted path
    twice = rejects.filter(pl.col("message").str.contains("listed twice"))
    assert twice["path"].to_list() == ["side/plain.mp4"]
    assert "again in hf/metadata.csv" in twice["message"][0]
    assert set(manifest["path"]) & set(rejects["path"]) == {"side/plain.mp4"}
    assert manifest.height + rejects.height == 39


def test_contract_errors_name_the_rows(dataset: tuple) -> None:
    manifest = dataset[1]
    broken = pl.concat([manifest, manifest.head(1)]).with_columns(
        pl.when(pl.col("path") == "hf/b.mp4")
        .then(pl.lit("test"))
        .otherwise(pl.col("split"))
        .alias("split")
    )
    errors = contract_errors(broken, ManifestSchema)
    first = manifest["path"][0]
    assert any(e.startswith(f"row 0 ({first}): sha256") and "unique" in e for e in errors)
    b = manifest["path"].to_list().index("hf/b.mp4")
    assert f"row {b} (hf/b.mp4): split = 'test' fails isin(['train', 'val'])" in errors


def test_no_path_outside_the_data_folder_reaches_ffprobe(
    dataset: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = dataset[0].resolve()
    log = tmp_path / "ffprobe.log"
    shim = tmp_path / "bin" / "ffprobe"
    shim.parent.mkdir()
    shim.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" >> {shlex.quote(str(log))}\nexec /usr/bin/ffprobe "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    folders = [(name, "auto") for name in ("side", "hf", "jsonl", "broken_meta", "ft")]
    build_manifest(discover_videos(data, folders), data, ManifestRules(BUCKETS, 16.0, 0.25))
    arguments = log.read_text(encoding="utf-8").splitlines()
    inputs = [a for a in arguments if a.startswith("file:")]
    assert len(inputs) >= 15
    for argument in inputs:
        assert Path(argument.removeprefix("file:")).is_relative_to(data), argument
    assert not [a for a in arguments if "://" in a or a.startswith("concat:")]
    # every input is the last argument, after the protocol whitelist
    assert arguments.count("-protocol_whitelist") == len(inputs)


def test_folders_outside_the_data_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match=r"data.folders.0.path: \.\./elsewhere"):
        discover_videos(tmp_path / "data", [("../elsewhere", "auto")])


def test_captions_with_control_characters_are_rejected_with_a_reason(tmp_path: Path) -> None:
    data = tmp_path / "data"
    clip(data / "nul.mp4", caption="a clip\x00 with a NUL byte")
    clip(data / "escape.mp4", caption="a clip \x1b[31min red")
    clip(data / "tab.mp4", caption="a clip\twith a tab")
    found = discover_videos(data, [(".", "auto")])
    reasons = dict(zip(found["path"], found["reason"], strict=True))
    assert reasons == {"escape.mp4": "bad_caption", "nul.mp4": "bad_caption", "tab.mp4": None}
    [message] = found.filter(pl.col("path") == "nul.mp4")["message"]
    assert "control characters (U+0000" in message


def test_a_caption_that_is_no_regular_file_is_missing_and_never_blocks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    clip(data / "fifo.mp4", caption="replaced by a FIFO")
    (data / "fifo.txt").unlink()
    os.mkfifo(data / "fifo.txt")  # opening it for reading would wait for a writer
    clip(data / "folder.mp4", caption="replaced by a folder")
    (data / "folder.txt").unlink()
    (data / "folder.txt").mkdir()
    found: list[pl.DataFrame] = []
    worker = threading.Thread(
        target=lambda: found.append(discover_videos(data, [(".", "auto")])), daemon=True
    )
    worker.start()
    worker.join(timeout=30)
    assert found, "discovery blocked on the FIFO"
    reasons = dict(zip(found[0]["path"], found[0]["reason"], strict=True))
    assert reasons == {"fifo.mp4": "missing_caption", "folder.mp4": "missing_caption"}


def test_paths_resolve_as_path_resolve_does(tmp_path: Path) -> None:
    """The cheap resolution (one lstat per component below the data folder) gives what
    `Path.resolve` gives, links, `..` and missing files included."""
    data = tmp_path / "data"
    (data / "a" / "b").mkdir(parents=True)
    (data / "a" / "b" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "outside.mp4").write_bytes(b"x")
    (data / "a" / "inside_link.mp4").symlink_to(data / "a" / "b" / "clip.mp4")
    (data / "a" / "outside_link.mp4").symlink_to(tmp_path / "outside.mp4")
    (data / "linked_dir").symlink_to(data / "a" / "b", target_is_directory=True)
    paths = [
        data / "a" / "b" / "clip.mp4",
        data / "a" / "inside_link.mp4",
        data / "a" / "outside_link.mp4",
        data / "linked_dir" / "clip.mp4",
        data / "a" / ".." / ".." / "outside.mp4",
        data / "a" / "missing.mp4",
        tmp_path / "outside.mp4",
    ]
    for path in paths:
        assert resolve_below(data, path) == path.resolve(), path
    assert confine(data, data / "a" / "outside_link.mp4") is None
    assert confine(data, data / "linked_dir" / "clip.mp4") == data / "a" / "b" / "clip.mp4"

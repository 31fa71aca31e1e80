"""Probing and decoding against real files made by ffmpeg."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from dagster_project.core.hashing import sha256_file
from dagster_project.video.audio import decode_audio
from dagster_project.video.decode import DecodeError, decode_clip, frames_at_fps
from dagster_project.video.probe import ProbeError, probe_video


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def make_clip(
    path: Path, size: str = "64x32", frames: int = 30, rate: str = "24", codec: str = "libx264"
) -> Path:
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-frames:v", str(frames), "-c:v", codec, "-pix_fmt", "yuv420p",
        "file:" + str(path),
    )  # fmt: skip
    return path


def count_frames_at(path: Path, fps: float) -> int:
    """How many frames ffmpeg's fps filter really emits (tiny frames keep this fast)."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", "file:" + str(path),
         "-vf", f"fps={fps},scale=2:2", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return len(raw) // 4


def test_probe_mp4(tmp_path: Path) -> None:
    info = probe_video(make_clip(tmp_path / "clip.mp4", size="64x32", frames=30))
    assert (info.width, info.height, info.frame_count) == (64, 32, 30)
    assert info.fps == 24.0
    assert info.duration == pytest.approx(1.25)
    assert (info.codec, info.pix_fmt, info.has_audio) == ("h264", "yuv420p", False)


def test_probe_rotated_clip_reports_displayed_size(tmp_path: Path) -> None:
    source = make_clip(tmp_path / "in.mp4", size="64x32")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(source), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    stream = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(rotated)],
            check=True, capture_output=True,
        ).stdout
    )["streams"][0]  # fmt: skip
    # ffprobe 5.1 shows the tag as display-matrix side data with the coded size unchanged.
    assert (stream["width"], stream["height"]) == (64, 32)
    assert [d.get("rotation") for d in stream["side_data_list"]] == [90]

    info = probe_video(rotated)
    assert (info.width, info.height) == (32, 64)
    # ffmpeg applies the rotation when decoding too, so the decoded frames are portrait.
    assert decode_clip(rotated, 4, 64, 32, 24).shape == (4, 64, 32, 3)


@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "libx264"), (".webm", "libvpx-vp9")])
def test_probe_counts_packets_without_nb_frames(tmp_path: Path, suffix: str, codec: str) -> None:
    info = probe_video(make_clip(tmp_path / f"clip{suffix}", frames=37, codec=codec))
    assert (info.width, info.height, info.frame_count, info.fps) == (64, 32, 37, 24.0)
    assert info.duration == pytest.approx(37 / 24, abs=0.01)


def test_probe_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(ProbeError) as caught:
        probe_video(empty)
    assert caught.value.reason == "empty_file"
    assert str(empty) in caught.value.message


def test_probe_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProbeError) as caught:
        probe_video(tmp_path / "missing.mp4")
    assert caught.value.reason == "unreadable"


def test_probe_text_file_named_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n", encoding="utf-8")
    with pytest.raises(ProbeError) as caught:
        probe_video(fake)
    assert caught.value.reason in {"corrupt", "not_video"}
    assert str(fake) in caught.value.message
    assert "Invalid data" in caught.value.message


def test_probe_still_image_is_not_video(tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x32", "-frames:v", "1", str(image))
    with pytest.raises(ProbeError) as caught:
        probe_video(image)
    assert caught.value.reason == "not_video"


def test_probe_audio_only(tmp_path: Path) -> None:
    audio = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", str(audio))
    with pytest.raises(ProbeError) as caught:
        probe_video(audio)
    assert caught.value.reason == "audio_only"


def test_probe_with_audio(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=32x32:rate=24", "-f", "lavfi", "-i", "sine",
        "-frames:v", "24", "-t", "1", "-c:v", "libx264", "-c:a", "aac", str(clip),
    )  # fmt: skip
    info = probe_video(clip)
    assert info.has_audio and info.frame_count == 24


def test_decode_audio_takes_the_window_s_time_span(tmp_path: Path) -> None:
    """A window's audio at the requested rate and channels, exactly its samples: a 1 kHz tone
        whose soundtrack (0.5 s) ends inside the second window, padded with silence there, and none
    after it; a file
        named like an option or protocol is read as a file; no audio stream is a DecodeError."""
    clip = tmp_path / "-concat:tone.mkv"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=32x32:rate=24", "-f", "lavfi", "-i",
        "sine=frequency=1000:duration=0.5", "-t", "1", "-c:v", "libx264",
        "-c:a", "flac", "file:" + str(clip),
    )  # fmt: skip
    first = decode_audio(clip, 0.0, 17 / 24, 16000, 2)
    assert first.shape == (2, round(17 / 24 * 16000)) and first.dtype == np.float32
    assert np.allclose(first[0], first[1])  # a mono tone on both channels
    spectrum = np.abs(np.fft.rfft(first[0, :8000]))
    assert round(np.argmax(spectrum) * 16000 / 8000) == 1000
    later = decode_audio(clip, 8 / 24, 17 / 24, 16000, 1)
    tone_end = round((0.5 - 8 / 24) * 16000)
    assert np.abs(later[0, : tone_end - 200]).max() > 0.1  # the tone, then silence
    assert not later[0, tone_end + 200 :].any()
    assert decode_audio(clip, 0.75, 0.2, 16000) is None  # after the soundtrack: none, not zeros
    with pytest.raises(DecodeError, match="no audio decoded"):
        decode_audio(make_clip(tmp_path / "mute.mp4", frames=12), 0.0, 0.5, 16000)


def test_hostile_file_name_is_just_a_file(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "-concat:x.mp4", frames=12)
    info = probe_video(clip)
    assert (info.width, info.height, info.frame_count) == (64, 32, 12)
    assert decode_clip(clip, 8, 16, 16, 16).shape == (8, 16, 16, 3)


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(path) == expected


def test_decode_clip_shape_and_content(tmp_path: Path) -> None:
    clip = tmp_path / "red.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=red:size=64x32:rate=24", "-frames:v", "24",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip),
    )  # fmt: skip
    frames = decode_clip(clip, frames=16, height=24, width=24, fps=16)
    assert frames.shape == (16, 24, 24, 3)
    assert frames.dtype == np.uint8
    mean = frames.reshape(-1, 3).mean(axis=0)
    assert mean[0] > 200 and mean[1] < 40 and mean[2] < 40


def test_decode_clip_crops_the_center(tmp_path: Path) -> None:
    # Left half black, right half white: a square center crop keeps both halves.
    clip = tmp_path / "halves.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:size=128x32:rate=24",
        "-vf", "drawbox=x=64:y=0:w=64:h=32:c=white:t=fill",
        "-frames:v", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip),
    )  # fmt: skip
    frame = decode_clip(clip, frames=1, height=16, width=16, fps=24)[0].astype(int)
    assert frame[:, :6].mean() < 30
    assert frame[:, -6:].mean() > 225


def rgb24_decode(
    path: Path, frames: int, height: int, width: int, fps: float, sar: str, full_chroma: bool
) -> np.ndarray:
    """The reference: ffmpeg's packed rgb24 with decode_clip's filters (what it asked for before).

    With `full_chroma`, the RGB conversion interpolates chroma for every pixel
    (swscale's full_chroma_int), as it always does for planar gbrp.
    """
    square = "scale=w=trunc(iw*sar/2)*2:h=ih,setsar=1," if sar != "1:1" else ""
    flags = ":flags=bicubic+full_chroma_int" if full_chroma else ""
    filters = (
        f"fps={fps},{square}scale=w={width}:h={height}:force_original_aspect_ratio=increase"
        f"{flags},setsar=1,crop={width}:{height}"
    )
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", "file:" + str(path),
         "-vf", filters, "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, dtype=np.uint8).reshape(frames, height, width, 3)


@pytest.mark.parametrize(
    ("size", "sar", "frames", "height", "width", "full_chroma"),
    [
        # Scaled-to-cover width odd (85, 53, 53): swscale interpolates chroma for every pixel
        # in rgb24 too, so gbrp gives exactly the pixels of the former rgb24 path. This covers
        # a 16:9 source cropped to 480x832 or 256x256, the benchmark's case.
        ("160x90", "1:1", 12, 48, 64, False),  # downscale, crop the sides
        ("32x24", "1:1", 6, 40, 40, False),  # upscale
        ("64x48", "4:3", 5, 30, 30, False),  # non-square pixels made square first
        # Scaled-to-cover width even (120, 70, 114): packed rgb24 shares one chroma value
        # per pair of pixels there, gbrp does not; gbrp equals rgb24 with full_chroma_int.
        ("64x48", "1:1", 6, 90, 50, True),
        ("64x48", "4:3", 5, 40, 40, True),
        ("160x90", "1:1", 4, 64, 64, True),
    ],
)
def test_decode_clip_pixels_match_rgb24(
    tmp_path: Path,
    size: str,
    sar: str,
    frames: int,
    height: int,
    width: int,
    full_chroma: bool,
) -> None:
    # Colourful, noisy content so that chroma handling and every channel matter.
    clip = tmp_path / "clip.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24",
        "-vf", f"noise=alls=40:allf=t,setsar={sar.replace(':', '/')}", "-frames:v", "24",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "file:" + str(clip),
    )  # fmt: skip
    ours = decode_clip(clip, frames, height, width, 16, sample_aspect_ratio=sar)
    expected = rgb24_decode(clip, frames, height, width, 16, sar, full_chroma)
    assert ours.shape == expected.shape == (frames, height, width, 3)
    assert ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, expected)


def test_decode_clip_too_many_frames(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "short.mp4", frames=12)
    with pytest.raises(DecodeError, match=r"short\.mp4: decoded 8 of 20 frames"):
        decode_clip(clip, frames=20, height=16, width=16, fps=16)


def test_decode_clip_corrupt_file(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video")
    with pytest.raises(DecodeError, match="decoded 0 of 4 frames"):
        decode_clip(fake, frames=4, height=16, width=16, fps=16)


def test_frames_at_fps_formula() -> None:
    assert frames_at_fps(40, 24, 16) == 27  # 26.67 rounds up, where floor would say 26
    assert frames_at_fps(36, 24, 16) == 24
    assert frames_at_fps(37, 24, 12) == 18  # exact tie rounds down
    assert frames_at_fps(24, 24, 24) == 24
    assert frames_at_fps(0, 24, 16) == 0


@pytest.mark.parametrize(
    ("frames", "rate", "fps", "suffix"),
    [
        (40, "24", 16, ".mp4"),
        (37, "24", 16, ".mp4"),
        (37, "24", 12, ".mp4"),  # tie: mp4 yields 19 frames
        (37, "24", 12, ".mkv"),  # tie: millisecond timestamps yield 18 frames
        (40, "24", 7.5, ".mkv"),
        (43, "30000/1001", 16, ".mp4"),
        (38, "30000/1001", 7.5, ".mp4"),
        (25, "25", 16, ".webm"),
    ],
)
def test_frames_at_fps_matches_ffmpeg(
    tmp_path: Path, frames: int, rate: str, fps: float, suffix: str
) -> None:
    codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    clip = make_clip(
        tmp_path / f"clip{suffix}", size="32x32", frames=frames, rate=rate, codec=codec
    )
    info = probe_video(clip)
    expected = frames_at_fps(info.frame_count, info.fps, fps)
    actual = count_frames_at(clip, fps)
    # Exactly half-way, the container's timestamp precision decides; we take the lower count.
    is_tie = (frames * Fraction(str(fps)) / Fraction(rate)).denominator == 2
    assert expected == actual or (is_tie and expected == actual - 1)
    decode_clip(clip, frames=expected, height=8, width=8, fps=fps)

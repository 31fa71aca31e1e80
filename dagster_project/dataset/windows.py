"""Which windows of a clip become training samples (`data.frame_extraction`).

A clip longer than its bucket gives more than one window of the bucket's length:
- `head`: the first window only (what one window per clip always meant);
- `chunks` (default): the clip cut into non-overlapping windows, one after the other; above
  `data.max_windows_per_clip`, that many of them spread evenly over the clip;
- `uniform`: `data.max_windows_per_clip` windows spread evenly over the clip (they overlap when
  the clip is shorter than that many windows).

A window is known by its start frame, counted at the bucket's frame rate. Each is one training
sample with its own cache entry; the split and the near-duplicate groups stay per clip.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster_project.core.params import DataParams, FrameExtraction


def _spread(count: int, among: int) -> list[int]:
    """`count` indices spread evenly over range(among), first and last included."""
    if count >= among:
        return list(range(among))
    if count == 1:
        return [0]
    return sorted({round(i * (among - 1) / (count - 1)) for i in range(count)})


def window_starts(
    available: int, length: int, mode: FrameExtraction, max_windows: int
) -> list[int]:
    """The start frames of a clip's windows: `available` frames at the bucket's rate, windows of
    `length` frames; none when the clip is shorter than one window."""
    if available < length or length <= 0:
        return []
    if mode == "head":
        return [0]
    if mode == "chunks":
        chunks = available // length
        return [i * length for i in _spread(min(max_windows, chunks), chunks)]
    last = available - length  # uniform: starts from 0 to the last that fits
    if max_windows == 1 or last == 0:
        return [0]
    return sorted({round(i * last / (max_windows - 1)) for i in range(max_windows)})


@dataclass(frozen=True)
class WindowRule:
    """`data.frame_extraction` and `data.max_windows_per_clip`."""

    mode: FrameExtraction = "chunks"
    max_windows: int = 16

    @classmethod
    def of(cls, data: DataParams) -> WindowRule:
        return cls(data.frame_extraction, data.max_windows_per_clip)

    def starts(self, available: int, length: int) -> list[int]:
        """The window starts of a clip with `available` frames, in a bucket of `length`."""
        return window_starts(available, length, self.mode, self.max_windows)

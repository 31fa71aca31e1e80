"""Near-duplicate clips: copies of one content under other names are found before the split
and counted as one content.

What counts as a copy: a re-encode (another quality or size), a crop of up to 10% per side, a
trim keeping at least half of the frames, a horizontal mirror, or these combined. Different
patterns of one generator (the sample data) are not copies.

How (on the clips' thumbnails, small grey frames at their own frame rate):
1. candidates: each clip's `NEIGHBOURS` nearest by a cheap sketch (a few frames' blurred
   centres at two crops, mirror-symmetrized and pooled to 8x8) among the clips whose displayed
   aspect ratios are within what a 10% crop allows, whose frame counts are within what a trim
   to half allows and whose grey-level histograms are alike; found with blocked matrix
   products, so the search grows with the clips, not their pairs;
2. the shorter clip is placed in time in the longer one by the brightness of its centre, frame
   by frame (a trim keeps frame timing);
3. at the best few placements, the centre of a few of its frames (70% of the side: inside the
   other clip whatever the crop) is matched, mirrored or not, at the scales a crop allows,
   over every position in the other clip's frames; the similarity is the mean best normalized
   cross-correlation, 1.0 for the same pictures. Clips of equal length are matched both ways
   round (each one's centre shrunk into the other), so no order of the two counts.
Clips at or above the threshold are linked; linked clips form one group, named by its
smallest sha256 (the `content` of each of its clips).

Cost: one match is a few dozen small correlations by FFT (a few ms), and each clip is matched
with at most `NEIGHBOURS` others; a clip added later is searched against the others and
matched with its own neighbours only (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dagster_project.core.progress import Progress

MATCHER = "thumbs48-blur2-fft-v3"  # changes when matching changes: remembered scores are redone
CENTER = 0.7  # the part of a frame's side matched: inside the other clip for crops <= 10%
MAX_CROP = 0.1  # per side
# one clip's height in the other's, for crops <= 10% per side (the width follows the aspects)
SCALES = (0.8, 0.9, 1.0, 1.11, 1.25)
SHRINK = tuple(s for s in SCALES if s <= 1.0)
PROBES = 4  # frames of the shorter clip matched
PLACEMENTS = 3  # time offsets tried
MIN_KEPT = 0.5  # a trim keeps at least half of the frames
HISTOGRAM_BINS = 16
MIN_HISTOGRAM_OVERLAP = 0.55  # copies measured >= 0.64 (benchmarks/near_duplicates.py)
MIN_TEXTURE = 2.0  # grey levels (standard deviation) a probe's centre needs
BLUR_SIGMA = 2.0  # pixels of a thumbnail: resampling a crop or a re-encode moves fine detail


def _aspect_fits(a: float, b: float) -> bool:
    """Whether one displayed aspect ratio can come from the other by cropping <= 10%/side."""
    most = 1 / (1 - 2 * MAX_CROP) * 1.02  # a little slack for rounding to even sizes
    return 1 / most <= a / b <= most


def _histogram(frames: np.ndarray) -> np.ndarray:
    counts = np.bincount(frames.reshape(-1) // (256 // HISTOGRAM_BINS), minlength=HISTOGRAM_BINS)
    return counts / counts.sum()


SKETCH = "centre8-sym-v3"  # changes when sketches or their storage change: made again
SKETCH_FRAMES = 4  # frames of a clip its sketch keeps, spread in time
SKETCH_SIDE = 8
SKETCH_CENTRES = (CENTER, CENTER * (1 - 2 * MAX_CROP))  # the parts of a frame sketched
NEIGHBOURS = 4  # candidates per clip: its nearest by sketch that pass the cheap filters
BLOCK_SCORES = 1 << 22  # similarities held at once (16 MB): the queries per block follow


@dataclass(frozen=True)
class Sketch:
    """What the search keeps of a clip (a few hundred numbers): its thumbnail count, its grey
    histogram and a few frames' descriptors."""

    frames: int
    histogram: np.ndarray  # [HISTOGRAM_BINS], sums to 1
    # [SKETCH_FRAMES x len(SKETCH_CENTRES), SKETCH_SIDE**2] float32, rows of unit norm
    descriptor: np.ndarray


@torch.no_grad()
def sketch(frames: np.ndarray) -> Sketch:
    """A clip's sketch from its thumbnails [T, S, S]: robust to a re-encode (blurred, pooled,
    zero-mean), a crop (the centre, and the centre of the centre: a copy cropped by 10% a side
    shows the original's inner 80% as its whole), a mirror (symmetrized) and a trim (frames
    spread in time, compared frame against frame)."""
    picks = np.linspace(0, len(frames) - 1, SKETCH_FRAMES).round().astype(int)
    x = _blurred(frames[picks])
    side = x.shape[-1]
    rows = []
    for part in SKETCH_CENTRES:
        edge = round(side * (1 - part) / 2)
        centre = x[:, edge : side - edge, edge : side - edge]
        centre = (centre + centre.flip(-1)) / 2
        rows.append(F.adaptive_avg_pool2d(centre.unsqueeze(1), SKETCH_SIDE).flatten(1))
    x = torch.cat(rows)
    x = x - x.mean(dim=1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-6)
    return Sketch(len(frames), _histogram(frames), x.numpy().astype(np.float32))


@torch.no_grad()
def candidate_pairs(
    sketches: list[Sketch], aspects: list[float], queries: list[int], k: int = NEIGHBOURS
) -> set[tuple[int, int]]:
    """Index pairs (i < j) worth matching: each query clip with its `k` nearest clips by sketch
    among those whose aspect, length and grey levels allow one to be a copy of the other (the
    cheap filters). Nearness: each sketched frame of one clip finds its best counterpart in the
    other (any frame, either crop), and the mean over the frames is taken, the better of the
    two ways round (a trimmed copy's frames all lie in its source; the next segment of a long
    recording shares only the frames at the cut). Blocked matrix products, each block's scores
    at most `BLOCK_SCORES` numbers: the cost grows with queries x clips, never with the pairs
    matched, and the memory not at all."""
    if len(sketches) < 2 or not queries:
        return set()
    index = torch.from_numpy(np.stack([s.descriptor for s in sketches]))  # [N, C*T, d]
    count, rows = index.shape[:2]
    centres = len(SKETCH_CENTRES)
    flat = index.flatten(0, 1)  # [N*C*T, d]
    histograms = torch.from_numpy(np.stack([s.histogram for s in sketches])).float()  # [N, B]
    lengths = torch.tensor([s.frames for s in sketches], dtype=torch.float32)
    log_aspects = torch.tensor(aspects, dtype=torch.float64).log()
    most = math.log(1 / (1 - 2 * MAX_CROP) * 1.02)  # as _aspect_fits
    step = max(1, BLOCK_SCORES // (rows * rows * count))
    pairs: set[tuple[int, int]] = set()
    for start in range(0, len(queries), step):
        block = torch.tensor(queries[start : start + step])
        scores = (index[block].flatten(0, 1) @ flat.T).view(len(block), rows, count, rows)
        # rows are [centre, frame]: a frame's best over the other clip's rows and its own crops
        ours = scores.amax(dim=3).view(len(block), centres, -1, count).amax(1).mean(1)
        theirs = scores.amax(dim=1).view(len(block), count, centres, -1).amax(2).mean(2)
        best = torch.maximum(ours, theirs)  # [b, N]
        del scores
        short = torch.minimum(lengths[block, None], lengths[None])
        long = torch.maximum(lengths[block, None], lengths[None])
        overlap = torch.minimum(histograms[block, None], histograms[None]).sum(-1)
        fits = (
            ((log_aspects[block, None] - log_aspects[None]).abs() <= most)
            & (short >= MIN_KEPT * long * 0.95)
            & (overlap >= MIN_HISTOGRAM_OVERLAP)
        )
        fits[torch.arange(len(block)), block] = False  # not itself
        best = best.masked_fill(~fits, -2.0)
        top = best.topk(min(k, count - 1), dim=1)
        for row, i in enumerate(block.tolist()):
            for score, j in zip(top.values[row].tolist(), top.indices[row].tolist(), strict=True):
                if score > -2.0:
                    pairs.add((min(i, j), max(i, j)))
    return pairs


def _placements(long: torch.Tensor, short: torch.Tensor) -> list[int]:
    """The best time offsets of `short` in `long`, by the brightness of the frames' centres."""
    side = long.shape[-1]
    inner = slice(side // 4, side - side // 4)
    a, b = long[:, inner, inner].mean((1, 2)), short[:, inner, inner].mean((1, 2))
    offsets = long.shape[0] - short.shape[0] + 1
    b = b - b.mean()
    if float(b.norm()) < 1e-3:  # no change in time to align by: spread the tries
        return sorted({int(k) for k in np.linspace(0, offsets - 1, PLACEMENTS)})
    windows = a.unfold(0, short.shape[0], 1)  # [offsets, len(short)]
    windows = windows - windows.mean(1, keepdim=True)
    score = (windows @ b) / (windows.norm(dim=1) * b.norm() + 1e-6)
    return score.topk(min(PLACEMENTS, offsets)).indices.tolist()


class _Images:
    """Images [P, S, S] prepared once for matching templates of any size against them: their
    Fourier transforms and integral images (float64: sums of squares over a window cancel)."""

    def __init__(self, images: torch.Tensor) -> None:
        x = images.double()
        self.side = x.shape[-1]
        self.spectrum = torch.fft.rfft2(x)
        self.sums = F.pad(x.cumsum(1).cumsum(2), (1, 0, 1, 0))
        self.squares = F.pad((x * x).cumsum(1).cumsum(2), (1, 0, 1, 0))

    def best_match(self, templates: torch.Tensor) -> torch.Tensor:
        """Per image, the highest normalized cross-correlation of its template [P, h, w] over
        every position of it -> [P]. Products by FFT (circular, read only where the template
        fits: no wrap), window sums from the integral images."""
        _, h, w = templates.shape
        t = templates.double()
        t = t - t.mean((1, 2), keepdim=True)
        t_norm = t.flatten(1).norm(dim=1)
        size = (self.side, self.side)
        products = torch.fft.irfft2(self.spectrum * torch.fft.rfft2(t, s=size).conj(), s=size)[
            :, : self.side - h + 1, : self.side - w + 1
        ]

        def window(a: torch.Tensor) -> torch.Tensor:
            return a[:, h:, w:] - a[:, :-h, w:] - a[:, h:, :-w] + a[:, :-h, :-w]

        sums = window(self.sums)
        spread = (window(self.squares) - sums * sums / (h * w)).clamp(min=0).sqrt()
        ncc = products / (spread * t_norm[:, None, None] + 1e-6)
        ncc = ncc.masked_fill(spread < 1e-3, 0.0)  # a flat window matches nothing
        return (ncc.flatten(1).amax(dim=1) * (t_norm > 1e-3)).float()


@functools.cache
def _blur_matrix(side: int) -> torch.Tensor:
    """The Gaussian blur of one image axis as a matrix (the image's edge repeated past it):
    `M @ x @ M.T` blurs a frame; a matrix product is far cheaper than a convolution here."""
    reach = math.ceil(2.5 * BLUR_SIGMA)
    taps = torch.arange(-reach, reach + 1)
    kernel = torch.exp(-(taps.double() ** 2) / (2 * BLUR_SIGMA**2))
    kernel = kernel / kernel.sum()
    matrix = torch.zeros(side, side, dtype=torch.float64)
    rows = torch.arange(side)
    for offset, weight in zip(taps.tolist(), kernel.tolist(), strict=True):
        source = (rows + offset).clamp(0, side - 1)
        matrix.index_put_((rows, source), torch.full((side,), weight, dtype=matrix.dtype), True)
    return matrix.float()


def _blurred(frames: np.ndarray) -> torch.Tensor:
    """Thumbnails as float, Gaussian-blurred: copies differ in detail finer than a pixel."""
    x = torch.from_numpy(frames).float()
    return _blur_matrix(x.shape[1]) @ x @ _blur_matrix(x.shape[2]).T


@torch.no_grad()
def clip_similarity(
    a: np.ndarray, b: np.ndarray, aspect_a: float = 1.0, aspect_b: float = 1.0
) -> float:
    """How alike two clips' thumbnails [T, S, S] are, allowing a crop, trim, mirror and
    re-encode: 1.0 for the same pictures, near 0 for unrelated ones. The displayed aspect
    ratios tell the crop's shape: one clip's width scale over its height scale in the other is
    the ratio of their aspects, so only the overall scale is searched."""
    return _similarity(_blurred(a), _blurred(b), aspect_a, aspect_b)


def _similarity(a: torch.Tensor, b: torch.Tensor, aspect_a: float, aspect_b: float) -> float:
    """`clip_similarity` of blurred thumbnails: the shorter clip's centre searched in the longer
    clip at every scale; clips of equal length both ways round at the scales that shrink the
    centre searched, the better kept. So the score does not depend on which clip comes first,
    and a crop is found by shrinking its centre into its source, which keeps the detail that
    enlarging the source's centre would blur (a 10% crop of a fine texture: 0.89 against 0.86
    one way only, benchmarks/data_scale.py)."""
    if len(a) == len(b):
        return max(
            _one_way(a, b, aspect_a, aspect_b, SHRINK), _one_way(b, a, aspect_b, aspect_a, SHRINK)
        )
    if len(a) < len(b):
        return _one_way(b, a, aspect_b, aspect_a, SCALES)
    return _one_way(a, b, aspect_a, aspect_b, SCALES)


def _one_way(
    long_t: torch.Tensor,
    short_t: torch.Tensor,
    aspect_long: float,
    aspect_short: float,
    search: tuple[float, ...],
) -> float:
    """How well `short_t`'s centre is found in `long_t` (at least as many frames), its height
    scaled by each of `search`."""
    side = long_t.shape[-1]
    edge = round(side * (1 - CENTER) / 2)
    centres = short_t[:, edge : side - edge, edge : side - edge]
    # probe frames with texture in their centre, spread in time: a flat centre matches nothing
    flat = centres.flatten(1)  # the deviation in two passes: torch's std is 15x slower here
    spread = (flat - flat.mean(dim=1, keepdim=True)).square().mean(dim=1).sqrt()
    textured = (spread > MIN_TEXTURE).nonzero()[:, 0]
    if len(textured) == 0:
        return 0.0  # nothing to match by (a solid colour): never a copy
    probes = textured[torch.linspace(0, len(textured) - 1, PROBES).round().long().unique()]
    centres = centres[probes]
    offsets = _placements(long_t, short_t)
    ratio = aspect_short / aspect_long
    scales = [(s, s * ratio) for s in search if SCALES[0] / 1.05 <= s * ratio <= SCALES[-1] * 1.05]
    variants = torch.stack([centres, centres.flip(-1)])  # as it is, and mirrored
    # every (mirror, placement, probe) at once: one batch of convolutions per scale
    images = _Images(torch.cat([long_t[probes + offset] for offset in offsets]).repeat(2, 1, 1))
    best = 0.0
    for scale_y, scale_x in scales:
        size = (round(centres.shape[1] * scale_y), round(centres.shape[2] * scale_x))
        if max(size) > side:
            continue
        resized = F.interpolate(
            variants.flatten(0, 1).unsqueeze(1), size=size, mode="bilinear", antialias=True
        )[:, 0].unflatten(0, (2, len(probes)))
        templates = resized.unsqueeze(1).expand(-1, len(offsets), -1, -1, -1).flatten(0, 2)
        scores = images.best_match(templates).unflatten(0, (2, len(offsets), len(probes)))
        best = max(best, float(scores.mean(dim=2).max()))
    return best


def find_links(
    shas: list[str],
    sketches: list[Sketch | None],
    aspects: list[float],
    threshold: float,
    frames: Callable[[int], np.ndarray],
    scored: dict[tuple[str, str], float] | None = None,
    searched: set[str] | None = None,
    say: Callable[[str], None] = lambda line: None,
    neighbours: int = NEIGHBOURS,
) -> tuple[list[tuple[str, str, float]], dict[tuple[str, str], float]]:
    """The pairs of clips alike at `threshold` or above: (sha256, sha256, similarity).

    Clips without a sketch (None: they could not be decoded) link to nothing. Clips in
    `searched` were searched by an earlier run; the others are searched now, each matched with
    its `neighbours` nearest (all clips on a first run). `frames(i)` gives clip i's thumbnails (read
    only for the pairs matched now); `scored` holds the similarities of pairs matched before
    (sorted sha256 pairs), reused. Returns the links and every known pair's similarity among
    the current clips, to keep."""
    scored = scored or {}
    searched = searched or set()
    known = [i for i, s in enumerate(sketches) if s is not None]
    positions = {shas[i]: n for n, i in enumerate(known)}
    queries = [n for n, i in enumerate(known) if shas[i] not in searched]
    pairs = candidate_pairs(
        [sketches[i] for i in known], [aspects[i] for i in known], queries, neighbours
    )
    similarities = {
        pair: score
        for pair, score in scored.items()
        if pair[0] in positions and pair[1] in positions
    }
    todo = [
        (known[n], known[m])
        for n, m in sorted(pairs)
        if (min(shas[known[n]], shas[known[m]]), max(shas[known[n]], shas[known[m]]))
        not in similarities
    ]
    progress = Progress("near-duplicate matching", len(todo), say, unit="pairs")

    def match(pair: tuple[int, int]) -> float:
        a, b = pair
        score = _similarity(_blurred(frames(a)), _blurred(frames(b)), aspects[a], aspects[b])
        progress()
        return score

    # one match is many small operations: a pair per core, each on one PyTorch thread, does
    # about twice the pairs per second of one pair at a time on every thread (measured)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            scores = list(pool.map(match, todo))
    finally:
        torch.set_num_threads(threads)
    for (a, b), score in zip(todo, scores, strict=True):
        similarities[(min(shas[a], shas[b]), max(shas[a], shas[b]))] = score
    links = [(a, b, s) for (a, b), s in sorted(similarities.items()) if s >= threshold]
    return links, similarities


def content_groups(shas: list[str], links: list[tuple[str, str, float]]) -> dict[str, str]:
    """Each sha256's `content`: the smallest sha256 of the clips linked to it, directly or
    not (links to clips not in `shas` are ignored)."""
    parent = {sha: sha for sha in shas}

    def root(sha: str) -> str:
        while parent[sha] != sha:
            parent[sha] = parent[parent[sha]]
            sha = parent[sha]
        return sha

    for a, b, _ in links:
        if a in parent and b in parent:
            ra, rb = root(a), root(b)
            parent[max(ra, rb)] = min(ra, rb)
    return {sha: root(sha) for sha in shas}

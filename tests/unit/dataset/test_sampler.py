"""ResolutionSampler and the exposure guard built on its replay."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import numpy as np
import pytest

from dagster_project.dataset.exposure import plan_exposures
from dagster_project.dataset.sampler import ResolutionSampler, count_exposures

BUCKETS = ["a"] * 7 + ["b"] * 5 + ["c"] * 1


def take(sampler: ResolutionSampler, n: int) -> list[list[int]]:
    return list(islice(iter(sampler), n))


def test_every_batch_holds_one_bucket() -> None:
    for batch in take(ResolutionSampler(BUCKETS, batch_size=2, seed=1), 200):
        assert len(batch) == 2
        assert len({BUCKETS[i] for i in batch}) == 1


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    assert take(ResolutionSampler(BUCKETS, 2, seed=3), 50) == take(
        ResolutionSampler(BUCKETS, 2, seed=3), 50
    )
    assert take(ResolutionSampler(BUCKETS, 2, seed=3), 50) != take(
        ResolutionSampler(BUCKETS, 2, seed=4), 50
    )


def test_no_clip_is_lost_leftovers_carry_over() -> None:
    # 7 clips in "a" with batch 2 leave one over each pass: it must open the next pass
    buckets = BUCKETS[:-1]
    counts = Counter(i for batch in take(ResolutionSampler(buckets, 2), 600) for i in batch)
    assert set(counts) == set(range(len(buckets)))
    seen = [counts[i] for i in range(len(buckets))]
    assert max(seen) - min(seen) <= 2


def test_save_and_restore_resumes_the_exact_stream() -> None:
    whole = take(ResolutionSampler(BUCKETS, 2, seed=5), 40)
    first = ResolutionSampler(BUCKETS, 2, seed=5)
    head = take(first, 17)
    resumed = ResolutionSampler(BUCKETS, 2, seed=5)
    resumed.load_state_dict(first.state_dict())
    assert head + take(resumed, 23) == whole


def test_ranks_take_disjoint_clips_of_the_same_bucket() -> None:
    buckets = ["a"] * 7 + ["b"] * 6  # global batch 4: both buckets carry leftovers
    rank0 = take(ResolutionSampler(buckets, 2, seed=0, rank=0, world_size=2), 30)
    rank1 = take(ResolutionSampler(buckets, 2, seed=0, rank=1, world_size=2), 30)
    for b0, b1 in zip(rank0, rank1, strict=True):
        assert len(set(b0 + b1)) == 4
        assert {buckets[i] for i in b0 + b1} in ({"a"}, {"b"})


def test_exposure_counts_add_up() -> None:
    counts = count_exposures(BUCKETS, step_batch=2, steps=30, seed=0)
    assert sum(counts) == 60 and counts[12] == 0


@pytest.mark.parametrize(("steps", "verdict"), [(30, "ok"), (80, "warn"), (400, "error")])
def test_exposure_verdicts(steps: int, verdict: str) -> None:
    plan = plan_exposures(["a"] * 10, steps, 2, 1, 1, 0, max_exposures=50, warn_exposures=10)
    assert plan.verdict == verdict


def test_exposure_message_names_count_and_what_would_pass() -> None:
    plan = plan_exposures(["a"] * 10, 400, 2, 1, 1, 0, max_exposures=50, warn_exposures=10)
    message = plan.message()
    assert "400 steps x 2 samples/step over 10 training videos" in message
    assert "80.0 times on average" in message
    assert "above the limit of 50" in message
    assert "at least 16 training videos, or at most 250 steps" in message


def test_grad_accumulation_and_ranks_count_as_exposures() -> None:
    plan = plan_exposures(["a"] * 10, 50, 2, 2, 2, 0, max_exposures=50, warn_exposures=10)
    assert plan.samples_per_step == 8
    assert plan.mean == 40
    assert sum(plan.per_video) == 400


def test_buckets_smaller_than_a_batch_are_skipped_and_reported() -> None:
    sampler = ResolutionSampler(BUCKETS, batch_size=2)  # "c" holds a single clip
    assert sampler.skipped == {"c": [12]}
    assert all(12 not in batch for batch in take(sampler, 100))
    plan = plan_exposures(BUCKETS, 30, 2, 1, 1, 0, max_exposures=50, warn_exposures=10)
    assert plan.unused == 1 and plan.verdict == "warn"
    assert "1 clips are never shown" in plan.message()
    with pytest.raises(ValueError, match="no bucket holds a whole batch of 4 clips"):
        ResolutionSampler(["a", "a", "b"], batch_size=2, world_size=2)


def test_the_step_batch_is_the_same_however_it_is_split() -> None:
    """batch 4; batch 2 x 2 accumulation; 2 ranks x batch 2: the same clips at every step."""
    buckets = ["a"] * 9 + ["b"] * 6
    one = take(ResolutionSampler(buckets, 4, seed=2), 20)
    accumulated = take(ResolutionSampler(buckets, 2, seed=2, grad_accum=2), 40)
    assert [a + b for a, b in zip(accumulated[::2], accumulated[1::2], strict=True)] == one
    rank0 = take(ResolutionSampler(buckets, 2, seed=2, rank=0, world_size=2), 20)
    rank1 = take(ResolutionSampler(buckets, 2, seed=2, rank=1, world_size=2), 20)
    assert [a + b for a, b in zip(rank0, rank1, strict=True)] == one


@pytest.mark.parametrize("steps", [0, 1, 5, 6, 7, 40, 333])
def test_advance_lands_where_taking_the_batches_does(steps: int) -> None:
    buckets = ["a"] * 7 + ["b"] * 5 + ["c"] * 1
    taken = ResolutionSampler(buckets, 2, seed=4)
    stream = taken.step_batches()
    seen = [0] * len(buckets)
    for _ in range(steps):
        for index in next(stream):
            seen[index] += 1
    advanced = ResolutionSampler(buckets, 2, seed=4)
    counts = np.zeros(len(buckets), dtype=int)
    advanced.advance(steps, counts)
    assert counts.tolist() == seen
    assert take(advanced, 25) == take(taken, 25)  # and both go on with the same stream


def test_a_plan_far_over_the_limit_is_refused_from_the_mean_at_once() -> None:
    plan = plan_exposures(["a"] * 11, 1_000_000, 2, 1, 1, 0, max_exposures=50, warn_exposures=10)
    assert plan.per_video is None and plan.verdict == "error"
    assert "181818.2 times on average (not replayed" in plan.message()
    assert "at most 275 steps" in plan.message()
    near = plan_exposures(["a"] * 11, 500, 2, 1, 1, 0, max_exposures=50, warn_exposures=10)
    assert near.per_video is not None and sum(near.per_video) == 1000  # 90.9 < 2 x 50: exact


def windowed(steps: int, max_clip_exposures: float = 500) -> object:
    """One long clip of 20 windows and ten short clips of one, batch 2."""
    ids = ["long"] * 20 + [f"short{i}" for i in range(10)]
    windows = list(range(20)) + [0] * 10
    return plan_exposures(
        ["a"] * 30, steps, 2, 1, 1, 0, max_exposures=50, warn_exposures=10,
        contents=ids, windows=windows, clip_ids=ids, max_clip_exposures=max_clip_exposures,
    )  # fmt: skip


def test_the_guard_counts_per_window_and_per_clip_and_names_the_binding_limit() -> None:
    fine = windowed(60)  # 120 exposures over 30 windows: 4 each, the long clip 80
    assert (fine.videos, fine.samples, fine.clips) == (30, 30, 11)
    assert fine.verdict == "ok" and fine.worst_content == max(fine.per_content)
    assert sum(fine.per_content) == 120 and len(fine.per_content) == 11
    assert "training windows of 11 videos" in fine.message()
    # each window within 50, the long clip's 20 windows together over its limit of 200
    clip_bound = windowed(600, max_clip_exposures=200)
    assert clip_bound.worst <= 50 < clip_bound.worst_content
    assert clip_bound.binding == "content" and clip_bound.verdict == "error"
    assert "guard.max_clip_exposures: the binding limit" in clip_bound.message()
    # a window over 50: the per-window limit binds
    window_bound = windowed(900)
    assert window_bound.binding == "sample"
    assert "per window (guard.max_exposures; the binding limit)" in window_bound.message()

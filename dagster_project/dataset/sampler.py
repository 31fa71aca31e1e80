"""ResolutionSampler: an endless stream of same-bucket batches, sharded across ranks.

Each pass shuffles every bucket (seeded by (seed, pass)) and cuts it into global batches of
`batch_size * world_size` clips; the batches of all buckets are then shuffled together. A bucket's
leftovers (fewer than a global batch) are not dropped: they open that bucket in the next pass.
Every rank walks the same global batch list and takes its own disjoint slice, so all ranks take
same-bucket batches at every step. The state (pass, position, carried leftovers) is a small dict:
saving and restoring it resumes the exact stream.

A bucket with fewer clips than one global batch cannot fill a batch without repeating a clip
(within the batch or across ranks): it is left out and named in `skipped`, and the exposure
guard reports its clips as never seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np


class ResolutionSampler:
    """Yield lists of dataset indices; every list holds clips of one bucket."""

    def __init__(
        self,
        buckets: Sequence[str],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not buckets:
            raise ValueError("ResolutionSampler needs at least one clip")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.batch_size = batch_size
        self.global_batch = batch_size * world_size
        self.seed = seed
        self.rank = rank
        members: dict[str, list[int]] = {}
        for index, bucket in enumerate(buckets):
            members.setdefault(bucket, []).append(index)
        self.skipped = {b: m for b, m in sorted(members.items()) if len(m) < self.global_batch}
        self._members = {b: m for b, m in sorted(members.items()) if b not in self.skipped}
        if not self._members:
            sizes = ", ".join(f"{b}: {len(m)}" for b, m in self.skipped.items())
            raise ValueError(
                f"no bucket holds a whole batch of {self.global_batch} clips "
                f"(batch_size x processes); clips per bucket: {sizes}"
            )
        self._pass = 0
        self._position = 0
        self._carry: dict[str, list[int]] = {}  # leftovers entering the current pass

    def _plan_pass(self) -> tuple[list[list[int]], dict[str, list[int]]]:
        """The global batches of the current pass and the leftovers it hands to the next."""
        rng = np.random.default_rng([self.seed, self._pass])
        batches: list[list[int]] = []
        leftovers: dict[str, list[int]] = {}
        for bucket, members in self._members.items():
            carried = self._carry.get(bucket, [])
            # carried clips first; their second appearance goes last, away from the first
            fresh = [i for i in rng.permutation(members).tolist() if i not in carried]
            again = [i for i in rng.permutation(carried).tolist()]
            queue = carried + fresh + again
            cut = len(queue) - len(queue) % self.global_batch
            batches += [queue[i : i + self.global_batch] for i in range(0, cut, self.global_batch)]
            if queue[cut:]:
                leftovers[bucket] = queue[cut:]
        order = rng.permutation(len(batches)).tolist()
        return [batches[i] for i in order], leftovers

    def global_batches(self) -> Iterator[list[int]]:
        """The endless stream of global batches (all ranks' clips), from the current state."""
        while True:
            batches, leftovers = self._plan_pass()
            while self._position < len(batches):
                batch = batches[self._position]
                self._position += 1
                yield batch
            self._pass, self._position, self._carry = self._pass + 1, 0, leftovers

    def __iter__(self) -> Iterator[list[int]]:
        start = self.rank * self.batch_size
        for batch in self.global_batches():
            yield batch[start : start + self.batch_size]

    def state_dict(self) -> dict:
        return {"pass": self._pass, "position": self._position, "carry": self._carry}

    def load_state_dict(self, state: dict) -> None:
        self._pass = int(state["pass"])
        self._position = int(state["position"])
        self._carry = {k: list(v) for k, v in state["carry"].items()}


def count_exposures(
    buckets: Sequence[str], batch_size: int, world_size: int, micro_steps: int, seed: int
) -> list[int]:
    """Replay a planned run without training: how many times each clip will be seen."""
    sampler = ResolutionSampler(buckets, batch_size, seed=seed, world_size=world_size)
    seen: Counter[int] = Counter()
    stream = sampler.global_batches()
    for _ in range(micro_steps):
        seen.update(next(stream))
    return [seen[i] for i in range(len(buckets))]

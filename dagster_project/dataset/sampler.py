"""ResolutionSampler: an endless stream of same-bucket batches, sharded across ranks.

The unit is the optimizer step: each step takes `batch_size x grad_accum x world_size` clips of
one bucket (a step batch); rank r's m-th micro-batch of the step is its slice
`(m * world_size + r) * batch_size`. So one process with batch 4, batch 2 with 2 accumulation
steps, and 2 processes with batch 2 all see the same clips at every optimizer step.

Each pass shuffles every bucket (seeded by (seed, pass)) and cuts it into step batches; the
batches of all buckets are then shuffled together. A bucket's leftovers (fewer than a step
batch) are not dropped: they open that bucket in the next pass. The state (pass, position in
steps, carried leftovers) is a small JSON-able dict: saving and restoring it resumes the exact
stream, and `advance(steps)` moves a fresh sampler to where a run stopped without replaying its
batches one by one.

A bucket with fewer clips than one step batch cannot fill a batch without repeating a clip
(within the step or across ranks): it is left out and named in `skipped`, and the exposure
guard reports its clips as never seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class ResolutionSampler:
    """Yield lists of dataset indices (a rank's micro-batches); each holds clips of one bucket."""

    def __init__(
        self,
        buckets: Sequence[str],
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
    ) -> None:
        if not buckets:
            raise ValueError("ResolutionSampler needs at least one clip")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.world_size = world_size
        self.step_batch = batch_size * grad_accum * world_size
        self.clips = len(buckets)
        self.seed = seed
        self.rank = rank
        members: dict[str, list[int]] = {}
        for index, bucket in enumerate(buckets):
            members.setdefault(bucket, []).append(index)
        self.skipped = {b: m for b, m in sorted(members.items()) if len(m) < self.step_batch}
        self._members = {
            b: np.array(m) for b, m in sorted(members.items()) if b not in self.skipped
        }
        if not self._members:
            sizes = ", ".join(f"{b}: {len(m)}" for b, m in self.skipped.items())
            raise ValueError(
                f"no bucket holds a whole batch of {self.step_batch} clips "
                f"(batch_size x grad_accum x processes); clips per bucket: {sizes}"
            )
        self._pass = 0
        self._position = 0  # step batches of the current pass already taken
        self._carry: dict[str, list[int]] = {}  # leftovers entering the current pass

    def _queues(self, carry: dict[str, list[int]]) -> tuple[np.random.Generator, dict]:
        """Each bucket's clip order in the current pass (cut into step batches from the front;
        the tail that does not fill one is carried), and the pass's generator."""
        rng = np.random.default_rng([self.seed, self._pass])
        queues = {}
        for bucket, members in self._members.items():
            carried = np.array(carry.get(bucket, []), dtype=np.int64)
            # carried clips first; their second appearance goes last, away from the first
            permuted = rng.permutation(members)
            fresh = permuted[~np.isin(permuted, carried)]
            again = rng.permutation(carried)
            queues[bucket] = np.concatenate([carried, fresh, again])
        return rng, queues

    def _cut(self, queue: np.ndarray) -> int:
        return len(queue) - len(queue) % self.step_batch

    def _plan_pass(self) -> tuple[list[np.ndarray], dict[str, list[int]]]:
        """The step batches of the current pass, in order, and the leftovers it carries on."""
        rng, queues = self._queues(self._carry)
        batches = []
        for queue in queues.values():
            cut = self._cut(queue)
            batches += [queue[i : i + self.step_batch] for i in range(0, cut, self.step_batch)]
        order = rng.permutation(len(batches))
        return [batches[i] for i in order], self._leftovers(queues)

    def _leftovers(self, queues: dict[str, np.ndarray]) -> dict[str, list[int]]:
        return {
            b: q[self._cut(q) :].tolist() for b, q in queues.items() if len(q) % self.step_batch
        }

    def step_batches(self) -> Iterator[list[int]]:
        """The endless stream of step batches (every rank's clips), from the current state."""
        while True:
            batches, leftovers = self._plan_pass()
            while self._position < len(batches):
                batch = batches[self._position]
                self._position += 1
                yield batch.tolist()
            self._pass, self._position, self._carry = self._pass + 1, 0, leftovers

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.step_batches():
            for micro in range(self.grad_accum):
                start = (micro * self.world_size + self.rank) * self.batch_size
                yield batch[start : start + self.batch_size]

    def advance(self, steps: int, counts: np.ndarray | None = None) -> None:
        """Move the state `steps` step batches on, as if they had been taken; add each clip's
        appearances to `counts` (length = clips) if given. Whole passes are counted from the
        bucket orders alone, so the cost follows the number of passes, not of steps."""
        while steps > 0:
            rng, queues = self._queues(self._carry)
            in_pass = sum(self._cut(q) for q in queues.values()) // self.step_batch
            if self._position == 0 and steps >= in_pass:
                if counts is not None:
                    shown = [q[: self._cut(q)] for q in queues.values()]
                    counts += np.bincount(np.concatenate(shown), minlength=len(counts))
                self._pass, self._carry = self._pass + 1, self._leftovers(queues)
                steps -= in_pass
                continue
            batches, leftovers = self._plan_pass()
            taken = batches[self._position : self._position + steps]
            if counts is not None and taken:
                counts += np.bincount(np.concatenate(taken), minlength=len(counts))
            self._position += len(taken)
            steps -= len(taken)
            if self._position == len(batches):
                self._pass, self._position, self._carry = self._pass + 1, 0, leftovers

    def state_dict(self) -> dict:
        return {"pass": self._pass, "position": self._position, "carry": self._carry}

    def load_state_dict(self, state: dict) -> None:
        self._pass = int(state["pass"])
        self._position = int(state["position"])
        self._carry = {k: [int(i) for i in v] for k, v in state["carry"].items()}


def count_exposures(buckets: Sequence[str], step_batch: int, steps: int, seed: int) -> list[int]:
    """Replay a planned run without training: how many times each clip will be seen in `steps`
    optimizer steps of `step_batch` clips (batch x grad_accum x processes)."""
    sampler = ResolutionSampler(buckets, step_batch, seed=seed)
    counts = np.zeros(len(buckets), dtype=np.int64)
    sampler.advance(steps, counts)
    return counts.tolist()

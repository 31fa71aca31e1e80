"""The training loop's clock: seconds per optimizer step (start-up, evaluations and checkpoint
writes left out), the share of it spent waiting for batches, and what each pause cost."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class StepTimer:
    """Time a run's steps. The first step pays for start-up, so the clock starts after it;
    `pause` spans (an evaluation, a checkpoint) are taken out of the step time."""

    def __init__(self) -> None:
        self._since = time.perf_counter()  # start of the timed span
        self._step_start = self._since
        self.steps = 0  # timed steps
        self.data_wait = 0.0  # seconds waiting for batches, in timed steps
        self.pauses: dict[str, list[float]] = defaultdict(list)

    def start_step(self) -> None:
        self._step_start = time.perf_counter()

    @contextmanager
    def waiting(self, timed: bool) -> Iterator[None]:
        """Time spent waiting for a batch (counted in a timed step only)."""
        started = time.perf_counter()
        yield
        if timed:
            self.data_wait += time.perf_counter() - started

    def end_step(self, timed: bool) -> float:
        """Close a step (`timed`: not the first); returns its seconds."""
        now = time.perf_counter()
        if timed:
            self.steps += 1
        else:
            self._since = now
        return now - self._step_start

    @contextmanager
    def pause(self, kind: str) -> Iterator[None]:
        """A span that is not training (`kind`: evaluation, checkpoint_save, checkpoint_load)."""
        started = time.perf_counter()
        yield
        spent = time.perf_counter() - started
        self.pauses[kind].append(spent)
        self._since += spent

    def mean(self, kind: str) -> float:
        spans = self.pauses.get(kind, [])
        return sum(spans) / len(spans) if spans else 0.0

    def summary(self) -> dict[str, float | int]:
        """What metrics.json reports of the run's time."""
        elapsed = time.perf_counter() - self._since
        timed = self.steps > 0 and elapsed > 0
        return {
            "data_wait_fraction": self.data_wait / elapsed if timed else 0.0,
            "seconds_per_step": elapsed / self.steps if timed else 0.0,
            "checkpoint_save_seconds": self.mean("checkpoint_save"),
            "checkpoint_load_seconds": self.mean("checkpoint_load"),
            "evaluation_seconds": self.mean("evaluation"),
            "evaluations": len(self.pauses.get("evaluation", [])),
        }

"""Progress of a long loop, said while it runs: done/total, the rate and the time left, at most
every `every` seconds and once at the end (a Dagster log line, a DVC stage's output)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class Progress:
    """Call it with how many are done (thread-safe); it says so when `every` seconds passed."""

    def __init__(
        self,
        what: str,
        total: int,
        say: Callable[[str], None],
        unit: str = "clips",
        every: float = 10.0,
    ) -> None:
        self.what, self.total, self.say, self.unit, self.every = what, total, say, unit, every
        self.started = self.last = time.monotonic()
        self.done = 0
        self.lock = threading.Lock()

    def __call__(self, done: int | None = None, total: int | None = None) -> None:
        """`done` so far (None: one more); a progress(done, total) callback too."""
        with self.lock:
            self.done = self.done + 1 if done is None else done
            self.total = total if total is not None else self.total
            now = time.monotonic()
            if self.done < self.total and now - self.last < self.every:
                return
            self.last = now
            elapsed = now - self.started
            rate = self.done / elapsed if elapsed > 0 else 0.0
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            tail = f", {_duration(left)} left" if self.done < self.total else ""
            self.say(
                f"{self.what}: {self.done}/{self.total} {self.unit} ({rate:.1f}/s{tail}, "
                f"{_duration(elapsed)} so far)"
            )

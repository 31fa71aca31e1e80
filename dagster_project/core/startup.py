"""Start-up of the project's own processes: DVC stages, training and encoding workers.

Importing dagster, torch and diffusers makes about 600,000 objects, and Python's cyclic garbage
collector scans the growing heap again and again while they are made: about a fifth of a
stage's start-up CPU on the 2-core machine (8.5 -> 6.8 CPU-s to import a stage's modules).
Each entry point stops the collector before its imports (`collect_later(__name__)`: only
when it runs as the program, never when a test imports it) and, once they are done, freezes
what they made (kept out of every later collection: it lives as long as the process) and
starts it again (`imports_done`).
"""

from __future__ import annotations

import gc


def collect_later(module: str) -> None:
    """Stop the cyclic garbage collector while the process imports its modules, when the
    calling `module` (its `__name__`) runs as the program."""
    if module == "__main__":
        gc.disable()


def imports_done() -> None:
    """Keep what start-up made out of later collections, and collect again from here."""
    gc.freeze()
    gc.enable()

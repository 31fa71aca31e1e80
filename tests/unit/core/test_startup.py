"""An entry point run as the program imports its modules with the garbage collector stopped
(core/startup.py); imported by anything else (a test, the Dagster code server), it leaves the
collector alone."""

from __future__ import annotations

import gc
import subprocess
import sys

from dagster_project.core import startup

# run the stage entry point as the program; `--help` ends it after its imports, before main()
# would start the collector again
AS_PROGRAM = """
import gc, runpy, sys
sys.argv = ["materialize", "--help"]
try:
    runpy.run_module("dagster_project.cli.materialize", run_name="__main__")
except SystemExit:
    pass
print("collector on:", gc.isenabled())
"""


def test_an_entry_point_imports_without_the_collector_only_as_the_program() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", AS_PROGRAM], capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip().endswith("collector on: False"), ran.stdout[-300:]

    import dagster_project.cli.materialize  # noqa: F401  (imported, not run)

    assert gc.isenabled()


def test_start_up_ends_with_the_imports_frozen_and_the_collector_on() -> None:
    frozen = gc.get_freeze_count()
    startup.collect_later(__name__)  # a module imported, not run: the collector stays on
    assert gc.isenabled()
    startup.collect_later("__main__")
    assert not gc.isenabled()
    startup.imports_done()
    try:
        assert gc.isenabled() and gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()  # this test process goes on collecting as before

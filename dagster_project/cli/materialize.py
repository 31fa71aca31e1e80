"""`python -m dagster_project.cli.materialize KEY[,KEY...]`: materialize assets, with their checks,
on the project's Dagster instance: what every DVC stage runs.

The same materialization as `dagster asset materialize` (the same definitions and instance, so
runs show in the UI and the `training` pool holds a second training until the first is done),
without its cost here: that command now prints a deprecation warning (superseded by `dg
launch`, from the separate dagster-dg-cli package) and every engine event at DEBUG level. This
prints progress at INFO and exits non-zero when a step or a blocking check fails, ending with
one line per failure that names its cause (the asset, the exception and its message); the full
log, tracebacks included, goes to `$DAGSTER_HOME/logs/<run id>.log`.

Before it starts, runs that died holding a pool slot are released (shell/stale_runs.py); while
a step waits for a slot, it says every 30 s who holds it.
"""

from __future__ import annotations

from dagster_project.core import startup

startup.collect_later(__name__)  # imports below without the collector (core/startup.py)

import argparse
import os
import re
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import dagster as dg

from dagster_project.core.params import PARAMS_ENV, default_params_path
from dagster_project.shell.dvc.sync import DVC_STAGE_TAG
from dagster_project.shell.stale_runs import process_tag, release_dead_runs, slot_holders

# the repository's instance (its dagster.yaml sets the pool limits) unless DAGSTER_HOME names one
REPO_HOME = Path(__file__).resolve().parents[2] / "dagster_home"
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
WATCH_ENV = "VIDEO_TRAIN_WATCH_SECONDS"  # how often a waiting run says who holds its slot
RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} - ")  # a console log record


class ShortErrors:
    """A stderr that keeps Dagster's log records but drops the tracebacks under ERROR records
    (they go to the log file, with everything else)."""

    def __init__(self, terminal: TextIO, log: TextIO) -> None:
        self.terminal, self.log = terminal, log
        self.partial = ""
        self.in_error = False

    def write(self, text: str) -> int:
        self.log.write(text)
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            if RECORD.match(line):
                self.in_error = " - ERROR - " in line
            if not self.in_error or RECORD.match(line):
                self.terminal.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()
        self.log.flush()


@contextmanager
def watching(say: Callable[[str], None], run_id: str) -> Iterator[None]:
    """Every 30 s (or $VIDEO_TRAIN_WATCH_SECONDS) while the run goes on: release runs that died
    holding a slot, and say who holds the slot a step of this run waits for."""
    every = float(os.environ.get(WATCH_ENV, "30"))
    done = threading.Event()

    def watch() -> None:
        with dg.DagsterInstance.get() as instance:  # its own connections, in its own thread
            while not done.wait(every):
                for line in release_dead_runs(instance) + slot_holders(instance, run_id):
                    say(line)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=every)


def root_cause(error: object) -> str:
    """The innermost cause of a serialized Dagster error: `Type: message`."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = (error.message or "").strip().splitlines()
    message = lines[-1] if lines else ""
    return message if message.startswith(f"{error.cls_name}:") else f"{error.cls_name}: {message}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "keys", help="comma-separated asset keys, e.g. base_model or videos,manifest"
    )
    parser.add_argument("--params", default=default_params_path(), help="params.yaml to use")
    args = parser.parse_args(argv)
    # Dagster flags its own preview APIs (Pipes' writer count) on every run: nothing to act on
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    os.environ.setdefault("DAGSTER_HOME", str(REPO_HOME))
    os.environ[PARAMS_ENV] = args.params  # the definitions module reads it when imported
    from dagster_project.definitions import build_definitions

    defs = build_definitions(args.params)
    startup.imports_done()  # the definitions' imports are done too
    job = defs.resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey(key.strip()) for key in args.keys.split(",")]
    unknown = [k.to_user_string() for k in keys if k not in job.asset_layer.executable_asset_keys]
    if unknown:
        print(f"unknown asset(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    run_id = str(uuid.uuid4())
    log_path = Path(os.environ["DAGSTER_HOME"]) / "logs" / f"{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    say = print
    with dg.DagsterInstance.get() as instance, log_path.open("w") as log:
        for line in release_dead_runs(instance):
            say(line)
        # a DVC stage's run: DVC records it, the dvc_sync sensors leave it alone
        tags = {DVC_STAGE_TAG: os.environ["DVC_STAGE"]} if "DVC_STAGE" in os.environ else {}
        terminal, sys.stderr = sys.stderr, ShortErrors(sys.stderr, log)
        try:
            with watching(say, run_id):
                result = job.execute_in_process(
                    instance=instance,
                    asset_selection=keys,
                    run_config=QUIET,
                    raise_on_error=False,
                    tags={**tags, **process_tag()},
                    run_id=run_id,
                )
        finally:
            sys.stderr = terminal
    checks = [c for c in result.get_asset_check_evaluations() if not c.passed]
    for check in checks:
        print(f"check {check.check_name} ({check.severity.value}): {check.description}")
    failed = [e for e in result.all_events if e.is_step_failure]
    for event in failed:
        error = event.step_failure_data.error
        cause = root_cause(error) if error else "failed"
        print(f"FAILED {event.step_key}: {cause} (full log: {log_path})", file=sys.stderr)
    print(f"{'done' if result.success else 'FAILED'}: {args.keys} ({result.run_id})")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())

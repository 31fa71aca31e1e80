"""Runs that died holding a concurrency pool slot: found, marked failed, their slots freed.

A run killed with -9 (by hand, the OOM killer, a reboot) stays STARTED in the instance and keeps
its slot of the `training` pool (limit 1), so every later training would wait for it forever.
Each run's process is known: the process that ran its steps (every Dagster event carries its
pid), and for the runs `cli.materialize` starts, a tag with the host, the pid and the process'
start time (a pid reused by another process is not taken for the run). A run whose process is
gone on this machine is marked failed and its slots freed; a run on another host is left alone
(its liveness cannot be told from here).

`cli.materialize` (every CLI and DVC stage run) releases dead runs before it starts and, while
one of its steps waits for a slot, says every 30 s who holds it; the daemon does the same for the
UI's runs (the `release_dead_runs` sensor), and its run monitoring is on (dagster.yaml).
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

RUN_PROCESS_TAG = "video_train/process"  # host:pid:start of the process running the run


def _start_time(pid: int) -> str | None:
    """The process' start time (clock ticks since boot, /proc/PID/stat field 22), or None when
    no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tag() -> dict[str, str]:
    """The tag naming this process, for a run it executes."""
    pid = os.getpid()
    return {RUN_PROCESS_TAG: f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"}


def _run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[str, int, str]:
    """(host, pid, start time) of the process running `run`: its tag, else the pid of its latest
    event on this host ('' start time: not known)."""
    if RUN_PROCESS_TAG in run.tags:
        host, pid, start = run.tags[RUN_PROCESS_TAG].rsplit(":", 2)
        return host, int(pid), start
    records = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
    event = records[0].event_log_entry.dagster_event if records else None
    pid = event.pid if event is not None and event.pid else 0
    return socket.gethostname(), pid, ""


def process_gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    """The pid of the dead process that ran `run` on this host, or None: alive, unknown, or on
    another host."""
    host, pid, start = _run_process(instance, run)
    if host != socket.gethostname() or pid <= 0:
        return None
    now = _start_time(pid)
    return pid if now is None or (start and now != start) else None


def _what(run: dg.DagsterRun) -> str:
    """The assets a run materializes, or its job."""
    keys = sorted(k.to_user_string() for k in run.asset_selection or ())
    return ", ".join(keys) or run.job_name


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every unfinished run that holds or waits for a pool slot while its process is
    gone, and free the slots of those and of finished runs; one line per run released."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    said = []
    for run_id in sorted(storage.get_concurrency_run_ids()):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            pid = process_gone(instance, run)
            if pid is None:
                continue
            instance.report_run_failed(
                run, f"marked failed: its process {pid} is gone (killed, or the machine restarted)"
            )
            freed = storage.free_concurrency_slots_for_run(run_id)
            said.append(
                f"run {run_id[:8]} ({_what(run)}) held a pool slot, but its process {pid} is "
                f"gone: marked failed, {freed or 0} slot(s) freed"
            )
        elif storage.free_concurrency_slots_for_run(run_id):
            said.append(f"run {run_id[:8]} had ended holding a pool slot: freed")
    return said


def slot_holders(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """For each pool a step of `run_id` waits for: who holds its slots, and since when."""
    storage = instance.event_log_storage
    said = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        waiting = [s for s in info.pending_steps if s.run_id == run_id and not s.assigned_timestamp]
        if not waiting:
            continue
        holders = []
        for slot in info.claimed_slots:
            record = instance.get_run_record_by_id(slot.run_id)
            since = (
                datetime.fromtimestamp(record.start_time, UTC).isoformat(timespec="seconds")
                if record and record.start_time
                else "an unknown time"
            )
            holders.append(f"run {slot.run_id[:8]} (step {slot.step_key}, since {since})")
        said.append(
            f"{', '.join(s.step_key for s in waiting)} waits for pool '{pool}', held by "
            + (", ".join(holders) or "nobody yet")
        )
    return said

"""Runs that died holding a pool slot are released (marked failed, slots freed); a live holder
or one on another host is not; a waiting run is told who holds the slot and since when."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from dagster_project.shell.stale_runs import (
    RUN_PROCESS_TAG,
    process_tag,
    release_dead_runs,
    slot_holders,
)
from tests.conftest import REPO


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> DagsterRun:
    run = instance.add_run(DagsterRun(job_name="__ASSET_JOB", tags=tags))
    instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name
        ),
    )
    return instance.get_run_by_id(run.run_id)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_whose_process_died_is_released_and_a_live_one_is_not(
    instance: dg.DagsterInstance,
) -> None:
    storage = instance.event_log_storage
    host = socket.gethostname()
    dead = started_run(instance, {RUN_PROCESS_TAG: f"{host}:{dead_pid()}:1"})
    alive = started_run(instance, process_tag())
    elsewhere = started_run(instance, {RUN_PROCESS_TAG: f"not-{host}:{dead_pid()}:1"})
    storage.set_concurrency_slots("training", 3)
    for run in (dead, alive, elsewhere):
        assert storage.claim_concurrency_slot("training", run.run_id, "trained_model").is_claimed

    said = release_dead_runs(instance)
    assert len(said) == 1 and dead.run_id[:8] in said[0] and "is gone" in said[0]
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    holders = storage.get_concurrency_info("training").active_run_ids
    assert holders == {alive.run_id, elsewhere.run_id}
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
    assert release_dead_runs(instance) == []  # nothing more to do


def test_a_reused_pid_is_not_taken_for_the_run(instance: dg.DagsterInstance) -> None:
    # this process' pid, but another start time: the run's process was another one
    host, pid, _ = process_tag()[RUN_PROCESS_TAG].rsplit(":", 2)
    assert int(pid) == os.getpid()
    run = started_run(instance, {RUN_PROCESS_TAG: f"{host}:{pid}:1"})
    instance.event_log_storage.set_concurrency_slots("training", 1)
    instance.event_log_storage.claim_concurrency_slot("training", run.run_id, "trained_model")
    [said] = release_dead_runs(instance)
    assert run.run_id[:8] in said
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


def test_a_waiting_run_hears_who_holds_the_slot(instance: dg.DagsterInstance) -> None:
    storage = instance.event_log_storage
    holder = started_run(instance, process_tag())
    waiter = started_run(instance, process_tag())
    storage.set_concurrency_slots("training", 1)
    assert storage.claim_concurrency_slot("training", holder.run_id, "trained_model").is_claimed
    assert not storage.claim_concurrency_slot("training", waiter.run_id, "evaluation").is_claimed
    [said] = slot_holders(instance, waiter.run_id)
    assert said.startswith("evaluation waits for pool 'training', held by run " + holder.run_id[:8])
    assert "step trained_model, since 20" in said  # an ISO date
    assert slot_holders(instance, holder.run_id) == []

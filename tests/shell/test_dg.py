"""Dagster's own project tooling accepts the project: `dg check defs` loads the definitions and
`dg list defs` lists every asset, check, job, sensor and schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DG = str(Path(sys.executable).with_name("dg"))


def dg(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([DG, *args], cwd=REPO, env=env, capture_output=True, text=True)


def test_dg_checks_and_lists_the_definitions() -> None:
    checked = dg("check", "defs")
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    listed = dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    defs = json.loads(listed.stdout)
    assets = {asset["asset_key"] for asset in defs["assets"]}
    assert {"videos", "manifest", "trained_model", "evaluation", "model_registry"} <= assets
    checks = {check["name"] for check in defs["asset_checks"]}
    assert {"manifest_contract", "caption_contract", "exposure_guard"} <= checks
    assert [job["name"] for job in defs["jobs"]] == ["pipeline"]
    assert {"new_data", "release_dead_runs"} <= {s["name"] for s in defs["sensors"]}
    assert [s["name"] for s in defs["schedules"]] == ["retrain"]

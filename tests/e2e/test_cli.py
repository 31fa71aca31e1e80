"""The command every DVC stage runs (`python -m dagster_project.cli.materialize KEYS`) in a project
folder, and the webserver `make ui` serves."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from dagster_project.core.params import load_params
from tests.conftest import REPO
from tests.e2e.test_pipeline import guard_message_figures

pytestmark = pytest.mark.slow

DAGSTER = str(Path(sys.executable).parent / "dagster")


def cli(project: Path, select: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(project / ".dagster_home")}
    (project / ".dagster_home").mkdir(exist_ok=True)
    (project / ".dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = [sys.executable, "-m", "dagster_project.cli.materialize", select]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)


def test_antlr_runtime_is_the_one_dagster_parses_with() -> None:
    # dvc's hydra/omegaconf would pin 4.9, which breaks `--select` (ord() TypeError)
    assert version("antlr4-python3-runtime") == "4.13.2"


def test_select_materializes_assets_and_checks(project: Path) -> None:
    done = cli(project.parent, "videos,manifest,rejects")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (project.parent / "data" / "manifest.parquet").is_file()
    assert "done: videos,manifest,rejects" in done.stdout
    assert "probe - 14 usable clips" in done.stderr  # the assets' own log lines, at INFO
    # what a stage prints: progress and errors, not engine events or deprecation warnings
    assert " - DEBUG - " not in done.stderr and "Warning" not in done.stderr

    over = yaml.safe_load(project.read_text())
    over["train"]["steps"] = 400
    project.write_text(yaml.safe_dump(over))
    blocked = cli(project.parent, "training_plan,trained_model")
    assert blocked.returncode != 0
    output = blocked.stdout + blocked.stderr
    assert "check exposure_guard (ERROR)" in output
    for figures in guard_message_figures(load_params(project), steps=400):
        assert figures in output
    assert not (project.parent / "data" / "train" / "model").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webserver_serves_the_asset_graph_on_loopback(tmp_path: Path) -> None:
    """What `make ui` serves: the repo's workspace, bound to 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    command = [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1"]
    command += ["-p", str(port), "-w", "workspace.yaml"]
    server = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=query,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    nodes = json.load(response)["data"]["assetNodes"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the webserver did not answer"
                assert server.poll() is None, "the webserver exited"
                time.sleep(1)
        keys = {node["assetKey"]["path"][0] for node in nodes}
        assert keys == {
            "base_model", "videos", "manifest", "rejects", "text_embeddings", "video_latents",
            "training_plan", "trained_model", "evaluation", "model_registry", "exposure_sweep",
        }  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_failure_ends_with_one_line_naming_its_cause(project: Path) -> None:
    done = cli(project.parent, "training_plan")  # before ingestion: there is no manifest
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("FAILED training_plan: FileNotFoundError")
    assert "data/manifest.parquet" in last
    assert "Stack Trace" not in done.stderr and "Traceback" not in done.stderr
    log = Path(last.rsplit("(full log: ", 1)[1].rstrip(")"))
    assert "Stack Trace" in log.read_text()  # the whole story is in the log

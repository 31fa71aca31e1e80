"""A tour of the served Dagster UI in a real browser: Playwright drives Debian's Chromium (no
browser download) through the asset graph, a materialization started from the UI, and the
report's plots and the sample preview in the evaluation asset's metadata.

`tests/e2e/test_ui.py` runs it on a fresh project; `make screenshots` runs it on this repository
and writes the screenshots the README shows (`python -m dagster_project.cli.ui_tour docs`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's package: `apt-get install chromium`
LOCATION = "dagster_project.definitions"
# the evaluation asset's images (markdown metadata entries)
IMAGES = ("samples", "loss_curve", "loss_per_sigma", "signs", "exposures")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(params: Path, home: Path) -> Iterator[str]:
    """`dagster dev` (webserver and daemon, as `make ui`) on 127.0.0.1 for the project of
    `params`; yields the UI's address once it answers."""
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "VIDEO_TRAIN_PARAMS": str(params),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    command = [str(Path(sys.executable).with_name("dagster")), "dev", "-h", "127.0.0.1",
               "-p", str(port), "-m", LOCATION]  # fmt: skip
    # its own process group: the webserver, daemon and code servers it starts stop with it
    server = subprocess.Popen(command, cwd=params.parent, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the Dagster UI did not start") from None
                time.sleep(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a loaded machine: shut down is not part of the tour
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def dismiss_onboarding(page: Page) -> None:
    """The 'Join the Dagster community' dialog of a fresh instance."""
    # not shown to an instance that saw it before: then nothing to click
    with contextlib.suppress(PlaywrightError):
        page.get_by_role("button", name="Skip").click(timeout=10_000)


def tour(
    base: str, groups: dict[str, list[dg.AssetKey]], home: Path, shots: Path | None = None
) -> dict[str, object]:
    """Walk the UI served at `base` (whose assets are `groups`, as `asset_groups` gives them);
    returns what it saw: assets shown per group, the run started from the UI and its status,
    and each evaluation image's rendered width."""
    seen: dict[str, object] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/asset-groups", wait_until="networkidle")
        dismiss_onboarding(page)
        for group, keys in groups.items():  # every asset, group by group
            page.goto(f"{base}/locations/{LOCATION}/asset-groups/{group}")
            for key in keys:
                page.get_by_text(key.to_user_string(), exact=True).first.wait_for(timeout=30_000)
            seen[f"group:{group}"] = [k.to_user_string() for k in keys]
        # the pipeline job's "Materialize all" (the global one would add the on-demand sweep)
        page.goto(f"{base}/locations/{LOCATION}/jobs/pipeline", wait_until="networkidle")
        before = run_ids(home)
        page.get_by_role("button", name="Materialize all").click()
        seen["run"] = wait_for_new_run(home, before)
        if shots:  # the graph with the run's results
            page.goto(f"{base}/locations/{LOCATION}/asset-groups/train", wait_until="networkidle")
            with contextlib.suppress(PlaywrightError):  # the nodes' latest events load late
                page.get_by_text("Loading...").first.wait_for(state="hidden", timeout=30_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=shots / "ui-graph.png")
        page.goto(f"{base}/assets/evaluation")
        for key in IMAGES:
            row = page.locator("tr").filter(has=page.get_by_text(key, exact=True)).first
            row.get_by_text("[Show Markdown]").click()
            dialog = page.get_by_role("dialog")
            image = dialog.locator("img").first
            image.wait_for(timeout=30_000)
            seen[f"image:{key}"] = image.evaluate("i => i.complete ? i.naturalWidth : 0")
            if shots and key in ("samples", "signs"):
                dialog.screenshot(path=shots / f"ui-evaluation-{key}.png")
            dialog.get_by_role("button", name="Close").click()
            dialog.wait_for(state="hidden")
        browser.close()
    return seen


def run_ids(home: Path) -> set[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return {run.run_id for run in instance.get_runs()}


def wait_for_new_run(home: Path, before: set[str], timeout: float = 600) -> str:
    """The status of the run started after `before` was taken, once it finished."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            new = [run for run in instance.get_runs() if run.run_id not in before]
            if new and new[0].is_finished:
                return new[0].status.value
        time.sleep(2)
    raise TimeoutError("the run started from the UI did not finish")

"""The core imports no Dagster: a torchrun worker, a notebook or a test can use it alone."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "dagster_project.params",
    "dagster_project.atomic",
    "dagster_project.sample_data",
    "dagster_project.cache_tool",
    "dagster_project.video.probe",
    "dagster_project.video.decode",
    "dagster_project.dataset.ingest",
    "dagster_project.dataset.manifest",
    "dagster_project.dataset.schema",
    "dagster_project.dataset.sampler",
    "dagster_project.dataset.exposure",
    "dagster_project.dataset.encode",
    "dagster_project.models.wan",
    "dagster_project.models.text_encoder",
    "dagster_project.training.trainer",
    "dagster_project.evaluation.evaluate",
]


def test_core_modules_do_not_import_dagster() -> None:
    code = (
        "import sys\n"
        f"for name in {CORE!r}: __import__(name)\n"
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

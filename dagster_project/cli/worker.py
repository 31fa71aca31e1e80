"""The training worker: `python -m dagster_project.cli.worker params.yaml` (launched as
`core/launch.py` says).

An entry point: it reads params.yaml and hands the core trainer the settings it needs. Runs
alone, under `torchrun` (every rank trains, rank 0 writes; across nodes through the c10d
rendezvous of `train.launch`) or launched by the `trained_model` asset through Dagster Pipes,
in which case rank 0 streams its log lines to the Dagster run and reports the run's metrics as
the materialization's metadata. The same command runs on a cluster: in a Kubernetes job
(dagster-k8s' PipesK8sClient) or under Slurm (`srun` around the torchrun command).
"""

from __future__ import annotations

from dagster_project.core import startup

startup.collect_later(__name__)  # imports below without the collector (core/startup.py)

import os
import sys
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

from dagster_project.core.atomic import write_text
from dagster_project.core.params import Params, load_params
from dagster_project.evaluation.monitor import RunMonitor
from dagster_project.models.families import family_spec
from dagster_project.registry.lineage import run_start
from dagster_project.registry.model_registry import ModelRegistry
from dagster_project.training.data import clip_table
from dagster_project.training.trainer import NonFiniteLoss, WarmStart, train


def main(argv: list[str]) -> int:
    startup.imports_done()
    params = load_params(argv[1] if len(argv) > 1 else "params.yaml")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    out = params.train_outputs
    if rank0:
        out.failure.unlink(missing_ok=True)
    with ExitStack() as stack:
        pipes = None
        if rank0 and DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ:
            pipes = stack.enter_context(open_dagster_pipes())
        log = pipes.log.info if pipes else print
        try:
            metrics = run(params, log)
        except Exception as error:  # one line names the cause; the traceback goes to a file
            cause = f"{type(error).__name__}: {error}"
            if rank0:
                write_text(f"{cause}\n\n{traceback.format_exc()}", out.failure)
            (pipes.log.error if pipes else print)(f"{cause} (traceback: {out.failure})")
            return 3 if isinstance(error, NonFiniteLoss) else 1
        if pipes:
            pipes.report_asset_materialization(metadata=metrics)
    return 0


def run(params: Params, log: Callable[[str], None]) -> dict:
    """Train as params.yaml says, from the base or the promoted version (`train.init`)."""
    spec = family_spec(
        params.model.family,
        params.base_model,
        params.train.task,
        params.train.audio_loss_weight,
    )
    train_clips = clip_table(params.cache_files, "train")
    out = params.train_outputs
    monitor = RunMonitor(params.eval, spec, train_clips, clip_table(params.cache_files, "val"), out)
    registry = ModelRegistry(params.registry_files)
    start = run_start(params.train.init, registry, params.base_model.identity())
    warm = None
    if start.parent:
        warm = WarmStart(Path(start.parent_model), start.parent_model_sha256)
        log(f"warm start from {start.parent} ({start.parent_model})")
    if int(os.environ.get("RANK", "0")) == 0:
        start.write(out.start)
    return train(params.train, spec, train_clips, out, log=log, evaluator=monitor, warm=warm)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

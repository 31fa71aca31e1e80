"""The training worker: `python -m dagster_project.worker params.yaml`.

Part of the shell: it reads params.yaml and hands the core trainer the settings it needs. Runs
alone, under `torchrun --nproc-per-node N` (every rank trains, rank 0 writes) or launched by the
`trained_model` asset through Dagster Pipes, in which case rank 0 streams its log lines to the
Dagster run.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

from dagster_project.models.families import family_spec
from dagster_project.params import load_params
from dagster_project.training.data import clip_table
from dagster_project.training.trainer import train


def main(argv: list[str]) -> int:
    params = load_params(argv[1] if len(argv) > 1 else "params.yaml")
    with ExitStack() as stack:
        log = print
        launched_by_pipes = DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ
        if int(os.environ.get("RANK", "0")) == 0 and launched_by_pipes:
            pipes = stack.enter_context(open_dagster_pipes())
            log = pipes.log.info
        train(
            params.train,
            family_spec(params.model.family, params.base_model),
            clip_table(params.cache_files, "train"),
            params.train_outputs,
            log=log,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

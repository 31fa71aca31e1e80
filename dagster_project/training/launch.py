"""How the training worker is launched: one process, torchrun, or torchrun across nodes.

Apart from the worker itself, so the definitions that need the command line do not load the
trainer (torch, accelerate, diffusers) when they load.
"""

from __future__ import annotations

import sys

from dagster_project.core.params import TrainParams


def launch_command(params_path: str, cfg: TrainParams) -> list[str]:
    """The worker's command line: plain Python for one process, torchrun for more; with
    `train.launch.nnodes > 1` every node runs this same command and the c10d rendezvous
    assigns node ranks."""
    worker = ["-m", "dagster_project.cli.worker", params_path]
    launch = cfg.launch
    if launch.nnodes == 1 and cfg.nproc_per_node == 1:
        return [sys.executable, *worker]
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    torchrun.append(f"--nproc-per-node={cfg.nproc_per_node}")
    if launch.nnodes == 1:
        return [*torchrun, "--standalone", *worker]
    return [
        *torchrun,
        f"--nnodes={launch.nnodes}",
        f"--rdzv-backend={launch.rdzv_backend}",
        f"--rdzv-endpoint={launch.rdzv_endpoint}",
        f"--rdzv-id={launch.rdzv_id}",
        *worker,
    ]

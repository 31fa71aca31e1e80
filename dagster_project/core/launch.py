"""How a worker (training, encoding) is launched: one process, torchrun, or torchrun across
nodes.

Apart from the workers, so the definitions that need the command line do not load the trainer
(torch, accelerate, diffusers) when they load; the module to run is the caller's (the asset
that launches it names it, so DVC's computed code deps follow that launch alone).
"""

from __future__ import annotations

import sys

from dagster_project.core.params import LaunchParams


def launch_command(
    worker: str, params_path: str, nproc_per_node: int, launch: LaunchParams | None = None
) -> list[str]:
    """The command line of the module `worker` (run with `python -m`, given `params_path`):
    plain Python for one process, torchrun for more; with
    `launch.nnodes > 1` every node runs this same command and the c10d rendezvous assigns node
    ranks."""
    module = ["-m", worker, params_path]
    launch = launch or LaunchParams()
    if launch.nnodes == 1 and nproc_per_node == 1:
        return [sys.executable, *module]
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    torchrun.append(f"--nproc-per-node={nproc_per_node}")
    if launch.nnodes == 1:
        return [*torchrun, "--standalone", *module]
    return [
        *torchrun,
        f"--nnodes={launch.nnodes}",
        f"--rdzv-backend={launch.rdzv_backend}",
        f"--rdzv-endpoint={launch.rdzv_endpoint}",
        f"--rdzv-id={launch.rdzv_id}",
        *module,
    ]

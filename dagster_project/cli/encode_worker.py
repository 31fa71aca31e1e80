"""The encoding worker: `python -m dagster_project.cli.encode_worker params.yaml`, one process
of `encode.nproc_per_node` under torchrun (launched by the `video_latents` asset through
Dagster Pipes). Each rank encodes the windows of the clips whose content hash falls to it into
the one cache (every entry written atomically) and writes the windows it could not decode to
its own file; the asset builds the index once every rank is done. Rank 0 streams its progress
to the Dagster run.
"""

from __future__ import annotations

from dagster_project.core import startup

startup.collect_later(__name__)  # imports below without the collector (core/startup.py)

import os
import sys
from contextlib import ExitStack

import polars as pl
import torch
from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

from dagster_project.core.atomic import write_json
from dagster_project.core.params import load_params
from dagster_project.core.progress import Progress
from dagster_project.dataset.cache import TensorCache
from dagster_project.dataset.encode import encode_latents, latent_jobs, shard
from dagster_project.dataset.windows import WindowRule
from dagster_project.models.families import family_spec
from dagster_project.models.placement import process_device


def main(argv: list[str]) -> int:
    startup.imports_done()
    params = load_params(argv[1] if len(argv) > 1 else "params.yaml")
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    threads = params.encode.num_threads
    if threads is None and not torch.cuda.is_available():
        threads = max(1, (os.cpu_count() or 1) // world)  # the cores, shared out
    if threads:
        torch.set_num_threads(threads)
    with ExitStack() as stack:
        pipes = None
        if rank == 0 and DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ:
            pipes = stack.enter_context(open_dagster_pipes())
        say = pipes.log.info if pipes else print
        spec = family_spec(params.model.family, params.base_model, params.train.task)
        spec.place_on(process_device(int(os.environ.get("LOCAL_RANK", "0"))))
        files = params.cache_files
        jobs = latent_jobs(
            pl.read_parquet(files.manifest),
            params.path(params.data.raw_dir),
            spec.identity,
            params.fps,
            WindowRule.of(params.data),
        )
        mine = shard(jobs, rank, world)
        cache = TensorCache(files.cache_dir, "latents")
        missing = sum(job.key not in cache for job in mine)
        progress = Progress(f"latents (rank {rank} of {world})", missing, say, unit="windows")
        errors = encode_latents(mine, cache, spec, params.fps, progress)
        say(
            f"rank {rank} of {world}: encoded {missing - len(errors)} windows, "
            f"{len(mine) - missing} already cached, {len(errors)} could not be decoded"
        )
        found = [{"sha256": j.sha256, "window": j.start, "error": e} for j, e in errors.items()]
        write_json(found, files.encode_errors(rank))
        if pipes:
            pipes.report_asset_materialization(metadata={"rank_0_windows": len(mine)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

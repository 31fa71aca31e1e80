"""Check and tidy the tensor cache: `python -m dagster_project.cli.cache_tool verify|prune`.

verify: load every entry, check its checksum and values, report the damaged ones (exit 1 if any).
prune:  delete entries that the current text/latent indexes no longer reference, damaged
        entries and temporary files left by killed writers. `--dry-run` only lists them.
Both refuse a folder not marked as the project's cache and touch only files of its layout
(dataset/cache.py).
"""

from __future__ import annotations

import argparse
import sys

from dagster_project.core.params import ParamsError, load_params
from dagster_project.dataset.cache import CacheError, cache_files, check_entry, referenced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["verify", "prune"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        entries, leftovers = cache_files(params.path(params.data.cache_dir))
    except (ParamsError, CacheError) as error:
        print(error, file=sys.stderr)
        return 2
    damaged = {p: why for p in entries if (why := check_entry(p))}
    for path, why in damaged.items():
        print(f"damaged: {path}: {why}")
    if args.command == "verify":
        print(
            f"{len(entries)} entries, {len(damaged)} damaged, {len(leftovers)} leftover temp files"
        )
        return 1 if damaged else 0
    missing = [i for i in (params.data.text_index, params.data.latent_index)
               if not params.path(i).is_file()]  # fmt: skip
    if missing:
        print(f"refusing to prune: no index at {', '.join(missing)} (run the encoding first)")
        return 2
    keep = referenced(params.cache_files)
    stale = [p for p in entries if p not in keep or p in damaged]
    for path in stale + leftovers:
        print(f"{'would remove' if args.dry_run else 'removed'}: {path}")
        if not args.dry_run:
            path.unlink()
    print(f"{len(entries) - len(stale)} entries kept, {len(stale) + len(leftovers)} files removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

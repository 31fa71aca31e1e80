"""`python -m dagster_project.cli.raw_check [PARAMS]`: refuse a raw data folder whose links
lead outside it, before DVC copies their targets (see shell/dvc/raw_folder.py)."""

from __future__ import annotations

import sys

from dagster_project.core.params import ParamsError, default_params_path, load_params
from dagster_project.shell.dvc.raw_folder import refused_links


def main(argv: list[str] | None = None) -> int:
    params_path = (argv or [None])[0] or default_params_path()
    try:
        p = load_params(params_path)
    except ParamsError as error:
        print(error, file=sys.stderr)
        return 2
    for warning in p.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    bad = refused_links(p)
    if bad:
        print(
            f"{p.data.raw_dir}: {len(bad)} link(s) lead outside the data folder (DVC would copy "
            f"their targets): {', '.join(bad[:10])}. Copy the files in, or remove the links.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

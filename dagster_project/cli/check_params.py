"""`python -m dagster_project.cli.check_params [PARAMS]`: validate params.yaml; the first DVC
stage (shell/dvc/params_stage.py), so an invalid file stops `dvc repro` before any stage
deletes its outputs. Exit 2 with the message naming the key, else 0 (warnings printed)."""

from __future__ import annotations

import sys

from dagster_project.core.params import ParamsError, default_params_path, load_params
from dagster_project.shell.dvc.params_stage import write_marker


def main(argv: list[str] | None = None) -> int:
    try:
        p = load_params((argv or [None])[0] or default_params_path())
    except ParamsError as error:
        print(error, file=sys.stderr)
        return 2
    for warning in p.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    write_marker(p.root.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

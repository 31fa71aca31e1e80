"""`python -m dagster_project.cli.dvc_yaml [--check]`: write dvc.yaml from the asset graph
(shell/dvc/stages.py) to stdout; with `--check`, exit 1 when the committed dvc.yaml differs."""

from __future__ import annotations

import sys
from pathlib import Path

from dagster_project.definitions import defs
from dagster_project.shell.dvc.stages import render_text


def main(argv: list[str]) -> int:
    text = render_text(defs.resolve_asset_graph())
    if "--check" in argv:
        if Path("dvc.yaml").read_text() != text:
            print("dvc.yaml is out of date: python -m dagster_project.cli.dvc_yaml > dvc.yaml")
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

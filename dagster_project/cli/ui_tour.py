"""`python -m dagster_project.cli.ui_tour DOCS`: screenshots of this repository's UI
(`make screenshots`; the tour itself is shell/ui_tour.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from dagster_project.definitions import build_definitions
from dagster_project.shell.dvc.stages import asset_groups
from dagster_project.shell.ui_tour import served, tour


def main(argv: list[str]) -> int:
    shots = Path(argv[0] if argv else "docs")
    params = Path("params.yaml").resolve()
    home = Path("dagster_home").resolve()
    groups = asset_groups(build_definitions(str(params)).resolve_asset_graph())
    with served(params, home) as base:
        seen = tour(base, groups, home, shots)
    print(seen)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

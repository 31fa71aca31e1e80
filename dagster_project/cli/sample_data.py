"""`python -m dagster_project.cli.sample_data OUT_DIR`: write the sample dataset
(dataset/sample_data.py) into OUT_DIR."""

from __future__ import annotations

import sys
from pathlib import Path

from dagster_project.dataset.sample_data import write_sample_dataset


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m dagster_project.cli.sample_data OUT_DIR", file=sys.stderr)
        return 2
    for video in write_sample_dataset(Path(argv[0])):
        print(video)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Typed JSON records: a file's fields named once, in a frozen pydantic model.

Read and written as the JSON files they always were; older files load (unknown keys are
ignored), and a record appears whole (a temporary sibling, then a rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict

from dagster_project.core.atomic import write_json


class Record(BaseModel):
    """A JSON file's typed content."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def read(cls, path: Path) -> Self:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def write(self, path: Path) -> None:
        write_json(self.model_dump(mode="json"), path)

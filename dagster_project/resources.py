"""Dagster resources: where params.yaml is."""

from __future__ import annotations

import os

import dagster as dg

from dagster_project.params import Params, load_params

PARAMS_ENV = "VIDEO_TRAIN_PARAMS"


def default_params_path() -> str:
    """params.yaml in the working folder, unless VIDEO_TRAIN_PARAMS names another file."""
    return os.environ.get(PARAMS_ENV, "params.yaml")


class ParamsResource(dg.ConfigurableResource):
    """params.yaml, read and validated afresh by every asset before it writes anything."""

    path: str = "params.yaml"

    def load(self) -> Params:
        return load_params(self.path)

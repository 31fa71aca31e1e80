"""What every asset shares: params.yaml (a Dagster resource) and the training pool."""

from __future__ import annotations

import dagster as dg

from dagster_project.core.params import Params, load_params

# the Dagster concurrency pool of training, evaluation, registration and the sweep:
# dagster_home/dagster.yaml limits every pool to one op at a time, across runs
TRAINING_POOL = "training"


class ParamsResource(dg.ConfigurableResource):
    """params.yaml, read and validated afresh by every asset before it writes anything."""

    path: str = "params.yaml"

    def load(self) -> Params:
        return load_params(self.path)

"""The `pipeline` job: every asset but the on-demand ones (the exposure sweep). The sensor, the
schedule and the UI's job page run it."""

import dagster as dg

from dagster_project.shell.assets.sweep import ON_DEMAND_GROUP

pipeline_job = dg.define_asset_job(
    "pipeline", selection=dg.AssetSelection.all() - dg.AssetSelection.groups(ON_DEMAND_GROUP)
)

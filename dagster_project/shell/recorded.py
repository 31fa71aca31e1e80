"""What earlier runs recorded in the Dagster instance: a materialization's metadata values."""

from __future__ import annotations

import dagster as dg

from dagster_project.dataset.arrivals import RAW_FINGERPRINT

TRAINED = dg.AssetKey("trained_model")
VIDEOS = dg.AssetKey("videos")


def recorded(instance: dg.DagsterInstance, asset: dg.AssetKey, key: str) -> str | None:
    """The metadata value `key` of the latest materialization of `asset`."""
    last = instance.get_latest_materialization_event(asset)
    metadata = last.asset_materialization.metadata if last and last.asset_materialization else {}
    value = metadata.get(key)
    return None if value is None else value.value


def trained_on(instance: dg.DagsterInstance, asset: dg.AssetKey = TRAINED) -> str | None:
    """The raw folder fingerprint the latest materialization of `asset` recorded."""
    return recorded(instance, asset, RAW_FINGERPRINT)

"""Conventions every latitude component shares about PostgreSQL replication."""

from __future__ import annotations

REPLICATION_USER = "replicator"


def slot_name(region: str) -> str:
    """The physical replication slot a region's standby uses on whichever region is primary."""
    return "latitude_" + region.replace("-", "_")

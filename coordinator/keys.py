"""Every name latitude keeps in etcd, in one place (each under the configured prefix).

Who writes what: the leader writes everything below, each write guarded by the leader key;
every replica reads. The leader key itself is the election's (``coordinator.store``).
"""

from __future__ import annotations

LEADER = "leader"
# Region health as the leader last published it, one key per region: regions/<name>.
REGIONS = "regions"
# The region whose primary takes writes.
WRITE_REGION = "write_region"
# The failover or switchover in progress or last finished; finished ones also under
# failover/history/<id>.
FAILOVER = "failover/current"
FAILOVER_HISTORY = "failover/history"
# Operators' maintenance flags, one key per region: maintenance/<name>.
MAINTENANCE = "maintenance"
# The event history: events/<sequence>.
EVENTS = "events"
# The routing table every replica serves.
ROUTING_TABLE = "routing/table"
# Each region's health over time: history/<region>/raw/<ms> and history/<region>/min/<ms>
# (coordinator.history).
HISTORY = "history"
# Incidents (the event history correlated), one key per incident: incidents/<id>; and what
# the correlation remembers besides them (the newest event correlated, region states).
INCIDENTS = "incidents"
INCIDENT_LEDGER = "incident_ledger"


def under(prefix: str, name: str) -> str:
    return f"{prefix}/{name}"

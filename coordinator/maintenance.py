"""Regions an operator has taken out of service (AdminService.SetMaintenance).

A region in maintenance is REGION_STATE_MAINTENANCE whatever its health: routing sends it no
traffic and no failover or switchover promotes it. The flag lives in etcd
(``maintenance/<region>``), written guarded by the leader key, so that a new leader keeps it:
it restores the flags before it evaluates a region or considers a failover.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from coordinator import keys
from coordinator.etcd import EtcdError
from coordinator.registry import Registry
from coordinator.store import Store

log = logging.getLogger(__name__)

PREFIX = keys.MAINTENANCE


async def restore(store: Store, registry: Registry, attempts: int = 3) -> bool:
    """Apply the flags in etcd to a new leader's registry; False when they could not be read
    (a leader that does not know them could promote a region in maintenance)."""
    for attempt in range(attempts):
        try:
            flags = await store.read_prefix(PREFIX)
        except EtcdError as err:
            log.warning("reading maintenance flags failed (attempt %d): %s", attempt + 1, err)
            await asyncio.sleep(0.2)
            continue
        for region, value in flags.items():
            if region in registry.regions:
                monitor = registry.regions[region].monitor
                monitor.maintenance = True
                monitor.maintenance_reason = json.loads(value).get("reason", "")
        return True
    return False


async def apply(node, registry: Registry, region: str, enabled: bool, reason: str) -> bool:
    """Persist the flag, then act on it; False when the guarded write failed."""
    key = f"{PREFIX}/{region}"
    if enabled:
        value = json.dumps({"reason": reason, "since": time.time()}).encode()
        written = await node.write({key: value})
    else:
        written = await node.write({}, deletes=[key])
    if not written:
        return False
    monitor = registry.regions[region].monitor
    monitor.maintenance = enabled
    monitor.maintenance_reason = reason if enabled else ""
    for change in registry.evaluate():
        node.region_changed(change)
    return True

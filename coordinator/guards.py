"""What the leader keeps true between failovers: one writable primary, and it protected.

A primary is writable only while it is the write region: ``latitude up`` starts every existing
primary data directory fenced, and the leader lifts that fence for the write region alone; any
other primary is fenced and told to rejoin as a standby (in the background, see
``coordinator.rejoin``). In synchronous mode a commit waits for any one standby streaming from
the primary; with none for ``fail_after``, replication may fall back to asynchronous rather
than every commit waiting for a standby that is not there.

The guards stand aside while a failover is under way: its fences are the failover's own. They
read the write region and the failover under way from the Orchestrator, which owns both and
runs the guards on each of its ticks.

Fencing and unfencing by command are recorded as events here, for the guards and the failover
alike.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from coordinator.commands import CommandFailed
from coordinator.failover import format_lsn
from coordinator.registry import Registry
from coordinator.rejoin import Rejoins
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

if TYPE_CHECKING:
    from coordinator.orchestrator import Orchestrator

log = logging.getLogger(__name__)

_WARNING = admin_pb2.SEVERITY_WARNING


def any_one(regions) -> str:
    """synchronous_standby_names: a commit waits for any one of these standbys."""
    return "ANY 1 (" + ",".join(f'"{name}"' for name in sorted(regions)) + ")"


async def unfence(node, region: str, reason: str, failover_id: str = "") -> None:
    """Lift ``region``'s fence by command; CommandFailed unless it is lifted."""
    result = await node.command(
        region, agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_UNFENCE), timeout=2.0,
        reason=reason,
    )  # fmt: skip
    if not result.ok:
        raise CommandFailed(f"unfencing {region} failed: {result.error}")
    node.events.record(
        admin_pb2.EVENT_KIND_UNFENCED, region=region, failover_id=failover_id,
        message=f"{region} unfenced: {reason}", attributes={"reason": reason},
    )  # fmt: skip


def record_fenced(node, region: str, result: agent_pb2.CommandResult, failover_id: str = "",
                  why: str = "") -> None:  # fmt: skip
    """The event for a fence by command, at the position the fenced primary reached."""
    lsn = format_lsn(result.observed.current_lsn)
    node.events.record(
        admin_pb2.EVENT_KIND_FENCED, _WARNING, region=region, failover_id=failover_id,
        message=f"{region} fenced by command at {lsn}"
                f"{': ' + why if why else f' (failover {failover_id})'}",
        attributes={"cause": "command", "lsn": lsn},
    )  # fmt: skip


class Guards:
    """Run by the Orchestrator on each tick outside a failover, each step idempotent."""

    def __init__(self, node, registry: Registry, failover: Orchestrator, rejoins: Rejoins):
        self._node = node
        self._registry = registry
        self._config = node.config
        self._failover = failover  # whose write region is guarded, and whose failover
        self._rejoins = rejoins
        self._fenced_at: dict[str, float] = {}
        self._synchronous_names: str | None = None  # as last set on the primary
        # When the write region last had a standby streaming (or became the write region).
        self._standbys_seen = time.monotonic()

    def new_write_region(self) -> None:
        """Another region holds the primary: what was set on the old one no longer holds, and
        its standbys get ``fail_after`` to start streaming before anything falls back."""
        self._synchronous_names = None
        self._standbys_seen = time.monotonic()

    async def keep_synchronous(self) -> None:
        """ANY 1 of the standbys streaming from the primary; with none, asynchronous (if
        allowed) rather than every commit waiting for a standby that is not there."""
        write_region = self._failover.write_region
        record = self._registry.regions[write_region]
        db = record.report.database if record.report else None
        if db is None or record.session is None or db.role != common_pb2.DATABASE_ROLE_PRIMARY:
            return
        streaming = sorted(r.region for r in db.replicas if r.state == "streaming")
        now = time.monotonic()
        if streaming:
            self._standbys_seen = now
            wanted = any_one(streaming)
        elif (
            self._config.synchronous_fallback
            and now - self._standbys_seen >= self._config.fail_after
        ):
            # Not at once: right after a promotion the standbys are still being repointed,
            # and commits wait for them rather than go unprotected.
            wanted = ""
        else:
            return  # keep waiting on whatever standbys were named
        if wanted == self._synchronous_names:
            return
        if not wanted:
            log.warning("no standby streams from %s: replication is asynchronous until one does",
                        write_region)  # fmt: skip
        command = agent_pb2.Command(
            kind=agent_pb2.COMMAND_KIND_SET_SYNCHRONOUS,
            synchronous=agent_pb2.SynchronousArgs(synchronous_standby_names=wanted),
        )
        try:
            result = await self._node.command(write_region, command, timeout=2.0)
        except CommandFailed as err:
            log.warning("setting synchronous_standby_names failed: %s", err)
            return
        if self._failover.write_region != write_region:
            return  # the primary moved meanwhile: what was set on the old one says nothing
        if result.ok:
            self._synchronous_names = wanted
            log.info("synchronous_standby_names on %s: %r", write_region, wanted)
            if not wanted:
                self._node.events.record(
                    admin_pb2.EVENT_KIND_ALERT, _WARNING, region=write_region,
                    message=f"synchronous replication degraded to asynchronous: no standby "
                            f"streams from {write_region}",
                    attributes={"alert": "synchronous_degraded"},
                )  # fmt: skip

    async def unfence_write_region(self) -> None:
        """The primary fenced itself while no leader acknowledged it (a leader change that
        took longer than fence_after), or came back fenced from a restart. Now that a leader
        hears it again, lift the fence. A fence by command is the leader's own (a failover or
        switchover under way) and stays."""
        write_region = self._failover.write_region
        record = self._registry.regions[write_region]
        db = record.report.database if record.report else None
        if (
            self._failover.current is not None
            or db is None
            or db.role != common_pb2.DATABASE_ROLE_PRIMARY
            or not db.fenced
            or db.fence_cause not in (common_pb2.FENCE_CAUSE_SELF, common_pb2.FENCE_CAUSE_STARTUP)
            or record.session is None
        ):
            return
        now = time.monotonic()
        if now - self._fenced_at.get(write_region, -math.inf) < 2.0:
            return
        self._fenced_at[write_region] = now
        why = (
            "it came back fenced from a restart"
            if db.fence_cause == common_pb2.FENCE_CAUSE_STARTUP
            else "it fenced itself while out of touch"
        )
        log.warning("%s holds the write region, but %s: unfencing it", write_region, why)
        try:
            await unfence(self._node, write_region, f"the leader hears the primary again ({why})")
        except CommandFailed as err:
            log.warning("%s", err)

    async def fence_stray_primaries(self) -> None:
        """Never two writable primaries: fence any that is not the write region."""
        failover = self._failover
        now = time.monotonic()
        for name, region in self._registry.regions.items():
            db = region.report.database if region.report else None
            if name == failover.write_region or db is None or failover.current is not None:
                continue
            if region.session is None or region.monitor.arrivals.overdue(now):
                continue  # a dead region's last report says nothing about it now
            if db.role != common_pb2.DATABASE_ROLE_PRIMARY:
                continue
            if now - self._fenced_at.get(name, -math.inf) < 5.0:
                continue
            self._fenced_at[name] = now
            if not db.fenced:
                log.warning("%s reports a writable primary, but writes go to %s: fencing it",
                            name, failover.write_region)  # fmt: skip
                try:
                    result = await self._node.command(
                        name, agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_FENCE),
                        timeout=1.0, reason="a second writable primary",
                    )  # fmt: skip
                    if result.ok:
                        record_fenced(
                            self._node, name, result, why=f"writes go to {failover.write_region}"
                        )
                except CommandFailed as err:
                    log.warning("fencing %s failed: %s", name, err)
                    continue
            # A former primary back from a failover: make it a standby of the current one.
            self._rejoins.in_background(name, self._rejoins.rejoin(name, failover.write_region))

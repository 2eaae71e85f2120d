"""What the leader keeps true between failovers: one writable primary, and it protected.

A primary is writable only while it is the write region: ``latitude up`` starts every existing
primary data directory fenced, and the leader lifts a fence on the write region's primary
whenever no failover under way owns it, whatever made it (a restart, its agent out of touch, a
failover that aborted, its keeper); any other primary is fenced and told to rejoin as a standby
(in the background, see ``coordinator.failover.rejoin``). A standby whose server stays down
while its agent reports (a REJOIN that failed half-way, a crash, a copy interrupted) is brought
back by REJOIN too: nothing else would start it. In synchronous mode a commit waits
for any one standby streaming from the primary; with none for ``fail_after``, replication may
fall back to asynchronous rather than every commit waiting for a standby that is not there.

The guards stand aside while a failover is under way: its fences are the failover's own. They
read the write region and the failover under way from the FailoverMachine, which owns both and
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
from coordinator.failover.decisions import synchronous_names
from coordinator.failover.rejoin import Rejoins
from coordinator.leader import Leader
from coordinator.registry import Registry
from latitude.lsn import format_lsn
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

if TYPE_CHECKING:
    from coordinator.failover.machine import FailoverMachine

log = logging.getLogger(__name__)

# A standby's server down this long, its agent reporting, is restarted by REJOIN; then tried
# again no sooner than RESTART_EVERY (a REJOIN may take a while: a fresh copy).
DOWN_GRACE = 10.0
RESTART_EVERY = 30.0
_WARNING = admin_pb2.SEVERITY_WARNING
_FENCED_BECAUSE = {
    common_pb2.FENCE_CAUSE_STARTUP: "it came back fenced from a restart",
    common_pb2.FENCE_CAUSE_SELF: "it fenced itself while out of touch",
    common_pb2.FENCE_CAUSE_KEEPER: "its keeper fenced it while its agent was gone",
    common_pb2.FENCE_CAUSE_COMMAND: "a fence by command outlived the failover that made it",
}


async def unfence(leader: Leader, region: str, reason: str, failover_id: str = "") -> None:
    """Lift ``region``'s fence by command; CommandFailed unless it is lifted."""
    result = await leader.agents.command(
        region,
        agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_UNFENCE),
        timeout=2.0,
        reason=reason,
    )
    if not result.ok:
        raise CommandFailed(f"unfencing {region} failed: {result.error}")
    leader.events.record(
        admin_pb2.EVENT_KIND_UNFENCED,
        region=region,
        failover_id=failover_id,
        message=f"{region} unfenced: {reason}",
        attributes={"reason": reason},
    )


def record_fenced(
    leader: Leader,
    region: str,
    result: agent_pb2.CommandResult,
    failover_id: str = "",
    why: str = "",
) -> None:
    """The event for a fence by command, at the position after which nothing commits."""
    lsn = format_lsn(result.fence_lsn or result.observed.current_lsn)
    leader.events.record(
        admin_pb2.EVENT_KIND_FENCED,
        _WARNING,
        region=region,
        failover_id=failover_id,
        message=f"{region} fenced by command at {lsn}"
        f"{': ' + why if why else f' (failover {failover_id})'}",
        attributes={"cause": "command", "lsn": lsn},
    )


class Guards:
    """Run by the Orchestrator on each tick outside a failover, each step idempotent."""

    def __init__(
        self, leader: Leader, registry: Registry, failover: FailoverMachine, rejoins: Rejoins
    ) -> None:
        self._leader = leader
        self._registry = registry
        self._config = leader.config
        self._failover = failover  # whose write region is guarded, and whose failover
        self._rejoins = rejoins
        self._fenced_at: dict[str, float] = {}
        self._synchronous_names: str | None = None  # as last set on the primary
        # When the write region last had a standby streaming (or became the write region).
        self._standbys_seen = time.monotonic()
        self._down_since: dict[str, float] = {}
        self._restarted_at: dict[str, float] = {}

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
        streaming = [r.region for r in db.replicas if r.state == "streaming"]
        now = time.monotonic()
        if streaming:
            self._standbys_seen = now
        wanted = synchronous_names(
            streaming,
            none_since=self._standbys_seen,
            now=now,
            fail_after=self._config.fail_after,
            fallback=self._config.synchronous_fallback,
        )
        if wanted is None or wanted == self._synchronous_names:
            return
        if not wanted:
            log.warning(
                "no standby streams from %s: replication is asynchronous until one does",
                write_region,
            )
        command = agent_pb2.Command(
            kind=agent_pb2.COMMAND_KIND_SET_SYNCHRONOUS,
            synchronous=agent_pb2.SynchronousArgs(synchronous_standby_names=wanted),
        )
        try:
            result = await self._leader.agents.command(write_region, command, timeout=2.0)
        except CommandFailed as err:
            log.warning("setting synchronous_standby_names failed: %s", err)
            return
        if self._failover.write_region != write_region:
            return  # the primary moved meanwhile: what was set on the old one says nothing
        if result.ok:
            self._synchronous_names = wanted
            log.info("synchronous_standby_names on %s: %r", write_region, wanted)
            if not wanted:
                self._leader.events.record(
                    admin_pb2.EVENT_KIND_ALERT,
                    _WARNING,
                    region=write_region,
                    message=f"synchronous replication degraded to asynchronous: no standby "
                    f"streams from {write_region}",
                    attributes={"alert": "synchronous_degraded"},
                )

    async def unfence_write_region(self) -> None:
        """The write region's primary is fenced and no failover under way owns the fence: it
        fenced itself while no leader acknowledged it, came back fenced from a restart, was
        stopped by its keeper, or was fenced by a failover that then stopped short. It is the
        primary writes go to, and a leader hears it: lift the fence."""
        write_region = self._failover.write_region
        record = self._registry.regions[write_region]
        db = record.report.database if record.report else None
        if (
            self._failover.current is not None
            or db is None
            or db.role != common_pb2.DATABASE_ROLE_PRIMARY
            or not db.fenced
            or record.session is None
            or record.monitor.arrivals.overdue(time.monotonic())
        ):
            return
        now = time.monotonic()
        if now - self._fenced_at.get(write_region, -math.inf) < 2.0:
            return
        self._fenced_at[write_region] = now
        why = _FENCED_BECAUSE.get(db.fence_cause, "it was fenced and no failover owns the fence")
        log.warning("%s holds the write region, but %s: unfencing it", write_region, why)
        try:
            await unfence(self._leader, write_region, f"the leader hears the primary again ({why})")
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
                log.warning(
                    "%s reports a writable primary, but writes go to %s: fencing it",
                    name,
                    failover.write_region,
                )
                try:
                    result = await self._leader.agents.command(
                        name,
                        agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_FENCE),
                        timeout=1.0,
                        reason="a second writable primary",
                    )
                    if result.ok:
                        record_fenced(
                            self._leader, name, result, why=f"writes go to {failover.write_region}"
                        )
                except CommandFailed as err:
                    log.warning("fencing %s failed: %s", name, err)
                    continue
            # A former primary back from a failover: make it a standby of the current one.
            self._rejoins.in_background(name, self._rejoins.rejoin(name, failover.write_region))

    async def restart_stopped_standbys(self) -> None:
        """A region other than the write region whose server is down while its agent reports
        is told to REJOIN, which starts it as a standby of the write region (rewound or
        copied afresh if it must be). The stray-primary guard sees only servers that run, so
        without this a REJOIN that failed half-way left the region down for good."""
        failover = self._failover
        if failover.current is not None or not failover.write_region:
            return
        now = time.monotonic()
        for name, region in self._registry.regions.items():
            db = region.report.database if region.report else None
            live = region.session is not None and not region.monitor.arrivals.overdue(now)
            if (
                name == failover.write_region
                or not live
                or db is None
                or db.role != common_pb2.DATABASE_ROLE_DOWN
                or region.monitor.maintenance
            ):
                self._down_since.pop(name, None)
                continue
            since = self._down_since.setdefault(name, now)
            if now - since < DOWN_GRACE:
                continue
            if now - self._restarted_at.get(name, -math.inf) < RESTART_EVERY:
                continue
            self._restarted_at[name] = now
            log.warning(
                "%s's server has been down for %.0f s while its agent reports: rejoining it "
                "as a standby of %s",
                name,
                now - since,
                failover.write_region,
            )
            self._rejoins.in_background(name, self._rejoins.rejoin(name, failover.write_region))

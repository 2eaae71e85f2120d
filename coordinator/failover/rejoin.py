"""Bringing a region back as a standby of the primary: follow if it can, rejoin if it cannot.

A former primary (after a failover, or a stray one the guards fenced) and a repointed standby
that went past the point where the new timeline forked can never simply follow the new
primary: they REJOIN, which rewinds them (pg_rewind) if they diverged. A rewind or a fresh copy
takes a while, and failure detection must not wait for it, so that work runs in the background,
one task per region at most; the leader cancels what is left when it stops leading.
"""

from __future__ import annotations

import asyncio
import logging
import time

from coordinator.commands import CommandFailed
from coordinator.failover.views import postgres_address
from coordinator.leader import Leader
from coordinator.registry import Registry
from latitude.replication import slot_name
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

log = logging.getLogger(__name__)


class Rejoins:
    """The leader's rejoins, one at most under way per region."""

    def __init__(self, leader: Leader, registry: Registry) -> None:
        self._leader = leader
        self._registry = registry
        self._running: dict[str, asyncio.Task] = {}

    def follow_args(self, region: str, primary: str) -> agent_pb2.FollowArgs:
        """How ``region`` streams from ``primary`` (empty host before primary's hello)."""
        host, _, port = postgres_address(self._registry, primary).rpartition(":")
        return agent_pb2.FollowArgs(
            primary_region=primary,
            primary_host=host,
            primary_port=int(port or 0),
            slot_name=slot_name(region),
        )

    async def rejoin(self, region: str, primary: str) -> bool:
        """Turn a former primary into a standby of ``primary`` (pg_rewind if it diverged)."""
        follow = self.follow_args(region, primary)
        if not follow.primary_port or self._registry.regions[region].session is None:
            return False
        log.info("rejoining %s as a standby of %s", region, primary)
        command = agent_pb2.Command(
            kind=agent_pb2.COMMAND_KIND_REJOIN,
            rejoin=agent_pb2.RejoinArgs(follow=follow, allow_rewind=True),
        )
        try:
            result = await self._leader.agents.command(
                region, command, timeout=60.0, reason="rejoin"
            )
        except CommandFailed as err:
            log.warning("rejoining %s failed: %s", region, err)
            return False
        if not result.ok:
            log.warning("rejoining %s failed: %s", region, result.error)
        else:
            how = "rewound" if result.rewound else "no rewind needed"
            self._leader.events.record(
                admin_pb2.EVENT_KIND_REJOINED,
                region=region,
                message=f"{region} rejoined as a standby of {primary} ({how})",
                attributes={"rewound": result.rewound, "primary": primary},
            )
        return result.ok

    async def follow_or_rejoin(self, region: str, primary: str, within: float = 5.0) -> None:
        """A repointed standby that does not stream the new primary's timeline soon has most
        likely gone past the point where that timeline forked (in a switchover the fenced old
        primary still writes a little WAL, hint bits or vacuum, which a standby may receive and
        the target not): it can never follow, so it rejoins. REJOIN rewinds it only if it still
        does not stream after its own grace, so a standby merely slow is left as it is."""
        address = postgres_address(self._registry, primary)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.follows(region, primary, address):
                return
            await asyncio.sleep(0.1)
        log.warning("%s does not stream %s's timeline: rejoining it", region, primary)
        await self.rejoin(region, primary)

    def follows(self, region: str, primary: str, address: str) -> bool:
        """As last reported: ``region`` streams the timeline ``primary`` writes, from it."""
        reports = self._registry.regions[region].report, self._registry.regions[primary].report
        if reports[0] is None or reports[1] is None:
            return False
        standby, source = reports[0].database, reports[1].database
        return (
            source.role == common_pb2.DATABASE_ROLE_PRIMARY
            and standby.wal_receiver_streaming
            and standby.upstream_address == address
            and standby.timeline_id == source.timeline_id
        )

    def in_background(self, region: str, work) -> None:
        """Run ``work`` (a rejoin, at heart) for ``region`` unless one runs for it already."""
        running = self._running.get(region)
        if running is not None and not running.done():
            work.close()
            return
        self._running[region] = asyncio.create_task(work, name=f"rejoin {region}")

    async def cancel(self) -> None:
        """Stop every rejoin still under way (the leader is stopping)."""
        for task in self._running.values():
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

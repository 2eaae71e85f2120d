"""Round-trip times from this region to the others, for latency-aware routing.

A peer is another region's PostgreSQL endpoint: every region reaches it anyway (standbys stream
from the primary, a failover repoints them to any other), and a TCP connect to it costs one
round trip (SYN, SYN-ACK) and no credentials. Every peer is measured concurrently, every
``Welcome.peer_probe_interval``, in a loop of its own; reports carry the newest round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.checks import CheckSpec, ServiceCheck
from latitude.errors import ConfigError
from latitude.netaddr import parse_host_port
from latitude.v1 import agent_pb2

log = logging.getLogger("latitude.agent.peers")

# Until a Welcome says otherwise.
DEFAULT_INTERVAL = 5.0
CONNECT_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Peer:
    region: str
    address: str  # host:port of the region's PostgreSQL


def parse_peers(items: Iterable[str], own_region: str, field: str = "peers") -> list[Peer]:
    """``region=host:port`` items -> peers; ConfigError naming ``field`` otherwise."""
    peers: list[Peer] = []
    for item in items:
        region, sep, address = item.partition("=")
        region, address = region.strip(), address.strip()
        if not sep or not region:
            raise ConfigError(f"{field}: expected region=host:port, got {item!r}")
        parse_host_port(address, f"{field}: {region}")
        if region == own_region:
            raise ConfigError(f"{field}: {region} is this agent's own region")
        if any(peer.region == region for peer in peers):
            raise ConfigError(f"{field}: {region} is given more than once")
        peers.append(Peer(region, address))
    return peers


class PeerProber:
    """Measures a TCP connect to every peer each interval and keeps the newest round."""

    def __init__(
        self,
        peers: Iterable[Peer],
        *,
        interval: Callable[[], float] = lambda: DEFAULT_INTERVAL,
        timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._checks = [
            ServiceCheck(CheckSpec(peer.region, "tcp", peer.address, timeout=timeout))
            for peer in peers
        ]
        self._interval = interval
        self._latest: list[agent_pb2.PeerRtt] = []

    def latest(self) -> list[agent_pb2.PeerRtt]:
        """The newest round, in configuration order; empty until the first round completes
        (not measured yet is not unreachable)."""
        return list(self._latest)

    async def probe(self) -> list[agent_pb2.PeerRtt]:
        """Measure every peer at once; the round, also kept as the newest."""
        results = await asyncio.gather(*(check.probe() for check in self._checks))
        before = {peer.region: peer.reachable for peer in self._latest}
        for result in results:
            if before.get(result.name, True) and not result.ok:
                log.warning("peer %s unreachable: %s", result.name, result.error)
            elif before.get(result.name) is False and result.ok:
                log.info("peer %s reachable again", result.name)
        self._latest = [
            agent_pb2.PeerRtt(
                region=result.name,
                rtt_seconds=result.latency_seconds if result.ok else 0.0,
                reachable=result.ok,
            )
            for result in results
        ]
        return self.latest()

    async def run(self) -> None:
        """Probe every interval, until cancelled; returns at once without peers."""
        if not self._checks:
            return
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.probe()
            next_at = max(next_at + self._interval(), loop.time())
            await asyncio.sleep(next_at - loop.time())

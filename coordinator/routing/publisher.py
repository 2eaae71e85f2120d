"""The leader's routing duty: build the routing table and publish it to etcd when it changes.

A change that moves traffic (a region's state, availability or weight, the write region, a
failover starting or ending, the strategy) is published at once: the leader wakes on every
region state change and checks the rest every tick (0.1 s), so watching clients see it well
within 200 ms. Measurements that move nothing (lag, utilisation, latencies) ride along at most
every ``measurement_interval``, so a busy cluster does not mint a version every tick.

A check builds the whole table, whose cost grows with the number of regions, so the tick
stretches to twenty times what the last check took: checking uses at most a twentieth of a
core. With three regions that changes nothing; with a thousand (some tens of milliseconds a
build) weights that follow utilisation are checked about every half second, while a state
change still wakes the publisher at once.

Versions continue from the table already in etcd, so they rise across leaders; every write is
guarded by the leader key, so a deposed leader cannot publish.
"""

from __future__ import annotations

import asyncio
import logging
import time

from coordinator.etcd import EtcdError
from coordinator.routing.cache import TABLE_KEY, TableCache
from coordinator.routing.latency import PrefixLatencies, latency_model
from coordinator.routing.table import build_table, tables_differ
from coordinator.routing.weights import FailbackRamp
from latitude.enums import short_name
from latitude.v1 import admin_pb2, routing_pb2

log = logging.getLogger(__name__)

TICK = 0.1
# The tick is at least this many times what the last check cost.
TICK_PER_CHECK_COST = 20


class TablePublisher:
    def __init__(self, node, registry, orchestrator, cache: TableCache) -> None:
        self._node = node
        self._registry = registry
        self._orchestrator = orchestrator
        self._cache = cache
        config = node.config
        self._config = config
        self.strategy = routing_pb2.Strategy.Value(f"STRATEGY_{config.routing_strategy.upper()}")
        # Bounded so the table (sent to every watcher on each change) stays small.
        self.latencies = PrefixLatencies(
            max_prefixes=config.latency_prefixes,
            max_per_caller=config.latency_prefixes_per_caller,
        )
        self._ramp = FailbackRamp(ramp_seconds=config.failback_ramp_seconds)
        self._changed = asyncio.Event()
        self._published: routing_pb2.RoutingTable | None = None
        self._published_key: tuple = ()
        self._published_at = 0.0
        self._check_cost = 0.0  # seconds the last build and comparison took

    def changed(self) -> None:
        """Something that may move traffic changed: rebuild now rather than at the next tick."""
        self._changed.set()

    async def run(self) -> None:
        while True:
            try:
                await self._resume()
                break
            except EtcdError as err:
                log.warning("routing: cannot read the published table yet: %s", err)
                await asyncio.sleep(0.2)
        tick = TICK
        while True:
            try:
                async with asyncio.timeout(tick):
                    await self._changed.wait()
            except TimeoutError:
                pass
            self._changed.clear()
            await self.publish_if_changed()
            tick = max(TICK, TICK_PER_CHECK_COST * self._check_cost)

    async def _resume(self) -> None:
        """Continue from the published table: its version, and the strategy it carries."""
        value, _ = await self._node.store.read_at(TABLE_KEY)
        if value:
            self._cache.apply(routing_pb2.RoutingTable.FromString(value))
        if self._cache.table is not None:
            self._published = self._cache.table
            self._published_key = _routing_key(self._published)
            if self._cache.table.default_strategy:
                self.strategy = self._cache.table.default_strategy

    async def set_strategy(self, strategy: int) -> tuple[int, int]:
        """Make ``strategy`` the cluster default; (the previous one, the new table version)."""
        previous, self.strategy = self.strategy, strategy
        if not await self.publish_if_changed(force=True):
            self.strategy = previous
            raise RuntimeError("could not publish the routing table: no longer the leader")
        names = [short_name(routing_pb2.Strategy, s, lower=True) for s in (previous, strategy)]
        self._node.events.record(
            admin_pb2.EVENT_KIND_STRATEGY_CHANGED,
            message=f"default routing strategy {names[1]} (was {names[0]})",
            attributes={"from": names[0], "to": names[1], "table_version": self._cache.version},
        )
        return previous, self._cache.version

    async def publish_if_changed(self, *, force: bool = False) -> bool:
        started = time.perf_counter()
        now = time.time()
        table = self.build(now)
        published = self._published
        key = _routing_key(table)
        self._check_cost = time.perf_counter() - started
        if published is not None and not force:
            if key == self._published_key:
                if (
                    now - self._published_at < self._config.measurement_interval
                    or not tables_differ(table, published)
                ):
                    return True
        table.version = max(self._cache.version, published.version if published else 0) + 1
        if not await self._node.write({TABLE_KEY: table.SerializeToString()}):
            return False
        self._published, self._published_key, self._published_at = table, key, now
        # The leader's own replica serves it at once; the others hear it from etcd.
        self._cache.apply(table)
        return True

    def build(self, now: float) -> routing_pb2.RoutingTable:
        registry = self._registry
        statuses = [registry.status(name) for name in registry.regions]
        reports = {n: r.report for n, r in registry.regions.items() if r.report is not None}
        current = self._orchestrator.current
        in_progress = current is not None and not current.HasField("finished_at")
        config = self._config
        table = build_table(
            statuses,
            write_region="" if in_progress else self._orchestrator.write_region,
            failover_in_progress=in_progress,
            strategy=self.strategy,
            default_max_replica_lag_seconds=config.read_lag_budget_seconds,
            ramp=self._ramp,
            latency_model=latency_model(statuses, reports),
            prefix_latencies=self.latencies.snapshot(now),
            version=0,
            now=now,
            panic_threshold=config.panic_threshold,
            overprovisioning_factor=config.overprovisioning_factor,
        )
        default = config.default_location or self._write_region_location(table)
        if default:
            table.default_location.latitude, table.default_location.longitude = default
        for prefix, (lat, lon) in config.overrides.items():
            table.location_overrides.add(
                network_prefix=prefix, location={"latitude": lat, "longitude": lon}
            )
        return table

    def _write_region_location(self, table: routing_pb2.RoutingTable) -> tuple[float, float]:
        """With no default configured, clients of unknown location go where the primary is."""
        name = table.write_region or self._orchestrator.write_region
        for region in table.regions:
            if region.region == name and region.HasField("location"):
                return region.location.latitude, region.location.longitude
        return ()


def _routing_key(table: routing_pb2.RoutingTable) -> tuple:
    """What moves traffic; any change here is published at once."""
    return (
        table.write_region,
        table.failover_in_progress,
        table.default_strategy,
        tuple(
            (
                r.region,
                r.state,
                r.readable,
                round(r.availability, 3),
                round(r.weight, 2),
                tuple((e.name, e.address) for e in r.endpoints),
            )
            for r in table.regions
        ),
    )

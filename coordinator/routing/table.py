"""The routing table the leader publishes: every region as routing sees it, plus the rules
every resolver applies alike (strategy, lag budget, panic, latency model).

See weights.py for availability, weights and panic, latency.py for the latency figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.routing.weights import (
    DEFAULT_OVERPROVISIONING_FACTOR,
    DEFAULT_PANIC_THRESHOLD,
    FailbackRamp,
    region_availability,
    region_weights,
)
from latitude.v1 import admin_pb2, routing_pb2

# Stamped by the leader on every build; they do not make a table different.
_UNCOMPARED = ("version", "generated_at")


def build_table(
    regions: Sequence[admin_pb2.RegionStatus],
    *,
    write_region: str,
    failover_in_progress: bool,
    strategy: int,
    default_max_replica_lag_seconds: float,
    ramp: FailbackRamp,
    latency_model: routing_pb2.LatencyModel,
    prefix_latencies: Sequence[routing_pb2.PrefixLatency],
    version: int,
    now: float,
    panic_threshold: float = DEFAULT_PANIC_THRESHOLD,
    overprovisioning_factor: float = DEFAULT_OVERPROVISIONING_FACTOR,
) -> routing_pb2.RoutingTable:
    """The table for ``regions`` as of ``now`` (advancing ``ramp``), regions sorted by name.

    Prefix latencies for regions not in ``regions`` are left out.
    """
    statuses = sorted(regions, key=lambda r: r.region)
    availability = {s.region: region_availability(s, ramp, now) for s in statuses}
    weights = region_weights(statuses, availability)
    table = routing_pb2.RoutingTable(
        version=version,
        write_region=write_region,
        default_strategy=strategy,
        default_max_replica_lag_seconds=default_max_replica_lag_seconds,
        failover_in_progress=failover_in_progress,
        latency_model=latency_model,
        panic_threshold=panic_threshold,
        overprovisioning_factor=overprovisioning_factor,
    )
    table.generated_at.FromNanoseconds(int(now * 1e9))
    for status in statuses:
        name = status.region
        route = table.regions.add(
            region=name,
            state=status.state,
            weight=weights[name],
            endpoints=status.endpoints,
            role=status.database.role,
            replay_lag_bytes=status.replay_lag_bytes,
            replay_lag_seconds=status.replay_lag_seconds,
            capacity=status.capacity,
            capacity_utilization=status.capacity_utilization,
            error_rate=status.error_rate,
            response_time_seconds=status.response_time_seconds,
            availability=availability[name],
            readable=availability[name] > 0.0,
        )
        if status.HasField("location"):
            route.location.CopyFrom(status.location)
        if name == write_region:
            route.replay_lag_bytes, route.replay_lag_seconds = 0, 0.0
    known = set(availability)
    table.prefix_latencies.extend(p for p in prefix_latencies if p.region in known)
    return table


def tables_differ(a: routing_pb2.RoutingTable, b: routing_pb2.RoutingTable) -> bool:
    """Whether anything but the version and build time differs (then a new version is due)."""
    return _comparable(a) != _comparable(b)


def _comparable(table: routing_pb2.RoutingTable) -> routing_pb2.RoutingTable:
    copy = routing_pb2.RoutingTable()
    copy.CopyFrom(table)
    for field in _UNCOMPARED:
        copy.ClearField(field)
    return copy

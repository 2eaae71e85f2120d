"""Routing tables built the way the leader builds them, with settings a test may override."""

from __future__ import annotations

from coordinator.routing import FailbackRamp, build_table
from latitude.v1 import routing_pb2


def make_table(statuses, *, ramp=None, now=1000.0, **overrides) -> routing_pb2.RoutingTable:
    arguments = dict(
        write_region="us-east-1",
        failover_in_progress=False,
        strategy=routing_pb2.STRATEGY_GEOGRAPHIC,
        default_max_replica_lag_seconds=30.0,
        ramp=ramp or FailbackRamp(),
        latency_model=routing_pb2.LatencyModel(base_seconds=0.005, seconds_per_km=1.5e-5),
        prefix_latencies=[],
        version=7,
        now=now,
    )
    arguments.update(overrides)
    return build_table(list(statuses), **arguments)

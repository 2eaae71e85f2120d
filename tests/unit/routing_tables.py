"""Three regions, their statuses, and routing tables built the way the leader builds them, with
settings a test may override."""

from __future__ import annotations

from coordinator.routing import FailbackRamp, build_table
from latitude.v1 import admin_pb2, common_pb2, routing_pb2

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-1"
REGIONS = {US: (39.04, -77.49), EU: (53.35, -6.26), AP: (1.35, 103.82)}


def status(name: str, state: int = common_pb2.REGION_STATE_HEALTHY, **fields):
    """A region as the registry reports it: capacity 100 unless given, at its location."""
    fields.setdefault("capacity", 100)
    result = admin_pb2.RegionStatus(region=name, state=state, **fields)
    result.location.latitude, result.location.longitude = REGIONS[name]
    result.endpoints.add(
        name="postgres", kind=common_pb2.ENDPOINT_KIND_POSTGRES, address=f"{name}.db.internal:5432"
    )
    return result


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

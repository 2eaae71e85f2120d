"""A routing decision as a person reads it (``latitude route``), and asking for one."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import json_format

from latitude.admin_client import NoCoordinator
from latitude.channels import open_channel
from latitude.enums import short_name
from latitude.errors import LatitudeError
from latitude.pki import CertFiles
from latitude.table import render
from latitude.v1 import common_pb2, routing_pb2, routing_pb2_grpc


async def resolve(
    addresses: Sequence[str],
    request: routing_pb2.ResolveRequest,
    timeout: float,
    *,
    tls: CertFiles | None = None,
) -> routing_pb2.RoutingDecision:
    """Ask the coordinators in turn (any of them answers) for one routing decision."""
    errors = []
    for address in addresses:
        async with open_channel(address, tls) as channel:
            stub = routing_pb2_grpc.RoutingServiceStub(channel)
            try:
                return await stub.Resolve(request, timeout=timeout)
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise LatitudeError(f"invalid request: {err.details()}") from err
                errors.append(f"{address}: {err.code().name} {err.details() or ''}".strip())
    raise NoCoordinator("no coordinator answered (" + "; ".join(errors) + ")")


def format_decision(decision: routing_pb2.RoutingDecision) -> str:
    strategy = short_name(routing_pb2.Strategy, decision.strategy, lower=True)
    lines = [
        decision.reason,
        f"strategy {strategy} · table version {decision.table_version} · "
        f"write region {decision.write_region or '(none: failover in progress)'}",
    ]
    if decision.HasField("location"):
        source = routing_pb2.LocationSource.Name(decision.location_source)
        lines.append(
            f"client at {decision.location.latitude:.2f},{decision.location.longitude:.2f} "
            f"({source.removeprefix('LOCATION_SOURCE_').lower().replace('_', '-')})"
        )
    if decision.latency_basis:
        lines.append(f"latency: {decision.latency_basis}")
    if decision.no_healthy_region:
        lines.append("PANIC: no region passed the health filters; routing as if all were healthy")
    rows = []
    for target in decision.targets:
        rows.append(
            [
                target.region,
                f"{target.weight:.0%}",
                short_name(common_pb2.RegionState, target.state),
                "primary" if target.writable else "replica",
                f"{target.distance_km:,.0f} km" if target.HasField("distance_km") else "-",
                f"{target.estimated_latency_seconds * 1000:.0f} ms"
                if target.HasField("estimated_latency_seconds")
                else "-",
                f"{target.replay_lag_seconds:.1f} s" if not target.writable else "-",
                ", ".join(f"{e.name}={e.address}" for e in target.endpoints),
            ]
        )
    if rows:
        headers = ["REGION", "WEIGHT", "STATE", "DATABASE", "DISTANCE", "EST. RTT", "LAG",
                   "ENDPOINTS"]  # fmt: skip
        lines += ["", render(headers, rows)]
    else:
        lines += ["", "no region can take this request"]
    return "\n".join(lines)


def decision_json(decision: routing_pb2.RoutingDecision) -> dict:
    return json_format.MessageToDict(decision, preserving_proto_field_name=True)

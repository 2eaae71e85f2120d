"""The status views a person reads at a glance: the control plane's, and the stack's own."""

from __future__ import annotations

import time

from google.protobuf import json_format

from latitude.enums import short_name
from latitude.table import human_bytes, render
from latitude.v1 import admin_pb2, common_pb2, routing_pb2

_ROLES = {
    common_pb2.DATABASE_ROLE_PRIMARY: "primary",
    common_pb2.DATABASE_ROLE_STANDBY: "standby",
    common_pb2.DATABASE_ROLE_DOWN: "down",
    common_pb2.DATABASE_ROLE_UNKNOWN: "unknown",
}


def _state(value: int) -> str:
    return short_name(common_pb2.RegionState, value)


def _role(database: common_pb2.DatabaseStatus) -> str:
    role = _ROLES.get(database.role, "-")
    return role + " (fenced)" if database.fenced else role


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _services(checks) -> str:
    if not checks:
        return "-"
    ok = sum(c.ok for c in checks)
    return f"{ok}/{len(checks)} ok"


def region_rows(status: admin_pb2.ClusterStatus) -> list[list[str]]:
    rows = []
    for r in status.regions:
        standby = r.database.role == common_pb2.DATABASE_ROLE_STANDBY
        age = r.last_report_age_seconds if r.HasField("last_report_age_seconds") else None
        rows.append(
            [
                r.region,
                _state(r.state),
                f"{r.weight:.0%}",
                _role(r.database) if age is not None else "-",
                "never" if age is None else _seconds(age),
                _seconds(r.response_time_seconds) if age is not None else "-",
                f"{r.error_rate:.1%}" if age is not None else "-",
                f"{r.capacity} ({r.capacity_utilization:.0%})" if r.capacity else "-",
                _services(r.checks),
                f"{human_bytes(r.replay_lag_bytes)} / {_seconds(r.replay_lag_seconds)}"
                if standby
                else "-",
                r.state_reason,
            ]
        )
    return rows


def _rtt(peer) -> str:
    if not peer.reachable:
        return "unreachable"
    ms = peer.rtt_seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.0f} ms"


def peer_rtts(status: admin_pb2.ClusterStatus) -> str:
    """RTT from each region (row) to each other region (column), as its agent last measured;
    empty when no agent reports peers."""
    names = [r.region for r in status.regions]
    rows = []
    for r in status.regions:
        seen = {p.region: p for p in r.peers}
        if seen:
            rows.append([r.region] + [_rtt(seen[n]) if n in seen else "-" for n in names])
    if not rows:
        return ""
    return render(["RTT FROM \\ TO", *names], rows)


def format_cluster(status: admin_pb2.ClusterStatus) -> str:
    leader = status.leader
    if leader.leader_id:
        elected = time.time() - leader.elected_at.ToNanoseconds() / 1e9
        head = (
            f"leader {leader.leader_id} at {leader.address} (epoch {leader.epoch}, "
            f"for {_seconds(max(0.0, elected))})"
        )
    else:
        head = "NO LEADER (election in progress, or etcd unreachable)"
    write = status.write_region or "none"
    strategy = short_name(routing_pb2.Strategy, status.strategy, lower=True)
    head += f"; routing {strategy}, table version {status.table_version}"
    regions = render(
        ["REGION", "STATE", "WEIGHT", "ROLE", "LAST REPORT", "RESPONSE", "ERRORS", "CAPACITY",
         "SERVICES", "REPLAY LAG", "REASON"],
        region_rows(status),
    )  # fmt: skip
    members = render(
        ["ETCD", "HEALTH", "LEADER", "PROBLEM"],
        [
            [m.name, "healthy" if m.healthy else "UNHEALTHY", "*" * m.is_leader, m.error]
            for m in status.etcd_members
        ],
    )
    rtts = peer_rtts(status)
    rtts = f"\n\n{rtts}" if rtts else ""
    warning = write_region_warning(status)
    warning = f"\n{warning}" if warning else ""
    return f"{head}; write region: {write}{warning}\n\n{regions}{rtts}\n\n{members}"


def write_region_warning(status: admin_pb2.ClusterStatus) -> str:
    """A line that says writes are refused although no failover is under way: the write
    region's primary is fenced (the leader lifts such a fence once it hears the primary)."""
    region = next((r for r in status.regions if r.region == status.write_region), None)
    if region is None or not region.database.fenced or status.HasField("failover"):
        return ""
    cause = short_name(common_pb2.FenceCause, region.database.fence_cause, lower=True)
    return (
        f"WARNING: the write region's primary ({region.region}) is FENCED ({cause}): it takes "
        "no writes until the leader lifts the fence"
    )


def cluster_json(status: admin_pb2.ClusterStatus) -> dict:
    return json_format.MessageToDict(status, preserving_proto_field_name=True)


_STEPS = ("detected", "drained", "fenced", "selected", "promoted", "redirected", "repointed")


def format_failover(record: admin_pb2.FailoverStatus) -> str:
    """A failover's outcome and the time each step took from its start."""
    kind = short_name(admin_pb2.FailoverKind, record.kind, lower=True)
    phase = short_name(admin_pb2.FailoverPhase, record.phase)
    start = record.started_at.ToNanoseconds()
    lines = [
        f"{kind} {record.failover_id}: {phase}, {record.from_region} -> "
        f"{record.to_region or '(none)'}",
        f"  why: {record.reason}",
    ]
    if record.selection_reason:
        lines.append(f"  chosen: {record.selection_reason}")
    if record.HasField("data_loss_bound_bytes"):
        lines.append(
            f"  data-loss bound: {human_bytes(record.data_loss_bound_bytes)}, "
            f"{record.data_loss_bound_seconds:.1f} s"
        )
    for step in _STEPS:
        if step in record.steps:
            at = (record.steps[step].ToNanoseconds() - start) / 1e9
            lines.append(f"  {step:<11} +{at:.2f} s")
    if record.error:
        lines.append(f"  error: {record.error}")
    return "\n".join(lines)

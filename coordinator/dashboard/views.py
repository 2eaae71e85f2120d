"""What the dashboard shows, as plain JSON-ready dicts: pure functions of the same messages
AdminService answers (ClusterStatus, FailoverStatus, Event) and of history samples, so that the
page and ``latitude status`` never disagree and every figure is unit-tested without a server.

Names are the short enum names people read (HEALTHY, not REGION_STATE_HEALTHY); times are
unix seconds (floats), durations seconds, sizes bytes.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from latitude.enums import short_name
from latitude.v1 import admin_pb2, common_pb2, history_pb2, routing_pb2

# The order a failover stamps its steps in (as ``latitude status`` prints them).
STEPS = ("detected", "drained", "fenced", "selected", "promoted", "redirected", "repointed")
_FINAL = (admin_pb2.FAILOVER_PHASE_COMPLETED, admin_pb2.FAILOVER_PHASE_ABORTED)
_ROLES = {
    common_pb2.DATABASE_ROLE_PRIMARY: "primary",
    common_pb2.DATABASE_ROLE_STANDBY: "standby",
    common_pb2.DATABASE_ROLE_DOWN: "down",
    common_pb2.DATABASE_ROLE_UNKNOWN: "unknown",
}


def _seconds(stamp: Timestamp) -> float:
    return stamp.ToNanoseconds() / 1e9


def _when(message, field: str) -> float | None:
    return _seconds(getattr(message, field)) if message.HasField(field) else None


def region_view(region: admin_pb2.RegionStatus, write_region: str) -> dict[str, Any]:
    database = region.database
    reported = region.HasField("last_report_at")
    standby = database.role == common_pb2.DATABASE_ROLE_STANDBY
    location = region.location if region.HasField("location") else None
    return {
        "name": region.region,
        "state": short_name(common_pb2.RegionState, region.state),
        "reason": region.state_reason,
        "role": _ROLES.get(database.role, "") if reported else "",
        "fenced": database.fenced,
        "fence_cause": short_name(common_pb2.FenceCause, database.fence_cause, lower=True)
        if database.fenced
        else "",
        "write": region.region == write_region,
        "weight": region.weight,
        "lag_bytes": region.replay_lag_bytes if standby else None,
        "lag_seconds": region.replay_lag_seconds if standby else None,
        "streaming": database.wal_receiver_streaming if standby else None,
        "upstream": database.upstream_region if standby else "",
        "timeline": database.timeline_id,
        "last_report_age": region.last_report_age_seconds
        if region.HasField("last_report_age_seconds")
        else None,
        "agent_connected": region.agent_connected,
        "response_ms": region.response_time_seconds * 1000,
        "error_rate": region.error_rate,
        "utilization": region.capacity_utilization,
        "capacity": region.capacity,
        "location": {"latitude": location.latitude, "longitude": location.longitude}
        if location is not None
        else None,
    }


def _stamped_order(item: tuple[str, Timestamp]) -> tuple[float, int]:
    name, at = item  # steps stamped in the same instant keep their usual order
    return _seconds(at), STEPS.index(name) if name in STEPS else len(STEPS)


def failover_view(record: admin_pb2.FailoverStatus) -> dict[str, Any]:
    """A failover and its steps: those done in the order they were stamped, with their time
    from the start; then, while it runs, the ones still to come (the first of them is what
    it is doing now); after an abort, none."""
    running = record.phase not in _FINAL
    start = _seconds(record.started_at)
    done = sorted(record.steps.items(), key=_stamped_order)
    steps = [
        {"name": name, "status": "done", "at": _seconds(at), "after": _seconds(at) - start}
        for name, at in done
    ]
    if running:
        # "drained" is stamped only by some kinds, so it is never shown as still to come.
        to_come = [s for s in STEPS if s not in record.steps and s != "drained"]
        for i, name in enumerate(to_come):
            status = "current" if i == 0 else "pending"
            steps.append({"name": name, "status": status, "at": None, "after": None})
    return {
        "id": record.failover_id,
        "kind": short_name(admin_pb2.FailoverKind, record.kind),
        "phase": short_name(admin_pb2.FailoverPhase, record.phase),
        "running": running,
        "from": record.from_region,
        "to": record.to_region,
        "reason": record.reason,
        "forced": record.forced,
        "error": record.error,
        "started_at": start,
        "updated_at": _when(record, "updated_at"),
        "finished_at": _when(record, "finished_at"),
        "selection_reason": record.selection_reason,
        "data_loss_bytes": record.data_loss_bound_bytes
        if record.HasField("data_loss_bound_bytes")
        else None,
        "data_loss_seconds": record.data_loss_bound_seconds
        if record.HasField("data_loss_bound_seconds")
        else None,
        "steps": steps,
    }


def status_view(
    status: admin_pb2.ClusterStatus, last_failover: admin_pb2.FailoverStatus | None = None
) -> dict[str, Any]:
    """The page's whole picture. ``status`` is what GetStatus answered (it carries only a
    running failover); ``last_failover`` is the newest failover record, running or finished,
    so that a failover that just completed stays on the page with its steps."""
    leader = status.leader
    failover = status.failover if status.HasField("failover") else last_failover
    if failover is not None and not failover.failover_id:
        failover = None
    return {
        "generated_at": _when(status, "generated_at"),
        "responder": status.responder_id,
        "leader": {
            "id": leader.leader_id,
            "address": leader.address,
            "epoch": leader.epoch,
            "elected_at": _when(leader, "elected_at"),
        }
        if leader.leader_id
        else None,
        "write_region": status.write_region,
        "strategy": short_name(routing_pb2.Strategy, status.strategy) if status.strategy else "",
        "table_version": status.table_version,
        "regions": [region_view(r, status.write_region) for r in status.regions],
        "etcd": [
            {"name": m.name, "healthy": m.healthy, "leader": m.is_leader, "error": m.error}
            for m in status.etcd_members
        ],
        "failover": failover_view(failover) if failover is not None else None,
    }


def event_view(event: admin_pb2.Event) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "at": _seconds(event.time),
        "kind": short_name(admin_pb2.EventKind, event.kind),
        "severity": short_name(admin_pb2.Severity, event.severity),
        "region": event.region,
        "message": event.message,
        "failover_id": event.failover_id,
    }


def history_view(answer: history_pb2.GetHistoryResponse) -> dict[str, Any]:
    """A region's recent history for the chart, from what GetHistory answered."""
    return {
        "region": answer.region,
        "resolution_seconds": answer.resolution_seconds,
        "samples": [
            {
                "at": s.at_ms / 1000,
                "state": short_name(common_pb2.RegionState, s.state),
                "role": _ROLES.get(s.role, ""),
                "lag_bytes": s.replay_lag_bytes,
                "lag_seconds": s.replay_lag_seconds,
                "weight": s.weight,
                "response_ms": s.response_time_seconds * 1000,
            }
            for s in answer.samples
        ],
    }


def incident_view(incident: Any) -> dict[str, Any]:
    """An open incident (AdminService.ListIncidents' Incident): what the panel lists."""
    return {
        "id": incident.id,
        "cause": incident.cause,
        "severity": short_name(admin_pb2.Severity, incident.severity),
        "regions": list(incident.regions),
        "summary": incident.summary,
        "awaiting": list(incident.awaiting),
        "opened_at": _seconds(incident.opened_at),
    }

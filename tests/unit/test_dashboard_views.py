"""The dashboard's view functions: what the page is told about regions, failovers, events and
history, from the same messages AdminService answers."""

from __future__ import annotations

from types import SimpleNamespace

from google.protobuf.timestamp_pb2 import Timestamp

from coordinator.dashboard import views
from latitude.v1 import admin_pb2, common_pb2, history_pb2, routing_pb2

T0 = 1_800_000_000.0


def stamp(message, seconds: float) -> None:
    message.FromNanoseconds(int(seconds * 1e9))


def cluster() -> admin_pb2.ClusterStatus:
    status = admin_pb2.ClusterStatus(
        responder_id="coordinator-3",
        write_region="us-east-1",
        strategy=routing_pb2.STRATEGY_LATENCY,
        table_version=12,
    )
    stamp(status.generated_at, T0 + 10)
    status.leader.leader_id = "coordinator-1"
    status.leader.address = "10.0.0.1:7000"
    status.leader.epoch = 4
    stamp(status.leader.elected_at, T0)
    primary = status.regions.add(
        region="us-east-1",
        state=common_pb2.REGION_STATE_HEALTHY,
        state_reason="reporting on time",
        weight=0.5,
        replay_lag_bytes=0,
        response_time_seconds=0.012,
        capacity=100,
        capacity_utilization=0.25,
        last_report_age_seconds=0.4,
    )
    primary.database.role = common_pb2.DATABASE_ROLE_PRIMARY
    stamp(primary.last_report_at, T0 + 9.6)
    primary.location.latitude, primary.location.longitude = 38.9, -77.0
    standby = status.regions.add(
        region="eu-west-1",
        state=common_pb2.REGION_STATE_DEGRADED,
        state_reason="lag past the budget",
        weight=0.25,
        replay_lag_bytes=4096,
        replay_lag_seconds=1.5,
    )
    standby.database.role = common_pb2.DATABASE_ROLE_STANDBY
    standby.database.wal_receiver_streaming = True
    standby.database.upstream_region = "us-east-1"
    stamp(standby.last_report_at, T0 + 9.9)
    status.regions.add(region="ap-southeast-1", state=common_pb2.REGION_STATE_PENDING)
    return status


def failover(phase: int, steps: dict[str, float]) -> admin_pb2.FailoverStatus:
    record = admin_pb2.FailoverStatus(
        failover_id="7f3a9c01",
        kind=admin_pb2.FAILOVER_KIND_AUTOMATIC,
        phase=phase,
        from_region="us-east-1",
        to_region="eu-west-1",
        reason="us-east-1 failed: no report for 3.1 s",
    )
    stamp(record.started_at, T0)
    for name, after in steps.items():
        stamp(record.steps[name], T0 + after)
    return record


def test_regions_say_state_role_lag_weight_and_which_takes_writes():
    view = views.status_view(cluster())
    regions = {r["name"]: r for r in view["regions"]}
    assert [r["name"] for r in view["regions"]] == ["us-east-1", "eu-west-1", "ap-southeast-1"]
    primary, standby = regions["us-east-1"], regions["eu-west-1"]
    pending = regions["ap-southeast-1"]
    assert (primary["state"], primary["role"], primary["write"]) == ("HEALTHY", "primary", True)
    assert primary["lag_bytes"] is None, "a primary has no replay lag"
    assert primary["response_ms"] == 12.0
    assert primary["location"] == {"latitude": 38.9, "longitude": -77.0}
    assert (standby["state"], standby["role"], standby["write"]) == ("DEGRADED", "standby", False)
    assert (standby["lag_bytes"], standby["lag_seconds"]) == (4096, 1.5)
    assert standby["weight"] == 0.25
    assert standby["upstream"] == "us-east-1" and standby["streaming"] is True
    assert standby["reason"] == "lag past the budget"
    # Never reported: no role, no age, no location to draw it at.
    assert (pending["state"], pending["role"], pending["last_report_age"]) == ("PENDING", "", None)
    assert pending["location"] is None


def test_the_leader_strategy_and_responder_are_named():
    view = views.status_view(cluster())
    assert view["leader"] == {
        "id": "coordinator-1",
        "address": "10.0.0.1:7000",
        "epoch": 4,
        "elected_at": T0,
    }
    assert view["strategy"] == "LATENCY"
    assert (view["table_version"], view["responder"]) == (12, "coordinator-3")
    assert view["write_region"] == "us-east-1"
    assert view["failover"] is None


def test_no_leader_is_said_so_rather_than_an_empty_one():
    status = cluster()
    status.ClearField("leader")
    status.strategy = routing_pb2.STRATEGY_UNSPECIFIED
    view = views.status_view(status)
    assert view["leader"] is None
    assert view["strategy"] == ""


def test_a_running_failover_lists_its_steps_done_then_the_current_one_then_the_rest():
    record = failover(
        admin_pb2.FAILOVER_PHASE_PROMOTING,
        {"detected": 0.0, "drained": 0.0, "fenced": 3.2, "selected": 3.3},
    )
    view = views.failover_view(record)
    assert view["running"] and view["phase"] == "PROMOTING" and view["kind"] == "AUTOMATIC"
    steps = [(s["name"], s["status"]) for s in view["steps"]]
    assert steps == [
        ("detected", "done"),
        ("drained", "done"),
        ("fenced", "done"),
        ("selected", "done"),
        ("promoted", "current"),
        ("redirected", "pending"),
        ("repointed", "pending"),
    ]
    assert [round(s["after"], 2) for s in view["steps"][:4]] == [0.0, 0.0, 3.2, 3.3]
    assert view["steps"][4]["after"] is None


def test_a_completed_failover_has_only_done_steps_in_the_order_they_happened():
    record = failover(
        admin_pb2.FAILOVER_PHASE_COMPLETED,
        {"detected": 0, "fenced": 3.1, "selected": 3.2, "promoted": 4.0, "redirected": 4.1,
         "repointed": 5.5},
    )  # fmt: skip
    stamp(record.finished_at, T0 + 5.6)
    record.data_loss_bound_seconds = 0.8
    view = views.failover_view(record)
    assert not view["running"]
    assert [s["name"] for s in view["steps"]] == [
        "detected", "fenced", "selected", "promoted", "redirected", "repointed",
    ]  # fmt: skip
    assert {s["status"] for s in view["steps"]} == {"done"}
    assert view["finished_at"] == T0 + 5.6
    assert (view["data_loss_seconds"], view["data_loss_bytes"]) == (0.8, None)


def test_an_aborted_failover_promises_no_steps_to_come():
    record = failover(admin_pb2.FAILOVER_PHASE_ABORTED, {"detected": 0, "fenced": 1})
    record.error = "no standby could be promoted"
    view = views.failover_view(record)
    assert [s["status"] for s in view["steps"]] == ["done", "done"]
    assert view["error"] == "no standby could be promoted"


def test_the_running_failover_wins_over_the_last_one_and_the_last_one_stays_shown():
    status = cluster()
    older = failover(admin_pb2.FAILOVER_PHASE_COMPLETED, {"detected": 0})
    older.failover_id = "older"
    assert views.status_view(status, older)["failover"]["id"] == "older"
    status.failover.CopyFrom(failover(admin_pb2.FAILOVER_PHASE_FENCING, {"detected": 0}))
    assert views.status_view(status, older)["failover"]["id"] == "7f3a9c01"
    assert views.status_view(cluster(), admin_pb2.FailoverStatus())["failover"] is None


def test_events_carry_their_sequence_time_and_short_names():
    event = admin_pb2.Event(
        sequence=42,
        kind=admin_pb2.EVENT_KIND_PROMOTED,
        severity=admin_pb2.SEVERITY_WARNING,
        region="eu-west-1",
        message="promoted eu-west-1 (timeline 3)",
        failover_id="7f3a9c01",
    )
    stamp(event.time, T0 + 4)
    assert views.event_view(event) == {
        "sequence": 42,
        "at": T0 + 4,
        "kind": "PROMOTED",
        "severity": "WARNING",
        "region": "eu-west-1",
        "message": "promoted eu-west-1 (timeline 3)",
        "failover_id": "7f3a9c01",
    }


def test_history_is_the_samples_in_seconds_with_state_names():
    answer = history_pb2.GetHistoryResponse(region="eu-west-1", resolution_seconds=5.0)
    answer.samples.add(
        at_ms=int(T0 * 1000),
        state=common_pb2.REGION_STATE_HEALTHY,
        weight=0.33,
        response_time_seconds=0.002,
        role=common_pb2.DATABASE_ROLE_STANDBY,
    )
    answer.samples.add(
        at_ms=int(T0 * 1000) + 5000,
        state=common_pb2.REGION_STATE_UNHEALTHY,
        replay_lag_bytes=8192,
        replay_lag_seconds=2.5,
    )
    view = views.history_view(answer)
    assert (view["region"], view["resolution_seconds"]) == ("eu-west-1", 5.0)
    assert [s["state"] for s in view["samples"]] == ["HEALTHY", "UNHEALTHY"]
    assert view["samples"][0]["response_ms"] == 2.0
    assert view["samples"][0]["role"] == "standby"
    assert view["samples"][1] == {
        "at": T0 + 5,
        "state": "UNHEALTHY",
        "role": "",
        "lag_bytes": 8192,
        "lag_seconds": 2.5,
        "weight": 0.0,
        "response_ms": 0.0,
    }


def test_an_incident_is_listed_by_severity_cause_regions_and_what_it_waits_for():
    opened = Timestamp()
    stamp(opened, T0)
    incident = SimpleNamespace(
        id="inc-42",
        cause="region_unhealthy",
        severity=admin_pb2.SEVERITY_CRITICAL,
        regions=["us-east-1"],
        summary="us-east-1: HEALTHY -> UNHEALTHY (no report for over 1.5 s)",
        awaiting=["us-east-1 healthy", "failover 7f3a9c finished"],
        opened_at=opened,
    )
    assert views.incident_view(incident) == {
        "id": "inc-42",
        "cause": "region_unhealthy",
        "severity": "CRITICAL",
        "regions": ["us-east-1"],
        "summary": "us-east-1: HEALTHY -> UNHEALTHY (no report for over 1.5 s)",
        "awaiting": ["us-east-1 healthy", "failover 7f3a9c finished"],
        "opened_at": T0,
    }

"""Refused calls become events on the leader only, at a bounded rate that says what it left
out."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from coordinator.config import CoordinatorConfig
from coordinator.refusals import RefusalEvents
from latitude.pki import Identity
from latitude.v1 import admin_pb2

SET_STRATEGY = "/latitude.v1.AdminService/SetStrategy"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Events:
    recorded: list[tuple] = field(default_factory=list)

    def record(self, kind, severity, **details) -> None:
        self.recorded.append((kind, severity, details))


@dataclass
class Node:
    is_leader: bool = True
    config: CoordinatorConfig = field(default_factory=CoordinatorConfig)
    events: Events = field(default_factory=Events)


def test_the_leader_records_who_was_refused_what():
    node = Node()
    RefusalEvents(node)(
        Identity("agent", "eu-west-1"), SET_STRATEGY, grpc.StatusCode.PERMISSION_DENIED
    )
    RefusalEvents(node)(None, SET_STRATEGY, grpc.StatusCode.UNAUTHENTICATED)
    (kind, severity, first), (_, _, second) = node.events.recorded
    assert kind == admin_pb2.EVENT_KIND_ACCESS_REFUSED
    assert severity == admin_pb2.SEVERITY_WARNING
    assert first["region"] == "eu-west-1"
    assert first["message"] == (
        f"refused {SET_STRATEGY} to agent of eu-west-1 (latitude://region/eu-west-1): "
        "PERMISSION_DENIED"
    )
    assert first["attributes"] == {
        "method": SET_STRATEGY,
        "code": "PERMISSION_DENIED",
        "identity": "latitude://region/eu-west-1",
    }
    assert second["region"] == ""
    assert second["attributes"]["identity"] == ""
    assert "a caller without identity" in second["message"]


def test_a_region_outside_the_configuration_is_not_an_events_region():
    node = Node()
    RefusalEvents(node)(
        Identity("agent", "mars-1"), SET_STRATEGY, grpc.StatusCode.PERMISSION_DENIED
    )
    assert node.events.recorded[0][2]["region"] == ""


def test_a_follower_records_nothing():
    node = Node(is_leader=False)
    RefusalEvents(node)(Identity("reader"), SET_STRATEGY, grpc.StatusCode.PERMISSION_DENIED)
    assert node.events.recorded == []


def test_a_flood_is_recorded_at_a_bounded_rate():
    node, clock = Node(), Clock()
    events = RefusalEvents(node, burst=3, clock=clock)
    for _ in range(1000):
        events(Identity("reader"), SET_STRATEGY, grpc.StatusCode.PERMISSION_DENIED)
    assert len(node.events.recorded) == 3
    clock.now += 20.0  # a token back (3 a minute)
    events(Identity("reader"), SET_STRATEGY, grpc.StatusCode.PERMISSION_DENIED)
    assert len(node.events.recorded) == 4
    assert node.events.recorded[-1][2]["message"].endswith("(997 more refusals not recorded)")

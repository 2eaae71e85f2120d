"""Checks on what agents send, before any of it reaches the registry.

Each failure names the offending field the way a client author sees it in the .proto
(``hello.location.latitude``, ``report.checks[2].latency_seconds``), so a broken agent learns
exactly what to fix from the INVALID_ARGUMENT status it receives.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from latitude.errors import LatitudeError
from latitude.v1 import agent_pb2, common_pb2

MAX_NAME = 128
MAX_CHECKS = 64
MAX_PEERS = 64
MAX_ENDPOINTS = 16
# Utilisation may exceed 1 when overloaded; anything past this is a unit mistake.
MAX_UTILIZATION = 100.0


class InvalidMessage(LatitudeError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def check_hello(hello: agent_pb2.Hello, regions: Collection[str]) -> None:
    _name(hello.region, "hello.region")
    if hello.region not in regions:
        known = ", ".join(sorted(regions))
        raise InvalidMessage("hello.region", f"unknown region {hello.region!r} (known: {known})")
    _name(hello.agent_id, "hello.agent_id")
    if not hello.HasField("location"):
        raise InvalidMessage("hello.location", "required")
    _within(hello.location.latitude, -90, 90, "hello.location.latitude")
    _within(hello.location.longitude, -180, 180, "hello.location.longitude")
    if hello.capacity == 0:
        raise InvalidMessage("hello.capacity", "must be greater than 0")
    if len(hello.endpoints) > MAX_ENDPOINTS:
        raise InvalidMessage("hello.endpoints", f"at most {MAX_ENDPOINTS} endpoints")
    postgres = 0
    for i, endpoint in enumerate(hello.endpoints):
        _name(endpoint.name, f"hello.endpoints[{i}].name")
        if not endpoint.address or len(endpoint.address) > 512:
            raise InvalidMessage(f"hello.endpoints[{i}].address", "required, at most 512 chars")
        if endpoint.kind == common_pb2.ENDPOINT_KIND_UNSPECIFIED:
            raise InvalidMessage(f"hello.endpoints[{i}].kind", "required")
        postgres += endpoint.kind == common_pb2.ENDPOINT_KIND_POSTGRES
    if postgres != 1:
        raise InvalidMessage(
            "hello.endpoints", f"need exactly one POSTGRES endpoint, got {postgres}"
        )


def check_report(report: agent_pb2.Report, previous_sequence: int) -> None:
    if report.sequence <= previous_sequence:
        raise InvalidMessage(
            "report.sequence", f"{report.sequence} does not follow {previous_sequence}"
        )
    if not report.HasField("sent_at"):
        raise InvalidMessage("report.sent_at", "required")
    _within(report.capacity_utilization, 0, MAX_UTILIZATION, "report.capacity_utilization")
    _within(report.error_rate, 0, 1, "report.error_rate")
    _non_negative(report.response_time_seconds, "report.response_time_seconds")
    if len(report.checks) > MAX_CHECKS:
        raise InvalidMessage("report.checks", f"at most {MAX_CHECKS} checks")
    # Field names with an index are formatted only for an error: this runs on every report.
    for i, check in enumerate(report.checks):
        _name(check.name, "report.checks[{}].name", i)
        _non_negative(check.latency_seconds, "report.checks[{}].latency_seconds", i)
    if len(report.peers) > MAX_PEERS:
        raise InvalidMessage("report.peers", f"at most {MAX_PEERS} peers")
    for i, peer in enumerate(report.peers):
        _name(peer.region, "report.peers[{}].region", i)
        _non_negative(peer.rtt_seconds, "report.peers[{}].rtt_seconds", i)
    database = report.database
    _non_negative(database.replay_lag_seconds, "report.database.replay_lag_seconds")
    for i, replica in enumerate(database.replicas):
        _non_negative(
            replica.replay_lag_seconds, "report.database.replicas[{}].replay_lag_seconds", i
        )


def _name(value: str, field: str, *index: int) -> None:
    """``field`` with ``{}`` for each of ``index`` (filled in only for an error)."""
    if not value:
        raise InvalidMessage(field.format(*index), "required")
    if len(value) > MAX_NAME:
        raise InvalidMessage(field.format(*index), f"longer than {MAX_NAME} characters")


def _within(value: float, low: float, high: float, field: str) -> None:
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidMessage(field, f"must be a number within {low}..{high}, got {value}")


def _non_negative(value: float, field: str, *index: int) -> None:
    if not math.isfinite(value) or value < 0:
        raise InvalidMessage(field.format(*index), f"must be a finite number >= 0, got {value}")

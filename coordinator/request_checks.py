"""Checks on what clients send to AdminService and RoutingService, before a handler uses it.

Each failure is an InvalidRequest naming the field as the .proto does (``since``,
``samples[2].measured_at``), which the handler answers with INVALID_ARGUMENT. They exist so
that no bad field escapes as UNKNOWN (a protobuf Timestamp out of its range raises ValueError
when read) and no caller-chosen text grows without bound: strings that end up in etcd, in
events or echoed in an error are bounded, and an error quotes at most the start of one
(``details``), since status details travel in trailers, which a client refuses past 8 KiB.
"""

from __future__ import annotations

import math

from google.protobuf.timestamp_pb2 import Timestamp

from coordinator.events import InvalidRequest
from latitude.v1 import admin_pb2, routing_pb2

__all__ = ["InvalidRequest", "details"]

# A region, agent or table name.
MAX_NAME = 128
# Free text an operator gives (a failover's or a maintenance's reason).
MAX_REASON = 1_000
# An IP address or CIDR prefix as text, with room for an IPv6 zone.
MAX_ADDRESS = 64
# VerifyRequest.tables entries, and how long a standby may be waited for.
MAX_TABLES = 1_000
MAX_REPLAY_WAIT = 3_600.0
# Status details quote at most this much.
MAX_DETAILS = 1_000
# ReportLatency: samples per call.
MAX_SAMPLES = 64

# google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def details(message: str) -> str:
    """``message`` short enough for a status's details."""
    if len(message) <= MAX_DETAILS:
        return message
    return f"{message[: MAX_DETAILS - 30]}... ({len(message)} characters)"


def timestamp(value: Timestamp, field: str) -> float:
    """Seconds since the epoch; InvalidRequest when outside a Timestamp's range."""
    if not _MIN_SECONDS <= value.seconds <= _MAX_SECONDS or not 0 <= value.nanos < 10**9:
        raise InvalidRequest(
            field,
            f"not a valid timestamp (seconds {value.seconds}, nanos {value.nanos}): it must be "
            "within 0001-01-01 and 9999-12-31, nanos within 0..999999999",
        )
    return value.seconds + value.nanos / 1e9


def text(value: str, field: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidRequest(field, f"at most {limit} characters, got {len(value)}")


def name(value: str, field: str) -> None:
    text(value, field, MAX_NAME)


def list_events(request: admin_pb2.ListEventsRequest) -> None:
    name(request.region, "region")
    if request.HasField("since"):
        timestamp(request.since, "since")
    if len(request.kinds) > len(admin_pb2.EventKind.values()):
        raise InvalidRequest("kinds", f"at most {len(admin_pb2.EventKind.values())} kinds")


def target(request) -> None:
    """SwitchoverRequest and FailoverRequest."""
    name(request.target_region, "target_region")
    if isinstance(request, admin_pb2.FailoverRequest):
        text(request.reason, "reason", MAX_REASON)


def set_maintenance(request: admin_pb2.SetMaintenanceRequest) -> None:
    name(request.region, "region")
    text(request.reason, "reason", MAX_REASON)


def get_history(region: str) -> None:
    name(region, "region")


def verify(request: admin_pb2.VerifyRequest) -> None:
    if len(request.tables) > MAX_TABLES:
        raise InvalidRequest("tables", f"at most {MAX_TABLES}, got {len(request.tables)}")
    for i, table in enumerate(request.tables):
        text(table, f"tables[{i}]", 2 * MAX_NAME + 1)
    wait = request.replay_wait_seconds
    if not math.isfinite(wait) or wait > MAX_REPLAY_WAIT:
        raise InvalidRequest(
            "replay_wait_seconds", f"at most {MAX_REPLAY_WAIT:.0f} s (0: 30 s), got {wait}"
        )


def latency_report(request: routing_pb2.LatencyReport) -> None:
    """What RoutingService's own checks read before they parse: lengths and timestamps."""
    if len(request.samples) > MAX_SAMPLES:
        raise InvalidRequest(
            "samples", f"at most {MAX_SAMPLES} per report, got {len(request.samples)}"
        )
    text(request.network_prefix, "network_prefix", MAX_ADDRESS)
    text(request.client_ip, "client_ip", MAX_ADDRESS)
    for i, sample in enumerate(request.samples):
        name(sample.region, f"samples[{i}].region")
        if sample.HasField("measured_at"):
            timestamp(sample.measured_at, f"samples[{i}].measured_at")

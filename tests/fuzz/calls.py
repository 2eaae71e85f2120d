"""Every RPC of latitude.v1, found by walking the file descriptors, and one way to call any of
them with bytes: the fuzz tests send what they drew exactly as drawn, and get back the status
code (and, for streams, how many messages came before it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from latitude.v1 import admin_pb2, agent_pb2, common_pb2, history_pb2, routing_pb2

MODULES = (admin_pb2, agent_pb2, common_pb2, history_pb2, routing_pb2)
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
_STRATEGIES = [s for s in routing_pb2.Strategy.values() if s != routing_pb2.STRATEGY_UNSPECIFIED]
# A failing example holds strings of 70,000 characters: Hypothesis warns that printing it is
# costly, and the suite's warnings-as-errors would put that warning in the failure's place.
LARGE_REPRS = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
# A server bug, whatever the input: nothing a client sends may end in one of these.
BUGS = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def _unknown(region: str) -> bool:
    return region not in REGIONS


# Calls that change the cluster when valid, by "Service.Method": the requests that leave a
# shared stack as it is (the refused ones, for those in MUST_REFUSE: checked refused).
KEEPS_CLUSTER: dict[str, Callable[[Message], bool]] = {
    "AdminService.SetStrategy": lambda r: r.strategy not in _STRATEGIES,
    "AdminService.Switchover": lambda r: bool(r.target_region) and _unknown(r.target_region),
    "AdminService.Failover": lambda r: bool(r.target_region) and _unknown(r.target_region),
    "AdminService.SetMaintenance": lambda r: _unknown(r.region),
    # Not refused, but samples for no region of the deployment are dropped.
    "RoutingService.ReportLatency": lambda r: all(_unknown(s.region) for s in r.samples),
}
MUST_REFUSE = frozenset(KEEPS_CLUSTER) - {"RoutingService.ReportLatency"}


def methods() -> list[MethodDescriptor]:
    """Every method of every service latitude.v1 defines."""
    found = []
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            found.extend(service.methods)
    return sorted(found, key=lambda m: m.full_name)


def path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


# Bugs these tests found whose fix belongs to someone else's change: tolerated, by
# "Service.Method" and the start of the exact message, until that fix is merged; delete the
# entry then. Empty: ListEvents' and ReportLatency's out-of-range timestamps (UNKNOWN from a
# ValueError) were fixed by issue 11's bounds part. Nothing else may answer UNKNOWN or INTERNAL.
FIXED_ELSEWHERE: dict[str, str] = {}


def is_bug(method: str, code: grpc.StatusCode, details: str) -> bool:
    """Whether ``code`` is a server bug (UNKNOWN, INTERNAL) not in FIXED_ELSEWHERE;
    ``method`` is "Service.Method"."""
    known = FIXED_ELSEWHERE.get(method)
    if known and code == grpc.StatusCode.UNKNOWN and details.startswith(known):
        return False
    return code in BUGS


def refused(code: grpc.StatusCode, details: str) -> bool:
    """Whether the server refused the request: INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for a
    message past its size limit."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return not lost(code, details)
    return code == grpc.StatusCode.INVALID_ARGUMENT


def lost(code: grpc.StatusCode, details: str) -> bool:
    """Whether the client never got the server's status: its details passed the client's
    metadata limit, so grpc answered RESOURCE_EXHAUSTED in the server's place."""
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and "metadata size exceeds" in details


@dataclass(frozen=True, slots=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: int

    def __str__(self) -> str:
        return f"{self.code.name} after {self.responses} responses: {self.details[:300]!r}"


def call(
    channel: grpc.Channel,
    method: MethodDescriptor,
    requests: bytes | Sequence[bytes],
    timeout: float,
    *,
    max_responses: int = 1,
) -> Outcome:
    """Call ``method`` with serialized ``requests`` (one, or a sequence for a client stream);
    a server stream is read for at most ``max_responses`` messages, then cancelled."""
    identity = dict(request_serializer=None, response_deserializer=None)
    name = path(method)
    if method.client_streaming:
        messages: Iterable[bytes] = iter(list(requests))
    else:
        assert isinstance(requests, bytes)
    received = 0
    try:
        if not method.server_streaming:
            if method.client_streaming:
                channel.stream_unary(name, **identity)(messages, timeout=timeout)
            else:
                channel.unary_unary(name, **identity)(requests, timeout=timeout)
            return Outcome(grpc.StatusCode.OK, "", 1)
        if method.client_streaming:
            stream = channel.stream_stream(name, **identity)(messages, timeout=timeout)
        else:
            stream = channel.unary_stream(name, **identity)(requests, timeout=timeout)
        for _ in stream:
            received += 1
            if received >= max_responses and not method.client_streaming:
                stream.cancel()
                return Outcome(grpc.StatusCode.OK, "read enough", received)
        return Outcome(grpc.StatusCode.OK, "", received)
    except grpc.RpcError as err:
        return Outcome(err.code(), err.details() or "", received)

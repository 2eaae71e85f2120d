"""The strategies themselves: every message of latitude.v1 can be drawn and sent, and the edge
cases the fuzz tests rely on are really drawn (a strategy that never yields NaN or invalid
UTF-8 would let the RPC tests pass without testing anything)."""

from __future__ import annotations

import math

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from latitude.v1 import admin_pb2, agent_pb2, common_pb2, history_pb2, routing_pb2
from tests.fuzz import calls, strategies
from tests.fuzz.strategies import message_strategy, wire_strategy

pytestmark = [pytest.mark.fuzz, calls.LARGE_REPRS]

MODULES = (admin_pb2, agent_pb2, common_pb2, history_pb2, routing_pb2)
MESSAGES = sorted(
    (d for m in MODULES for d in m.DESCRIPTOR.message_types_by_name.values()),
    key=lambda d: d.full_name,
)
FAST = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("descriptor", MESSAGES, ids=lambda d: d.name)
def test_every_message_is_drawn_and_round_trips(descriptor):
    @FAST
    @given(message_strategy(descriptor))
    def round_trips(message):
        assert message.DESCRIPTOR is descriptor
        body = message.SerializeToString()
        assert type(message).FromString(body) == message or _has_nan(message)

    round_trips()


def _has_nan(message) -> bool:
    """NaN != NaN: a message holding one never equals its own copy."""
    return "nan" in str(message)


def find(strategy, condition):
    """The first drawn example meeting ``condition`` (the strategy can produce it)."""
    from hypothesis import find as hypothesis_find

    # Found is enough: no shrinking, which costs more than the search.
    quick = settings(max_examples=2000, derandomize=True, database=None, phases=[Phase.generate])
    return hypothesis_find(strategy, condition, settings=quick)


def test_edge_values_are_drawn():
    report = message_strategy(agent_pb2.Report.DESCRIPTOR)
    assert math.isnan(find(report, lambda r: math.isnan(r.error_rate)).error_rate)
    assert find(report, lambda r: r.sequence == 2**64 - 1)
    request = message_strategy(routing_pb2.ResolveRequest.DESCRIPTOR)
    assert find(request, lambda r: r.strategy not in routing_pb2.Strategy.values())
    assert find(request, lambda r: r.HasField("max_replica_lag_seconds"))
    assert find(request, lambda r: len(r.client_ip) > 10_000)
    events = message_strategy(admin_pb2.ListEventsRequest.DESCRIPTOR)
    assert find(events, lambda r: r.since.seconds == -(2**63))
    assert find(events, lambda r: r.since.nanos >= 10**9)


def test_oneofs_set_one_field_and_maps_are_filled():
    messages = message_strategy(agent_pb2.AgentMessage.DESCRIPTOR)
    assert find(messages, lambda m: m.WhichOneof("body") == "report")
    assert find(messages, lambda m: m.WhichOneof("body") is None) is not None
    # A map of messages (Timestamps), and a map of strings.
    status = message_strategy(admin_pb2.FailoverStatus.DESCRIPTOR, depth=1)
    assert find(status, lambda s: len(s.steps) > 1)
    event = message_strategy(admin_pb2.Event.DESCRIPTOR, depth=1)
    assert find(event, lambda e: len(e.attributes) > 1)


def test_words_are_drawn_so_examples_get_past_lookups():
    strategy = message_strategy(admin_pb2.SetMaintenanceRequest.DESCRIPTOR, words=["eu-west-1"])
    assert find(strategy, lambda r: r.region == "eu-west-1")


def test_the_wire_strategy_reaches_what_the_python_api_cannot():
    """Invalid UTF-8 inside a nested string field, in an encoding that is otherwise valid."""
    wire = wire_strategy(agent_pb2.AgentMessage.DESCRIPTOR)

    def bad_utf8(body: bytes) -> bool:
        try:
            agent_pb2.AgentMessage.FromString(body)
        except DecodeError as err:
            return "UTF-8" in str(err)
        return False

    assert find(wire, bad_utf8)
    assert find(wire, lambda body: _refused(agent_pb2.AgentMessage, body))
    assert find(wire, lambda body: not _refused(agent_pb2.AgentMessage, body)) is not None


def _refused(cls, body: bytes) -> bool:
    try:
        cls.FromString(body)
    except DecodeError:
        return True
    return False


def test_varint_and_tags_encode_as_protobuf_does():
    location = common_pb2.Location(latitude=1.0).SerializeToString()
    assert location[:1] == strategies.tag(1, 1)
    body = strategies.length_delimited(1, b"us-east-1")
    assert agent_pb2.ConfirmRequest.FromString(body).primary_region == "us-east-1"
    big = strategies.tag(3, 0) + strategies.varint(2**64 - 1)
    assert agent_pb2.ConfirmRequest.FromString(big).system_identifier == 2**64 - 1


@given(st.data())
@FAST
def test_string_paths_lead_to_string_fields(data):
    path = data.draw(st.sampled_from(strategies.string_paths(agent_pb2.AgentMessage.DESCRIPTOR)))
    body = strategies._wrap(path, b"x")
    assert "x" in str(agent_pb2.AgentMessage.FromString(body))

"""AgentService.Connect, fuzzed as a stream: Hellos valid, half valid and not at all, repeated
Hellos, reports before the Hello, sequence numbers repeated, going back, zero and 2^64-1,
command results nobody asked for, messages with no body, and raw bytes that do not decode,
in any order.

On the shared stack's leader every stream must be refused (INVALID_ARGUMENT) without touching
the real agents' sessions: its Hellos name regions the deployment does not have. On the
private coordinator (tests/fuzz/targets.py) the Hellos name the deployment's regions, so the
streams attach, report and get acknowledged: the fuzzing reaches the registry, the detector
and the leader's reactions to what a region says. Either way nothing ends in UNKNOWN or
INTERNAL and the server keeps serving.
"""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from latitude.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, common_pb2
from tests.fuzz import calls, targets
from tests.fuzz.conftest import SharedTargets
from tests.fuzz.strategies import (
    INT64,
    UINT32,
    UINT64,
    integers,
    merged,
    message_strategy,
    wire_strategy,
)
from tests.fuzz.targets import Target, serving

pytestmark = [pytest.mark.fuzz, pytest.mark.stack, calls.LARGE_REPRS]

CONNECT = calls.methods()[
    [m.full_name for m in calls.methods()].index("latitude.v1.AgentService.Connect")
]
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
# Regions the deployment does not have, some of them close to real names.
DECOYS = ("mars-1", "us-east-2", "US-EAST-1", "us-east-1 ", "eu-west-1\x00", "ap")
TIMEOUT = 5.0
SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


def hellos(regions: tuple[str, ...]) -> st.SearchStrategy[agent_pb2.Hello]:
    """Hellos that pass validation, the same with drawn fields merged in, and drawn ones."""
    valid = st.builds(
        lambda region, agent, lat, lon, capacity, priority, epoch: agent_pb2.Hello(
            region=region,
            agent_id=f"fuzz/{agent}",
            location=common_pb2.Location(latitude=lat, longitude=lon),
            capacity=capacity,
            priority=priority,
            highest_epoch_seen=epoch,
            agent_address="127.0.0.1:1",
            endpoints=[
                common_pb2.Endpoint(
                    name="postgres",
                    kind=common_pb2.ENDPOINT_KIND_POSTGRES,
                    address="127.0.0.1:5432",
                )
            ],
        ),
        st.sampled_from(regions),
        st.text("abcdefgh0123456789-", min_size=1, max_size=12),
        st.floats(-90, 90),
        st.floats(-180, 180),
        integers(1, UINT32[1]),
        integers(*UINT32),
        st.one_of(st.just(0), integers(*UINT64)),
    )
    drawn = message_strategy(agent_pb2.Hello.DESCRIPTOR, words=regions, depth=2)
    return st.one_of(valid, st.builds(merged, valid, drawn), drawn)


def reports() -> st.SearchStrategy[agent_pb2.Report]:
    valid = st.builds(
        lambda role, lsn, seconds: agent_pb2.Report(
            sent_at={"seconds": seconds},
            database=common_pb2.DatabaseStatus(
                role=role, timeline_id=1, current_lsn=lsn, replayed_lsn=lsn
            ),
            capacity_utilization=0.5,
        ),
        st.sampled_from(list(common_pb2.DatabaseRole.values())),
        integers(*UINT64),
        st.one_of(st.just(int(time.time())), integers(*INT64)),
    )
    drawn = message_strategy(agent_pb2.Report.DESCRIPTOR, words=REGIONS, depth=3)
    return st.one_of(valid, st.builds(merged, valid, drawn))


# How a report's sequence relates to the one before.
SEQUENCES = ("next", "next", "next", "same", "back", "zero", "huge", "drawn")


def steps(regions: tuple[str, ...]) -> st.SearchStrategy[tuple]:
    return st.one_of(
        st.tuples(st.just("hello"), hellos(regions)),
        st.tuples(st.just("report"), st.tuples(st.sampled_from(SEQUENCES), reports())),
        st.tuples(
            st.just("message"),
            message_strategy(agent_pb2.AgentMessage.DESCRIPTOR, words=regions, depth=3),
        ),
        st.tuples(st.just("raw"), wire_strategy(agent_pb2.AgentMessage.DESCRIPTOR, words=regions)),
    )


def streams(regions: tuple[str, ...]) -> st.SearchStrategy[list[bytes]]:
    """Streams of serialized messages, half of them opening with a Hello."""
    opening = st.one_of(st.just([]), hellos(regions).map(lambda h: [("hello", h)]))
    rest = st.lists(steps(regions), min_size=1, max_size=8)
    return st.builds(lambda a, b: _serialized(a + b), opening, rest)


def _serialized(plan: list[tuple]) -> list[bytes]:
    out, previous = [], 0
    for kind, payload in plan:
        if kind == "hello":
            out.append(agent_pb2.AgentMessage(hello=payload).SerializeToString())
        elif kind == "report":
            how, report = payload
            sequence = {
                "next": previous + 1,
                "same": previous,
                "back": max(0, previous - 1),
                "zero": 0,
                "huge": 2**64 - 1,
                "drawn": report.sequence,
            }[how] % 2**64
            report.sequence = previous = sequence
            out.append(agent_pb2.AgentMessage(report=report).SerializeToString())
        elif kind == "message":
            out.append(payload.SerializeToString())
        else:
            out.append(payload)
    return out


def names_a_region(stream: list[bytes]) -> bool:
    """Whether any message, as the server decodes it, is a Hello for a deployment region."""
    for body in stream:
        try:
            message = agent_pb2.AgentMessage.FromString(body)
        except DecodeError:
            continue
        if message.WhichOneof("body") == "hello" and message.hello.region in REGIONS:
            return True
    return False


def _real_agents(target: Target) -> dict[str, str]:
    with targets.channel(target.address) as channel:
        status = admin_pb2_grpc.AdminServiceStub(channel).GetStatus(
            admin_pb2.GetStatusRequest(), timeout=5
        )
    return {r.region: r.agent_id for r in status.regions}


def test_streams_to_the_shared_leader_are_refused(current: SharedTargets):
    target = current.leader
    agents = _real_agents(target)
    assert sorted(agents) == sorted(REGIONS)

    with targets.channel(target.address) as channel:

        @SETTINGS
        @given(streams(DECOYS).filter(lambda s: not names_a_region(s)))
        def refused(stream: list[bytes]):
            note(f"stream: {stream!r}"[:3000])
            outcome = calls.call(channel, CONNECT, stream, TIMEOUT)
            note(str(outcome))
            assert calls.refused(outcome.code, outcome.details), str(outcome)

        refused()
    assert target.alive() and serving(target)
    assert _real_agents(target) == agents, "a refused stream replaced a real agent"


def test_streams_to_a_leader_of_its_own(private: Target):
    with targets.channel(private.address) as channel:

        @SETTINGS
        @given(streams(REGIONS))
        def answered(stream: list[bytes]):
            note(f"stream: {stream!r}"[:3000])
            outcome = calls.call(channel, CONNECT, stream, TIMEOUT)
            note(str(outcome))
            assert not calls.is_bug("AgentService.Connect", outcome.code, outcome.details)
            assert not calls.lost(outcome.code, outcome.details), str(outcome)

        answered()
    assert private.alive() and serving(private)


def test_a_valid_stream_attaches_and_is_acknowledged(private: Target):
    """The private leader takes a well-formed stream: the fuzzing above gets past the Hello."""
    hello = agent_pb2.Hello(
        region="eu-west-1",
        agent_id="fuzz/valid",
        location=common_pb2.Location(latitude=53.3, longitude=-6.3),
        capacity=100,
        endpoints=[
            common_pb2.Endpoint(
                name="postgres", kind=common_pb2.ENDPOINT_KIND_POSTGRES, address="127.0.0.1:1"
            )
        ],
    )
    stream = [agent_pb2.AgentMessage(hello=hello).SerializeToString()]
    for sequence in (1, 2, 3):
        report = agent_pb2.Report(sequence=sequence, sent_at={"seconds": int(time.time())})
        stream.append(agent_pb2.AgentMessage(report=report).SerializeToString())
    identity = dict(request_serializer=None, response_deserializer=None)
    deadline = time.monotonic() + 30
    with targets.channel(private.address) as channel:
        while True:  # the region may still be held by a fuzzed stream's agent for a moment
            connect = channel.stream_stream(calls.path(CONNECT), **identity)
            try:
                replies = [
                    agent_pb2.CoordinatorMessage.FromString(r)
                    for r in connect(iter(stream), timeout=TIMEOUT)
                ]
                break
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.ALREADY_EXISTS or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    kinds = [r.WhichOneof("body") for r in replies]
    assert kinds[0] == "welcome", kinds
    assert "report_ack" in kinds, kinds

"""Every unary and server-streaming RPC of latitude.v1, fed messages drawn from its request's
descriptor and raw bytes, against the real processes: no input may end in UNKNOWN or INTERNAL,
and the server still answers a health check afterwards. (The agent stream has its own tests,
in test_agent_stream.)

Where calls go. Reads go to the shared stack's leader and a follower; the agents' services to
a real agent of the primary's region and of a standby's. A call that changes the cluster when
it is valid (SetStrategy, Switchover, Failover, SetMaintenance, latency reports) goes to the
shared leader only with inputs that must be refused, and is checked to be refused, because the
other tests of the session share that stack; with every input it goes to a private coordinator
(tests/fuzz/targets.py), which can switch over, set maintenance and take latencies without
touching what the other tests see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from latitude.v1 import admin_pb2, agent_pb2
from tests.fuzz import calls, targets
from tests.fuzz.conftest import FUZZ_TABLE, SharedTargets
from tests.fuzz.seeds import SEEDS
from tests.fuzz.strategies import merged, message_strategy, wire_strategy
from tests.fuzz.targets import Target, serving

pytestmark = [pytest.mark.fuzz, pytest.mark.stack, calls.LARGE_REPRS]

WORDS = (*calls.REGIONS, ".".join(FUZZ_TABLE), FUZZ_TABLE[0], FUZZ_TABLE[1], "public.verify_items")
# Examples per case: message-level and wire-level. About 4,000 calls in all, most answered in
# milliseconds: the fuzz suite stays near two minutes on two busy cores.
EXAMPLES = 80
WIRE_EXAMPLES = 40


def _fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


@dataclass(frozen=True, slots=True)
class Case:
    method: str  # "Service.Method"
    target: str  # leader, follower, private, primary-agent, standby-agent
    examples: int = EXAMPLES
    timeout: float = 5.0

    @property
    def id(self) -> str:
        return f"{self.method}@{self.target}"


def _cases() -> list[Case]:
    cases = []
    for name in ("GetStatus", "ListEvents", "GetHistory", "ListIncidents"):
        cases += [Case(f"AdminService.{name}", "leader"), Case(f"AdminService.{name}", "follower")]
    cases += [
        Case("AdminService.CheckConsistency", "leader", examples=10, timeout=3.0),
        # A real data check per example on the shared stack: a few, bounded.
        Case("AdminService.Verify", "leader", examples=6, timeout=4.0),
        Case("AdminService.Verify", "private", examples=10, timeout=3.0),
    ]
    for name in ("SetStrategy", "Switchover", "Failover", "SetMaintenance"):
        cases += [
            Case(f"AdminService.{name}", "leader"),
            Case(f"AdminService.{name}", "private", timeout=3.0),
        ]
    cases += [
        Case("RoutingService.Resolve", "leader"),
        Case("RoutingService.Resolve", "follower"),
        Case("RoutingService.Resolve", "private"),
        Case("RoutingService.Watch", "leader", timeout=0.5),
        Case("RoutingService.Watch", "private", timeout=0.5),
        Case("RoutingService.ReportLatency", "leader"),
        Case("RoutingService.ReportLatency", "follower"),
        Case("RoutingService.ReportLatency", "private"),
    ]
    cases += [Case("FailsafeService.Confirm", "primary-agent")]
    cases += [Case("FailsafeService.Confirm", "standby-agent")]
    for name in VERIFY_METHODS:
        # A standby asked for an LSN it never replays waits up to the call's deadline: a
        # short one (the fuzz table answers in milliseconds), and fewer examples.
        cases += [
            Case(f"VerifyService.{name}", "primary-agent", timeout=1.5),
            Case(f"VerifyService.{name}", "standby-agent", examples=30, timeout=1.0),
        ]
    return cases


VERIFY_METHODS = ("Tables", "Checksum", "Bounds", "Rows")
METHODS = {m.full_name.removeprefix("latitude.v1."): m for m in calls.methods()}
CASES = _cases()


def test_every_rpc_is_fuzzed():
    """A new RPC cannot be forgotten: every method is a case here or a stream test."""
    fuzzed = {c.method for c in CASES} | {"AgentService.Connect"}
    assert set(METHODS) == fuzzed


def _target(case: Case, current: SharedTargets, private: Target) -> Target:
    return {
        "leader": lambda: current.leader,
        "follower": lambda: current.follower,
        "private": lambda: private,
        "primary-agent": lambda: current.primary_agent,
        "standby-agent": lambda: current.standby_agent,
    }[case.target]()


def _shared_guard(case: Case) -> tuple[Callable[[Message], bool] | None, bool]:
    """(which inputs may be sent, whether they must be refused) for ``case``."""
    if case.target == "private":
        return None, False
    return calls.KEEPS_CLUSTER.get(case.method), case.method in calls.MUST_REFUSE


def _check(outcome: calls.Outcome, must_refuse: bool, method: str = "") -> None:
    note(str(outcome))
    assert not calls.is_bug(method, outcome.code, outcome.details), str(outcome)
    assert not calls.lost(outcome.code, outcome.details), (
        f"the server's answer never arrived: {outcome}"
    )
    if must_refuse:
        assert calls.refused(outcome.code, outcome.details), str(outcome)


def _still_serving(target: Target) -> None:
    assert target.alive(), f"{target.name} (pid {target.pid}) is gone"
    assert serving(target), f"{target.name} no longer answers a health check"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_drawn_messages(case: Case, current: SharedTargets, private: Target):
    method = METHODS[case.method]
    target = _target(case, current, private)
    allowed, must_refuse = _shared_guard(case)
    messages = message_strategy(method.input_type, words=WORDS)
    seed = SEEDS.get(case.method)
    if seed is not None:
        messages = st.one_of(messages, seed, st.builds(merged, seed, messages))
    if allowed is not None:
        messages = messages.filter(allowed)

    with targets.channel(target.address) as channel:

        @_fuzz_settings(case.examples)
        @given(messages)
        def answers(request: Message):
            note(f"request: {request}"[:2000])
            body = request.SerializeToString()
            _check(calls.call(channel, method, body, case.timeout), must_refuse, case.method)

        answers()
    _still_serving(target)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_raw_bytes(case: Case, current: SharedTargets, private: Target):
    """Invalid UTF-8 in strings, truncations, wrong wire types, unknown fields, garbage."""
    method = METHODS[case.method]
    target = _target(case, current, private)
    allowed, must_refuse = _shared_guard(case)
    request_type = message_factory.GetMessageClass(method.input_type)

    def sendable(body: bytes) -> bool:
        try:
            request = request_type.FromString(body)
        except DecodeError:
            return True
        return allowed is None or allowed(request)

    with targets.channel(target.address) as channel:

        @_fuzz_settings(min(case.examples, WIRE_EXAMPLES))
        @given(wire_strategy(method.input_type, words=WORDS).filter(sendable))
        def answers(body: bytes):
            note(f"request bytes: {body[:500]!r}")
            _check(calls.call(channel, method, body, case.timeout), must_refuse, case.method)

        answers()
    _still_serving(target)


def test_oversized_requests_are_refused(current: SharedTargets, private: Target):
    """Past the server's message limit (256 KiB on coordinators, 4 MiB on agents)."""
    cases = [
        (current.leader, METHODS["AdminService.GetStatus"], 300 * 1024),
        (current.leader, METHODS["RoutingService.Resolve"], 300 * 1024),
        (private, METHODS["AdminService.SetMaintenance"], 300 * 1024),
        (current.standby_agent, METHODS["FailsafeService.Confirm"], 5 * 1024 * 1024),
    ]
    for target, method, size in cases:
        # A valid message: one string field of ``size`` bytes.
        body = admin_pb2.SetMaintenanceRequest(reason="x" * size).SerializeToString()
        with targets.channel(target.address) as channel:
            outcome = calls.call(channel, method, body, 10.0)
        assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, (target.name, str(outcome))
        _still_serving(target)


@pytest.mark.parametrize(
    "request_",
    [
        agent_pb2.ChecksumRequest(
            schema="public", table="fuzz_keys", ranges=[{"after": {"values": ["abc", "x"]}}]
        ),
        agent_pb2.ChecksumRequest(schema="public\x00", table="fuzz_keys"),
        agent_pb2.RowsRequest(
            schema="public", table="fuzz_keys", range={"upto": {"values": ["9" * 30, "x"]}}
        ),
        agent_pb2.BoundsRequest(
            schema="public", table="fuzz_keys", every=1, range={"upto": {"values": ["1", "\0"]}}
        ),
    ],
    ids=["not-a-number", "nul-in-schema", "past-bigint", "nul-in-key"],
)
def test_agent_verify_refuses_values_that_do_not_fit_the_table(request_, current: SharedTargets):
    """Found by the fuzzing: PostgreSQL's data errors answered INTERNAL."""
    method = METHODS[f"VerifyService.{type(request_).__name__.removesuffix('Request')}"]
    for target in (current.primary_agent, current.standby_agent):
        with targets.channel(target.address) as channel:
            outcome = calls.call(channel, method, request_.SerializeToString(), 10.0)
        assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, (target.name, str(outcome))
        assert "does not fit the table" in outcome.details

"""The role table: every RPC of the contract has a deliberate entry, anything else is refused,
and refusals say who was refused what and why."""

from __future__ import annotations

import importlib
import pkgutil

import grpc
import pytest

import latitude.v1
from latitude import authz
from latitude.authz import ROLES, Throttle, refusal
from latitude.pki import Identity

OPERATOR = Identity("operator")
READER = Identity("reader")
COORDINATOR = Identity("coordinator")
AGENT = Identity("agent", "eu-west-1")


def contract_methods() -> list[str]:
    """Every method of every service in latitude.v1, as gRPC names it on the wire."""
    methods = []
    for info in pkgutil.iter_modules(latitude.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"latitude.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            methods += [f"/{service.full_name}/{m.name}" for m in service.methods]
    return methods


def test_every_method_of_the_contract_has_an_entry():
    methods = contract_methods()
    assert len(methods) >= 19  # admin, routing, agent, failsafe, verify
    missing = [m for m in methods if m not in ROLES]
    assert not missing, f"no role decided for {missing}: add them to latitude.authz.ROLES"
    stale = sorted(set(ROLES) - set(methods))
    assert not stale, f"ROLES names methods the contract does not have: {stale}"
    for method in methods:
        assert ROLES[method] <= {"coordinator", "operator", "reader", "agent"}, method


def test_a_method_missing_from_the_table_is_refused_to_everyone():
    for who in (OPERATOR, READER, COORDINATOR, AGENT):
        code, message = refusal(who, "/latitude.v1.AdminService/Reboot")
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert message == "/latitude.v1.AdminService/Reboot is open to no caller"
    table = {"/x.Y/Z": frozenset()}
    assert refusal(OPERATOR, "/x.Y/Z", table)[0] == grpc.StatusCode.PERMISSION_DENIED


def test_no_identity_is_unauthenticated_whatever_the_method():
    for method in ("/latitude.v1.AdminService/GetStatus", "/latitude.v1.Unknown/X"):
        code, message = refusal(None, method)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "client certificate issued by this cluster's CA is required" in message


@pytest.mark.parametrize(
    "method, allowed",
    [
        ("AdminService/GetStatus", {READER, OPERATOR, COORDINATOR}),
        ("AdminService/ListEvents", {READER, OPERATOR, COORDINATOR}),
        ("AdminService/SetStrategy", {OPERATOR}),
        ("AdminService/Switchover", {OPERATOR}),
        ("AdminService/Failover", {OPERATOR}),
        ("AdminService/SetMaintenance", {OPERATOR}),
        ("AdminService/Verify", {OPERATOR}),
        ("AdminService/CheckConsistency", {OPERATOR, COORDINATOR}),
        ("RoutingService/Resolve", {READER, OPERATOR, COORDINATOR}),
        ("RoutingService/Watch", {READER, OPERATOR, COORDINATOR}),
        ("RoutingService/ReportLatency", {READER, OPERATOR, COORDINATOR, AGENT}),
        ("AgentService/Connect", {AGENT}),
        ("FailsafeService/Confirm", {AGENT, COORDINATOR}),
        ("VerifyService/Checksum", {COORDINATOR}),
        ("VerifyService/Rows", {COORDINATOR}),
    ],
)
def test_who_may_call_what(method, allowed):
    method = f"/latitude.v1.{method}"
    for who in (OPERATOR, READER, COORDINATOR, AGENT):
        answer = refusal(who, method)
        if who in allowed:
            assert answer is None, f"{who} refused {method}"
        else:
            assert answer is not None and answer[0] == grpc.StatusCode.PERMISSION_DENIED


def test_a_refusal_names_the_caller_the_method_and_the_roles_allowed():
    code, message = refusal(AGENT, "/latitude.v1.AdminService/Failover")
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert message == (
        "agent of eu-west-1 (latitude://region/eu-west-1) may not call "
        "/latitude.v1.AdminService/Failover: only operator may"
    )


def test_health_and_reflection_are_open_even_without_identity():
    assert refusal(None, "/grpc.health.v1.Health/Check") is None
    assert refusal(None, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_passes_a_burst_then_one_per_interval_and_counts_the_rest():
    clock = Clock()
    throttle = Throttle(burst=2, per=10.0, clock=clock)
    assert [throttle.allow() for _ in range(5)] == [0, 0, None, None, None]
    clock.now += 4.9  # 0.98 of a token back
    assert throttle.allow() is None
    clock.now += 0.2
    assert throttle.allow() == 4  # passes, saying how many it held back
    clock.now += 1000  # refills to the burst, no further
    assert [throttle.allow() for _ in range(3)] == [0, 0, None]


def test_the_throttle_refuses_nonsense():
    with pytest.raises(ValueError):
        Throttle(burst=0)
    with pytest.raises(ValueError):
        Throttle(per=0)


def test_refusal_labels_are_bounded():
    assert set(authz.CODES.values()) == {"unauthenticated", "permission_denied"}

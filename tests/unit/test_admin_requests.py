"""AdminService on a real in-process gRPC server (port 0): bad fields are INVALID_ARGUMENT
naming the field (never UNKNOWN), and fresh consistency checks are coalesced."""

from __future__ import annotations

import asyncio
import types

import grpc
import pytest

from coordinator import admin_service, operations
from coordinator.admin_service import AdminService
from coordinator.config import CoordinatorConfig
from coordinator.limits import RateLimits
from coordinator.request_checks import MAX_DETAILS, InvalidRequest, timestamp
from latitude.v1 import admin_pb2, admin_pb2_grpc, history_pb2


def node():
    return types.SimpleNamespace(
        config=CoordinatorConfig(), id="coordinator-1", is_leader=False, orchestrator=None
    )


@pytest.fixture
async def admin():
    server = grpc.aio.server()
    service = AdminService(node(), members=None)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        stub.service = service
        yield stub
    await server.stop(None)


async def refusal(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def since(seconds: int, nanos: int = 0) -> admin_pb2.ListEventsRequest:
    request = admin_pb2.ListEventsRequest()
    request.since.seconds, request.since.nanos = seconds, nanos
    return request


@pytest.mark.parametrize(
    ("request_", "method", "field"),
    [
        (since(2**62), "ListEvents", "since: not a valid timestamp"),
        (since(-(2**62)), "ListEvents", "since: not a valid timestamp"),
        (since(0, -1), "ListEvents", "since: not a valid timestamp"),
        (admin_pb2.ListEventsRequest(region="r" * 10_000), "ListEvents", "region: at most 128"),
        (admin_pb2.SwitchoverRequest(target_region="x" * 200), "Switchover", "target_region"),
        (admin_pb2.FailoverRequest(reason="x" * 100_000), "Failover", "reason: at most 1000"),
        (
            admin_pb2.SetMaintenanceRequest(region="us-east-1", reason="x" * 5000),
            "SetMaintenance",
            "reason: at most 1000",
        ),
        (history_pb2.GetHistoryRequest(region="x" * 100_000), "GetHistory", "region: at most"),
        (admin_pb2.VerifyRequest(tables=["a.b"] * 1001), "Verify", "tables: at most 1000"),
        (admin_pb2.VerifyRequest(tables=["a." + "b" * 300]), "Verify", "tables[0]: at most"),
        (
            admin_pb2.VerifyRequest(replay_wait_seconds=float("inf")),
            "Verify",
            "replay_wait_seconds: at most 3600 s",
        ),
    ],
)
async def test_bad_fields_are_invalid_argument_naming_the_field(admin, request_, method, field):
    call = getattr(admin, method)(request_, timeout=5)
    if method == "Verify":
        call = call.read()
    err = await refusal(call)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert err.details().startswith(field)
    assert len(err.details()) <= MAX_DETAILS


def test_a_timestamp_at_the_edges_of_its_range_is_fine():
    edge = admin_pb2.ListEventsRequest().since
    edge.seconds, edge.nanos = 253_402_300_799, 999_999_999
    assert timestamp(edge, "since") == pytest.approx(253_402_300_800)
    edge.seconds = 253_402_300_800
    with pytest.raises(InvalidRequest, match="since: not a valid timestamp"):
        timestamp(edge, "since")


async def test_fresh_consistency_checks_are_coalesced(admin, monkeypatch):
    release = asyncio.Event()
    runs = []

    async def check(node, request, budget):
        runs.append(request.fresh)
        await release.wait()
        return admin_pb2.ConsistencyReport(consistent=True, primary_region="us-east-1")

    monkeypatch.setattr(admin_service.operations, "check_consistency", check)
    admin.service.checks = RateLimits(1.0, 100, what="consistency checks")
    fresh = admin_pb2.CheckConsistencyRequest(fresh=True)
    calls = [asyncio.ensure_future(admin.CheckConsistency(fresh, timeout=10)) for _ in range(50)]
    deadline = asyncio.get_running_loop().time() + 10
    while admin.service._fresh_checks.waiting < 50:  # every call has joined the one check
        assert asyncio.get_running_loop().time() < deadline, runs
        await asyncio.sleep(0.01)
    release.set()
    reports = await asyncio.gather(*calls)
    assert all(r.consistent and r.primary_region == "us-east-1" for r in reports)
    assert runs == [True]
    # Not fresh: no commands to queue, each call judges on its own.
    await admin.CheckConsistency(admin_pb2.CheckConsistencyRequest(), timeout=5)
    await admin.CheckConsistency(admin_pb2.CheckConsistencyRequest(), timeout=5)
    assert runs == [True, False, False]
    assert operations.check_consistency is check


class Store:
    """The two reads Verify makes: every region with its agent, and the write region."""

    async def read_prefix(self, prefix):
        return {
            name: admin_pb2.RegionStatus(
                region=name, agent_address="127.0.0.1:1"
            ).SerializeToString()
            for name in ("us-east-1", "eu-west-1")
        }

    async def read(self, key):
        return b"us-east-1"


async def test_verifications_beyond_the_bound_are_refused(admin):
    admin.service._node.store = Store()
    for _ in range(admin_service.VERIFICATIONS):
        admin.service.verifications.acquire("someone else")
    call = admin.Verify(admin_pb2.VerifyRequest(), timeout=5)
    err = await refusal(call.read())
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 2 Verify streams" in err.details()


async def test_consistency_checks_past_the_callers_rate_are_refused(admin, monkeypatch):
    async def check(node, request, budget):
        return admin_pb2.ConsistencyReport(consistent=True)

    monkeypatch.setattr(admin_service.operations, "check_consistency", check)
    assert admin.service.checks.burst == admin_service.CHECK_BURST
    # A rate so slow that no token comes back during the test, however slow the machine.
    admin.service.checks = RateLimits(1e-9, 3, what="consistency checks")
    request = admin_pb2.CheckConsistencyRequest()
    for _ in range(3):
        await admin.CheckConsistency(request, timeout=5)
    err = await refusal(admin.CheckConsistency(request, timeout=5))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details().startswith("CheckConsistency: more than 1e-09 consistency checks")

"""Strangers at every door of a TLS stack: a client without a certificate, a plaintext client,
a certificate from another CA, a reader (an agent, a coordinator) trying to change the cluster,
a rogue agent with a valid certificate for one region saying Hello as another, and direct etcd
writes without the coordinators' credentials. Each is refused, and nothing changes.

Every refusal is checked beside a call that succeeds at the same door with the right
certificate, so that a door that is merely down cannot pass for one that is shut."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from latitude import pki
from latitude.admin_client import cluster_status
from latitude.channels import open_channel
from latitude.pki import CertFiles, Identity
from latitude.stack.stack import ETCD_PREFIX, Stack
from latitude.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    routing_pb2,
    routing_pb2_grpc,
)
from tests.integration.connections import agent_hello, eventually
from tests.integration.etcd_tls import direct_write

pytestmark = pytest.mark.stack

HEALTHY = common_pb2.REGION_STATE_HEALTHY
# Codes a refused caller may see: UNAVAILABLE when the handshake itself refuses it (a TLS
# port requires a certificate from the stack's CA before any call), UNAUTHENTICATED /
# PERMISSION_DENIED from the authorisation layer.
SHUT_OUT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def _leader_of(view: admin_pb2.ClusterStatus) -> str:
    return view.leader.address


async def _view(stack: Stack) -> admin_pb2.ClusterStatus:
    state = stack.state()
    return await cluster_status(
        stack.coordinator_addresses(state), 2.0, tls=stack.client_tls(state, "reader")
    )


def _what_matters(view: admin_pb2.ClusterStatus) -> tuple:
    """What a refused change must leave as it was."""
    regions = sorted((r.region, r.agent_id) for r in view.regions)
    return view.write_region, view.strategy, view.HasField("failover"), regions


async def _wait_healthy(stack: Stack) -> admin_pb2.ClusterStatus:
    async def healthy():
        view = await _view(stack)
        ok = view.leader.leader_id and all(r.state == HEALTHY for r in view.regions)
        return view if ok else None

    return await eventually(healthy, 30, "every region HEALTHY with a leader")


async def _admin(channel: grpc.aio.Channel, method: str, request):
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    return await getattr(stub, method)(request, timeout=5)


async def _code(call) -> grpc.StatusCode:
    """The status code a call ends with (OK when it answers)."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def _agent_stream(
    channel: grpc.aio.Channel, hello: agent_pb2.AgentMessage
) -> grpc.StatusCode:
    """Say Hello on AgentService.Connect; the code the stream ends with (OK: it was welcomed,
    and the stream is closed by us)."""
    call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
    try:
        await call.write(hello)
        answer = await asyncio.wait_for(call.read(), 5)
        if answer is not grpc.aio.EOF and answer.HasField("welcome"):
            call.cancel()
            return grpc.StatusCode.OK
        await call
    except grpc.aio.AioRpcError as err:
        return err.code()
    finally:
        call.cancel()
    return grpc.StatusCode.OK


def _no_certificate(ca: Path) -> grpc.ChannelCredentials:
    """TLS that trusts the stack's CA but presents no certificate of its own."""
    return grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())


async def test_refusals_are_recorded_with_the_callers_identity(tls_stack: Stack):
    """First in the module: the leader records at most ten refusals a minute."""
    kind = admin_pb2.EVENT_KIND_ACCESS_REFUSED
    stack = tls_stack
    state = stack.state()
    view = await _wait_healthy(stack)
    async with open_channel(_leader_of(view), state.cert_files("reader")) as channel:
        request = CHANGES["SetStrategy"]
        assert await _code(_admin(channel, "SetStrategy", request)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )

    async def recorded():
        async with open_channel(_leader_of(view), state.cert_files("operator")) as channel:
            request = admin_pb2.ListEventsRequest(kinds=[kind], limit=20)
            response = await _admin(channel, "ListEvents", request)
        return [
            e
            for e in response.events
            if "SetStrategy" in e.message and "latitude://role/reader" in e.message
        ]

    events = await eventually(recorded, 10, "the refusal to be recorded as an event")
    assert "PERMISSION_DENIED" in events[-1].message


async def test_a_client_without_a_certificate_is_refused_at_every_service(tls_stack: Stack):
    stack = tls_stack
    state = stack.state()
    view = await _wait_healthy(stack)
    leader = _leader_of(view)
    anonymous = _no_certificate(state.cert_files("reader").ca)
    calls = {
        "AdminService": lambda ch: admin_pb2_grpc.AdminServiceStub(ch).GetStatus(
            admin_pb2.GetStatusRequest(), timeout=5
        ),
        "RoutingService": lambda ch: routing_pb2_grpc.RoutingServiceStub(ch).Resolve(
            routing_pb2.ResolveRequest(client_ip="8.8.8.8"), timeout=5
        ),
    }
    for service, call in calls.items():
        async with grpc.aio.secure_channel(leader, anonymous) as channel:
            assert await _code(call(channel)) in SHUT_OUT, service
        async with grpc.aio.insecure_channel(leader) as channel:  # plaintext at a TLS port
            assert await _code(call(channel)) in SHUT_OUT, service
        async with open_channel(leader, state.cert_files("reader")) as channel:
            assert await _code(call(channel)) == grpc.StatusCode.OK, service
    async with grpc.aio.secure_channel(leader, anonymous) as channel:
        assert (
            await _agent_stream(channel, agent_hello("us-east-1", "anonymous", "203.0.113.9:5432"))
            in SHUT_OUT
        )
    async with grpc.aio.insecure_channel(leader) as channel:
        assert (
            await _agent_stream(channel, agent_hello("us-east-1", "anonymous", "203.0.113.9:5432"))
            in SHUT_OUT
        )
    assert _what_matters(await _view(stack)) == _what_matters(view)


async def test_a_certificate_from_another_ca_is_refused(tls_stack: Stack, tmp_path: Path):
    stack = tls_stack
    state = stack.state()
    view = await _wait_healthy(stack)
    pki.create_ca(tmp_path / "evil")
    forged = pki.issue(tmp_path / "evil", "operator", identity=Identity("operator"))
    # The attacker trusts the stack's CA (the server's certificate is public), and presents
    # an operator certificate its own CA signed.
    evil = CertFiles(cert=forged.cert, key=forged.key, ca=state.cert_files("operator").ca)
    request = admin_pb2.SetStrategyRequest(strategy=routing_pb2.STRATEGY_ROUND_ROBIN)
    for address in stack.coordinator_addresses(state):
        async with open_channel(address, evil) as channel:
            assert await _code(_admin(channel, "SetStrategy", request)) in SHUT_OUT
            hello = agent_hello("us-east-1", "forged", "203.0.113.9:5432")
            assert await _agent_stream(channel, hello) in SHUT_OUT
    assert _what_matters(await _view(stack)) == _what_matters(view)


CHANGES = {
    "Switchover": admin_pb2.SwitchoverRequest(target_region="eu-west-1", wait=True),
    "SetStrategy": admin_pb2.SetStrategyRequest(strategy=routing_pb2.STRATEGY_ROUND_ROBIN),
    "SetMaintenance": admin_pb2.SetMaintenanceRequest(region="eu-west-1", enabled=True),
    "Failover": admin_pb2.FailoverRequest(target_region="eu-west-1", force=True, wait=True),
}


@pytest.mark.parametrize("role", ["reader", "agent-eu-west-1", "coordinator-1"])
async def test_only_an_operator_changes_the_cluster(tls_stack: Stack, role: str):
    stack = tls_stack
    state = stack.state()
    view = await _wait_healthy(stack)
    files = state.cert_files(role)
    async with open_channel(_leader_of(view), files) as channel:
        for method, request in CHANGES.items():
            code = await _code(_admin(channel, method, request))
            assert code == grpc.StatusCode.PERMISSION_DENIED, (role, method, code)
        if role == "reader":  # what a reader may do, it does at the same door
            status = admin_pb2.GetStatusRequest()
            assert await _code(_admin(channel, "GetStatus", status)) == grpc.StatusCode.OK
    after = await _view(stack)
    assert _what_matters(after) == _what_matters(view)
    assert all(r.state == HEALTHY for r in after.regions)


async def test_a_rogue_agent_cannot_speak_for_another_region(tls_stack: Stack):
    """A valid certificate for eu-west-1 saying Hello as us-east-1 (the primary's region) is
    refused, and the real agent's stream carries on untouched."""
    stack = tls_stack
    state = stack.state()
    view = await _wait_healthy(stack)
    real = next(r for r in view.regions if r.region == "us-east-1")
    rogue = state.cert_files("agent-eu-west-1")
    async with open_channel(_leader_of(view), rogue) as channel:
        code = await _agent_stream(channel, agent_hello("us-east-1", "rogue", "203.0.113.9:5432"))
    assert code == grpc.StatusCode.PERMISSION_DENIED, code
    # The real agent still holds its region and keeps reporting.
    started = time.monotonic()

    async def reporting():
        now = await _view(stack)
        region = next(r for r in now.regions if r.region == "us-east-1")
        fresh = region.agent_connected and region.last_report_age_seconds < 1.0
        return region if fresh and time.monotonic() - started > 1.0 else None

    region = await eventually(reporting, 10, "the real us-east-1 agent to go on reporting")
    assert region.agent_id == real.agent_id and region.state == HEALTHY
    # Nothing the rogue said reached the routing table.
    async with open_channel(_leader_of(view), state.cert_files("reader")) as channel:
        decision = await routing_pb2_grpc.RoutingServiceStub(channel).Resolve(
            routing_pb2.ResolveRequest(intent=routing_pb2.INTENT_WRITE), timeout=5
        )
    assert [t.region for t in decision.targets] == ["us-east-1"]
    assert "203.0.113.9" not in str(decision)


async def test_etcd_refuses_a_client_without_credentials(tls_stack: Stack, tmp_path: Path):
    """A direct write to etcd, as someone who reaches its port would try: overwrite the leader
    key. Plaintext, TLS without a certificate, another CA's certificate, and the stack's own
    reader certificate (a user etcd gives no role) are each refused; the coordinators'
    certificate writes a harmless key at the same door."""
    stack = tls_stack
    state = stack.state()
    certs = stack.etcd_certs(state)
    assert certs is not None
    pki.create_ca(tmp_path / "evil")
    forged = pki.issue(tmp_path / "evil", "latitude", common_name="latitude")
    strangers = {
        "plaintext": {},
        "no certificate": {"trust": certs.client.ca},
        "another CA": {"tls": CertFiles(forged.cert, forged.key, certs.client.ca)},
        "reader": {"tls": state.cert_files("reader")},
    }
    leader_key = f"{ETCD_PREFIX}/leader".encode()
    for member in stack.etcd_members(state):
        for who, credentials in strangers.items():
            code = await direct_write(member.endpoint, leader_key, **credentials)
            assert code != grpc.StatusCode.OK, (member.name, who)
        control = f"{ETCD_PREFIX}/attacker-test-control".encode()
        assert await direct_write(member.endpoint, control, tls=certs.client) == (
            grpc.StatusCode.OK
        )
    view = await _wait_healthy(stack)
    assert view.leader.leader_id in stack.topology.coordinators


async def test_a_rogue_agent_cannot_collect_confirmations_for_another_regions_primary(
    tls_stack: Stack,
):
    """Failsafe confirmations keep a primary writable while the leader is away: a valid
    certificate for eu-west-1 asking a standby to vouch for us-east-1 is refused, while
    us-east-1's own agent is answered at the same door."""
    stack = tls_stack
    state = stack.state()
    view = await _wait_healthy(stack)
    primary = view.write_region
    standby, other = (r for r in view.regions if r.region != primary)
    database = stack.postgres_node(state, primary)
    request = agent_pb2.ConfirmRequest(
        primary_region=primary, primary_address=f"{database.host}:{database.port}"
    )

    async def confirm(certificate: str):
        async with open_channel(standby.agent_address, state.cert_files(certificate)) as channel:
            stub = agent_pb2_grpc.FailsafeServiceStub(channel)
            return await stub.Confirm(request, timeout=5)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await confirm(f"agent-{other.region}")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"not of {primary}" in refused.value.details()
    reply = await confirm(f"agent-{primary}")
    assert reply.region == standby.region and reply.confirmed, reply.reason

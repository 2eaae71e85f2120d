"""Mutual TLS and roles on a real gRPC server in this process (no stack): who gets in, who
gets what, and plaintext as before.

The servicers are small stand-ins with the real services' method shapes (unary, a response
stream, a bidirectional stream driven by context.read/write), so the interceptor is proven on
each kind of handler."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from agent.failsafe import Failsafe, FailsafeServicer, Rounds
from agent.peers import Peer
from coordinator.routing_service import register as register_routing
from latitude import pki
from latitude.authz import Authorizer
from latitude.channels import open_channel
from latitude.client import RoutingClient
from latitude.identity import peer_identity
from latitude.pki import CertFiles, Identity
from latitude.serving import Server
from latitude.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    routing_pb2,
    routing_pb2_grpc,
)

ADMIN = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
AGENT = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
FAILSAFE = agent_pb2.DESCRIPTOR.services_by_name["FailsafeService"].full_name
ROUTING = routing_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name


class Admin(admin_pb2_grpc.AdminServiceServicer):
    async def GetStatus(self, request, context):
        return admin_pb2.ClusterStatus(responder_id="c1")

    async def SetStrategy(self, request, context):
        return admin_pb2.SetStrategyResponse(table_version=7)

    async def Verify(self, request, context):
        yield admin_pb2.VerifyUpdate(progress=admin_pb2.VerifyProgress(tables_done=1))
        yield admin_pb2.VerifyUpdate(report=admin_pb2.VerifyReport(consistent=True))


class Agents(agent_pb2_grpc.AgentServiceServicer):
    async def Connect(self, request_iterator, context):
        first = await context.read()
        identity = peer_identity(context)
        assert identity is not None and identity.region == first.hello.region
        await context.write(
            agent_pb2.CoordinatorMessage(welcome=agent_pb2.Welcome(leader_id="c1", epoch=3))
        )


class Routing(routing_pb2_grpc.RoutingServiceServicer):
    async def resolve_serialized(self, body: bytes, context) -> bytes:
        """As the real RoutingService: Resolve sees and answers bytes."""
        request = routing_pb2.ResolveRequest.FromString(body)
        return routing_pb2.RoutingDecision(reason=f"for {request.client_ip}").SerializeToString()

    async def Watch(self, request, context):
        yield routing_pb2.RoutingTable(version=5)
        await asyncio.Event().wait()  # hold the stream open until the client goes


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, CertFiles]:
    here: Path = tmp_path_factory.mktemp("tls")
    ca = here / "ca"
    pki.create_ca(ca)
    made = {
        "server": pki.issue(ca, "server", identity=Identity("coordinator"), hosts=["127.0.0.1"]),
        "operator": pki.issue(ca, "operator", identity=Identity("operator")),
        "reader": pki.issue(ca, "reader", identity=Identity("reader")),
        "agent": pki.issue(ca, "agent-us", identity=Identity("agent", "us-east-1")),
        "agent-eu": pki.issue(
            ca, "agent-eu", identity=Identity("agent", "eu-west-1"), hosts=["127.0.0.1"]
        ),
        "nobody": pki.issue(ca, "nobody"),  # this CA's, but naming no latitude identity
    }
    pki.create_ca(here / "other")
    made["stranger"] = pki.issue(here / "other", "stranger", identity=Identity("operator"))
    return made


async def serve(tls: CertFiles | None, authorize: Authorizer | None = None) -> Server:
    server = Server("127.0.0.1:0", tls=tls, authorize=authorize)
    server.add(admin_pb2_grpc.add_AdminServiceServicer_to_server, Admin(), ADMIN)
    server.add(agent_pb2_grpc.add_AgentServiceServicer_to_server, Agents(), AGENT)
    await server.start()
    return server


async def call(server: Server, tls: CertFiles | None, method: str, request=None):
    async with open_channel(f"127.0.0.1:{server.port}", tls) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        if method == "Verify":
            return [u async for u in stub.Verify(admin_pb2.VerifyRequest(), timeout=5)]
        request = request or getattr(admin_pb2, f"{method}Request")()
        return await getattr(stub, method)(request, timeout=5)


def refused(name: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "latitude_rpc_refused_total", {"method": f"/{ADMIN}/{name}", "code": code}
    )
    return value or 0.0


async def test_plaintext_serves_anyone_as_before():
    server = await serve(None)
    try:
        assert (await call(server, None, "GetStatus")).responder_id == "c1"
        assert (await call(server, None, "SetStrategy")).table_version == 7
    finally:
        await server.stop(0)


async def test_an_operator_may_change_the_cluster_and_a_reader_may_only_read(certs):
    seen = []
    authorize = Authorizer(on_refused=lambda *refusal: seen.append(refusal))
    server = await serve(certs["server"], authorize)
    before = refused("SetStrategy", "permission_denied")
    try:
        assert (await call(server, certs["operator"], "SetStrategy")).table_version == 7
        assert (await call(server, certs["operator"], "Verify"))[-1].report.consistent
        assert (await call(server, certs["reader"], "GetStatus")).responder_id == "c1"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(server, certs["reader"], "SetStrategy")
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        details = caught.value.details()
        assert "reader (latitude://role/reader)" in details
        assert "/latitude.v1.AdminService/SetStrategy" in details
        assert "only operator may" in details
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(server, certs["reader"], "Verify")
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await server.stop(0)
    assert refused("SetStrategy", "permission_denied") == before + 1
    assert seen[0] == (
        Identity("reader"),
        f"/{ADMIN}/SetStrategy",
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_a_certificate_without_identity_is_unauthenticated(certs):
    server = await serve(certs["server"])
    before = refused("GetStatus", "unauthenticated")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(server, certs["nobody"], "GetStatus")
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "client certificate issued by this cluster's CA" in caught.value.details()
        # The health service stays open to anyone who completes the handshake.
        async with open_channel(f"127.0.0.1:{server.port}", certs["nobody"]) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(service=ADMIN), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)
    assert refused("GetStatus", "unauthenticated") == before + 1


async def test_no_certificate_or_another_cas_is_refused_at_the_handshake(certs):
    server = await serve(certs["server"])
    address = f"127.0.0.1:{server.port}"
    _, _, ca = certs["server"].read()
    try:
        async with grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin_pb2_grpc.AdminServiceStub(channel).GetStatus(
                    admin_pb2.GetStatusRequest(), timeout=5
                )
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(server, certs["stranger"], "GetStatus")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        # Nor does a plaintext client get anything from a TLS port.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(server, None, "GetStatus")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_only_an_agent_may_open_the_agent_stream(certs):
    server = await serve(certs["server"])
    hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(region="us-east-1"))
    try:
        for who, code in (("agent", None), ("operator", grpc.StatusCode.PERMISSION_DENIED)):
            async with open_channel(f"127.0.0.1:{server.port}", certs[who]) as channel:
                stream = agent_pb2_grpc.AgentServiceStub(channel).Connect(timeout=5)
                await stream.write(hello)
                if code is None:
                    assert (await stream.read()).welcome.epoch == 3
                    continue
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stream.read()
                assert caught.value.code() == code
                assert "only agent may" in caught.value.details()
    finally:
        await server.stop(0)


async def test_a_primarys_agent_asks_a_peer_agent_over_tls(certs):
    """Agent to agent: the failsafe round of us-east-1's agent to eu-west-1's, each with its
    own region's certificate; a reader may not ask."""
    failsafe = Failsafe("eu-west-1")
    failsafe.word_seen(agent_pb2.ClusterWord(write_region="us-east-1"), 3)
    streaming = common_pb2.DatabaseStatus(
        role=common_pb2.DATABASE_ROLE_STANDBY,
        wal_receiver_streaming=True,
        upstream_address="10.0.1.5:5432",
        system_identifier=42,
    )
    servicer = FailsafeServicer(failsafe, lambda: (streaming, failsafe._clock()), lambda: 5.0)
    server = Server("127.0.0.1:0", tls=certs["agent-eu"])
    server.add(agent_pb2_grpc.add_FailsafeServiceServicer_to_server, servicer, FAILSAFE)
    await server.start()
    ask = agent_pb2.ConfirmRequest(
        primary_region="us-east-1", primary_address="10.0.1.5:5432", system_identifier=42
    )
    peers = [Peer("eu-west-1", f"127.0.0.1:{server.port}")]
    try:
        for who, expected in (("agent", ("eu-west-1",)), ("reader", ())):
            rounds = Rounds(peers, tls=certs[who])
            try:
                confirmed, problem = await rounds.ask(ask, timeout=5.0)
            finally:
                await rounds.close()
            assert confirmed == expected, problem
            if not expected:
                assert "PERMISSION_DENIED" in problem
    finally:
        await server.stop(0)


async def test_the_routing_client_follows_the_table_over_tls(certs):
    server = Server("127.0.0.1:0", tls=certs["server"])
    server.add(register_routing, Routing(), ROUTING)
    await server.start()
    try:
        async with RoutingClient([f"127.0.0.1:{server.port}"], tls=certs["reader"]) as client:
            assert client.table.version == 5
    finally:
        await server.stop(0)


async def test_resolve_registered_as_bytes_is_guarded_too(certs):
    """The coordinator registers Resolve without deserializers (coordinator.routing_service):
    the interceptor guards it like any other method."""
    server = Server("127.0.0.1:0", tls=certs["server"])
    server.add(register_routing, Routing(), ROUTING)
    await server.start()
    request = routing_pb2.ResolveRequest(client_ip="10.0.0.1")
    try:
        async with open_channel(f"127.0.0.1:{server.port}", certs["reader"]) as channel:
            answer = await routing_pb2_grpc.RoutingServiceStub(channel).Resolve(request, timeout=5)
            assert answer.reason == "for 10.0.0.1"
        async with open_channel(f"127.0.0.1:{server.port}", certs["agent"]) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await routing_pb2_grpc.RoutingServiceStub(channel).Resolve(request, timeout=5)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await server.stop(0)


async def test_a_served_method_the_table_does_not_name_is_refused(certs):
    """Deny by default: a method served but left out of the table is nobody's to call."""
    table = {f"/{ADMIN}/GetStatus": frozenset({"operator"})}
    server = await serve(certs["server"], Authorizer(table=table))
    before = REGISTRY.get_sample_value(
        "latitude_rpc_refused_total", {"method": "other", "code": "permission_denied"}
    )
    try:
        assert (await call(server, certs["operator"], "GetStatus")).responder_id == "c1"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(server, certs["operator"], "SetStrategy")
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert caught.value.details() == f"/{ADMIN}/SetStrategy is open to no caller"
    finally:
        await server.stop(0)
    after = REGISTRY.get_sample_value(
        "latitude_rpc_refused_total", {"method": "other", "code": "permission_denied"}
    )
    assert after == (before or 0) + 1

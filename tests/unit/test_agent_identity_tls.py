"""AgentService.Connect behind a real TLS port in process (certificates from latitude.pki, a
gRPC server on an ephemeral port): the identity comes from the verified certificate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from coordinator.agent_service import AgentService
from coordinator.region_hosts import RegionHosts
from latitude import pki
from latitude.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from tests.unit.agent_contexts import Events

HOST = "127.0.0.1"


def hello(region: str) -> agent_pb2.AgentMessage:
    endpoint = common_pb2.Endpoint(
        name="pg", kind=common_pb2.ENDPOINT_KIND_POSTGRES, address=f"{HOST}:5432"
    )
    return agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(
            region=region,
            agent_id=f"{region}/a",
            location=common_pb2.Location(latitude=1.0, longitude=2.0),
            capacity=10,
            endpoints=[endpoint],
        )
    )


@pytest.fixture
async def server(tmp_path: Path):
    """A TLS port requiring a client certificate, before AgentService. (gRPC Python cannot
    ask for a certificate without requiring one: require_client_auth=False does not ask at
    all, and no caller would have an identity.)"""
    pki.create_ca(tmp_path)
    files = pki.issue(tmp_path, "coordinator", identity=pki.Identity("coordinator"), hosts=[HOST])
    cert, key, ca = files.read()
    config = SimpleNamespace(
        regions=("eu-west-1", "ap-southeast-1"),
        hosts=RegionHosts(),
        streams_per_caller=64,
        streams_total=4096,
    )
    events = Events()
    node = SimpleNamespace(
        is_leader=True,
        config=config,
        events=events,
        registry=None,
        not_leader=lambda: agent_pb2.CoordinatorMessage(not_leader=agent_pb2.NotLeader()),
    )
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentService(node), server)
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )
    port = server.add_secure_port(f"{HOST}:0", credentials)
    await server.start()
    yield SimpleNamespace(address=f"{HOST}:{port}", ca_dir=tmp_path, ca=ca, events=events)
    await server.stop(0)


async def refusal(server, identity: pki.Identity | None, message) -> grpc.aio.AioRpcError:
    if identity is None:
        credentials = grpc.ssl_channel_credentials(server.ca)
    else:
        files = pki.issue(server.ca_dir, "client", identity=identity)
        cert, key, ca = files.read()
        credentials = grpc.ssl_channel_credentials(ca, key, cert)
    async with grpc.aio.secure_channel(server.address, credentials) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.write(message)
            while await call.read() is not grpc.aio.EOF:
                pass
            await call
        return raised.value


async def test_an_agent_certificate_for_another_region_is_refused(server):
    error = await refusal(server, pki.Identity("agent", "ap-southeast-1"), hello("eu-west-1"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (
        "the certificate is for region 'ap-southeast-1' but the hello says 'eu-west-1': an "
        "agent speaks only for the region its certificate names"
    )


async def test_a_reader_certificate_cannot_open_an_agent_stream(server):
    error = await refusal(server, pki.Identity("reader"), hello("eu-west-1"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "the reader role cannot open an agent stream" in error.details()


async def test_the_agent_of_the_region_gets_past_the_identity_check(server):
    # The fake node has no registry: a caller past every check is told to find the leader.
    files = pki.issue(server.ca_dir, "agent", identity=pki.Identity("agent", "eu-west-1"))
    cert, key, ca = files.read()
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    async with grpc.aio.secure_channel(server.address, credentials) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        await call.write(hello("eu-west-1"))
        first = await call.read()
    assert first.WhichOneof("body") == "not_leader"


async def test_no_client_certificate_never_reaches_the_service(server):
    error = await refusal(server, None, hello("eu-west-1"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # the handshake failed
    assert server.events.recorded == []

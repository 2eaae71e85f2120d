"""latitude.handler_guard on an in-process server: undecodable requests are refused with
INVALID_ARGUMENT whatever the method's shape, valid ones pass unchanged, and a stream handler
that reads from a task of its own is stopped with its clean-up run."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from latitude import pki
from latitude.channels import open_channel
from latitude.handler_guard import MAX_DETAILS_BYTES, bounded
from latitude.pki import Identity
from latitude.serving import Server
from latitude.v1 import agent_pb2, agent_pb2_grpc, routing_pb2, routing_pb2_grpc

pytestmark = pytest.mark.fuzz

CORRUPT = b"\x0a\x05ab"  # a length past the end
BAD_UTF8 = b"\x0a\x02\xff\xfe"  # ConfirmRequest.primary_region, not UTF-8


class Failsafe(agent_pb2_grpc.FailsafeServiceServicer):
    async def Confirm(self, request, context):
        if request.primary_region.startswith("unknown"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown region {request.primary_region!r}"
            )
        return agent_pb2.ConfirmReply(region=request.primary_region)


class Agents(agent_pb2_grpc.AgentServiceServicer):
    """Reads in a task of its own and writes from the handler, as coordinator.agent_service."""

    def __init__(self) -> None:
        self.cleaned_up = asyncio.Event()

    async def Connect(self, request_iterator, context):
        outbox: asyncio.Queue = asyncio.Queue()

        async def read():
            while (message := await context.read()) is not grpc.aio.EOF:
                await outbox.put(agent_pb2.CoordinatorMessage(report_ack={"sequence": 1}))
                assert message.WhichOneof("body") is not None
            await outbox.put(None)

        reader = asyncio.create_task(read())
        try:
            while (message := await outbox.get()) is not None:
                await context.write(message)
        finally:
            reader.cancel()
            self.cleaned_up.set()


class Routing(routing_pb2_grpc.RoutingServiceServicer):
    async def Watch(self, request, context):
        for version in range(request.known_version + 1, request.known_version + 3):
            yield routing_pb2.RoutingTable(version=version)


@pytest.fixture
async def served():
    server = Server("127.0.0.1:0")
    agents = Agents()
    server.add(agent_pb2_grpc.add_FailsafeServiceServicer_to_server, Failsafe(), "f")
    server.add(agent_pb2_grpc.add_AgentServiceServicer_to_server, agents, "a")
    server.add(routing_pb2_grpc.add_RoutingServiceServicer_to_server, Routing(), "r")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    yield channel, agents
    await channel.close()
    await server.stop(0)


@pytest.mark.parametrize("body", [CORRUPT, BAD_UTF8])
async def test_a_unary_request_that_does_not_decode_is_invalid_argument(served, body):
    channel, _ = served
    confirm = channel.unary_unary("/latitude.v1.FailsafeService/Confirm")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await confirm(body, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "latitude.v1.ConfirmRequest" in refused.value.details()


async def test_a_valid_request_is_answered_as_before(served):
    channel, _ = served
    stub = agent_pb2_grpc.FailsafeServiceStub(channel)
    reply = await stub.Confirm(agent_pb2.ConfirmRequest(primary_region="eu-west-1"), timeout=5)
    assert reply.region == "eu-west-1"
    tables = routing_pb2_grpc.RoutingServiceStub(channel).Watch(
        routing_pb2.WatchRequest(known_version=4), timeout=5
    )
    assert [t.version async for t in tables] == [5, 6]


async def test_a_server_stream_refuses_a_request_that_does_not_decode(served):
    channel, _ = served
    watch = channel.unary_stream("/latitude.v1.RoutingService/Watch")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in watch(CORRUPT, timeout=5):
            pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_bad_message_mid_stream_ends_it_after_the_handler_cleaned_up(served):
    channel, agents = served
    connect = channel.stream_stream("/latitude.v1.AgentService/Connect")
    call = connect(timeout=5)
    hello = agent_pb2.AgentMessage(hello={"region": "eu-west-1"}).SerializeToString()
    await call.write(hello)
    assert agent_pb2.CoordinatorMessage.FromString(await call.read()).report_ack.sequence == 1
    await call.write(b"\x0a\x02\xff\xfe")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "latitude.v1.AgentMessage" in refused.value.details()
    await asyncio.wait_for(agents.cleaned_up.wait(), 5)


@pytest.mark.parametrize("padding", ["x", "\u00e9", "\U0001f600"])
async def test_a_refusal_quoting_a_huge_request_arrives_cut(served, padding):
    """Uncut, 70,000 characters of details pass the client's 8 KiB metadata limit and the
    client sees RESOURCE_EXHAUSTED instead of the refusal."""
    channel, _ = served
    stub = agent_pb2_grpc.FailsafeServiceStub(channel)
    request = agent_pb2.ConfirmRequest(primary_region="unknown" + padding * 70_000)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Confirm(request, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details()
    assert details.startswith("unknown region 'unknown" + padding)
    assert details.endswith("more bytes cut)")
    assert len(details.encode()) < MAX_DETAILS_BYTES + 100


def test_bounded_keeps_short_details_and_cuts_on_a_character_boundary():
    assert bounded("region: required") == "region: required"
    cut = bounded("\u00e9" * 1000)
    assert cut.startswith("\u00e9" * (MAX_DETAILS_BYTES // 2))
    assert cut.endswith(f"({2000 - MAX_DETAILS_BYTES} more bytes cut)")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA, a server's certificate and a client certificate per role."""
    directory = tmp_path_factory.mktemp("pki")
    pki.create_ca(directory)
    server = pki.issue(directory, "server", identity=Identity("coordinator"), hosts=["127.0.0.1"])
    clients = {
        role: pki.issue(directory, f"client-{role}", identity=Identity(role))
        for role in ("coordinator", "reader")
    }
    return server, clients


@pytest.mark.parametrize(
    "role, code",
    [
        ("coordinator", grpc.StatusCode.INVALID_ARGUMENT),
        # The authorisation layer answers first: a stranger learns nothing of the decoding.
        ("reader", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
async def test_behind_the_authorisation_layer_a_bad_request_is_refused_in_its_turn(
    certificates, role, code
):
    server_tls, clients = certificates
    server = Server("127.0.0.1:0", tls=server_tls)
    server.add(agent_pb2_grpc.add_FailsafeServiceServicer_to_server, Failsafe(), "f")
    await server.start()
    try:
        async with open_channel(f"127.0.0.1:{server.port}", clients[role]) as channel:
            confirm = channel.unary_unary("/latitude.v1.FailsafeService/Confirm")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await confirm(BAD_UTF8, timeout=5)
            assert refused.value.code() == code, refused.value.details()
            if role == "coordinator":
                stub = agent_pb2_grpc.FailsafeServiceStub(channel)
                request = agent_pb2.ConfirmRequest(primary_region="eu-west-1")
                assert (await stub.Confirm(request, timeout=5)).region == "eu-west-1"
    finally:
        await server.stop(0)

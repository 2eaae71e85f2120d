"""Bounds on the real stack: a report flood ends its stream and nothing else, and a bad field
is INVALID_ARGUMENT, never UNKNOWN. Each test leaves the stack as it found it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from latitude.admin_client import NoCoordinator, cluster_status
from latitude.channels import open_channel
from latitude.stack.harness import suite_client_tls
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc, common_pb2
from tests.integration.connections import TLS, agent_hello

pytestmark = pytest.mark.stack

REGION = "ap-southeast-1"


@pytest.fixture
async def cluster(stack: Stack):
    await stack.up()
    yield stack
    await stack.up()


async def wait_status(stack: Stack, predicate, timeout: float, what: str):
    addresses = stack.coordinator_addresses(stack.state())
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await cluster_status(addresses, 1.0, tls=TLS)
            if predicate(last):
                return last
        except NoCoordinator:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last}")


HEALTHY = common_pb2.REGION_STATE_HEALTHY


def connected(view: admin_pb2.ClusterStatus, name: str) -> bool:
    return next(r for r in view.regions if r.region == name).agent_connected


def report(sequence: int) -> agent_pb2.AgentMessage:
    message = agent_pb2.AgentMessage(report=agent_pb2.Report(sequence=sequence))
    message.report.sent_at.GetCurrentTime()
    return message


@asynccontextmanager
async def region_to_ourselves(cluster: Stack) -> AsyncIterator[str]:
    """The region's agent killed and the leader's address (for a test's own stream), then the
    real agent back and every region HEALTHY, as the next test expects to find the stack."""
    await cluster.kill(f"agent-{REGION}")
    await wait_status(
        cluster, lambda s: not connected(s, REGION), 5, "the leader to see the agent gone"
    )
    addresses = cluster.coordinator_addresses(cluster.state())
    try:
        yield (await cluster_status(addresses, 1.0, tls=TLS)).leader.address
    finally:
        await cluster.up()
    await wait_status(
        cluster,
        lambda s: real_agent_back(s) and all(r.state == HEALTHY for r in s.regions),
        20,
        "the real agent back and every region HEALTHY",
    )


def real_agent_back(view: admin_pb2.ClusterStatus) -> bool:
    """The region held by its own agent again, not by a test's stream."""
    held = next(r for r in view.regions if r.region == REGION)
    return held.agent_connected and held.agent_id == f"{REGION}/stack"


async def test_a_report_flood_ends_its_stream_and_the_real_agent_comes_back(cluster: Stack):
    def flood():
        yield agent_hello(REGION, "flood")
        for sequence in range(1, 100_001):
            yield report(sequence)

    async with region_to_ourselves(cluster) as leader:
        started = time.monotonic()
        error = await asyncio.to_thread(_stream, leader, flood(), 20)
        assert error is not None, "the flood was taken whole: no report limit"
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        assert "reports a second" in error.details()
        assert time.monotonic() - started < 10


async def test_a_silent_agent_stream_is_ended_and_its_region_let_go(cluster: Stack):
    """A stream that stays open but says nothing (an agent dead or cut off behind a
    half-open connection) is ended by the leader within the failure threshold, so the region
    is not held by a stream nobody reads."""
    quiet = threading.Event()

    def hello_then_nothing():
        yield agent_hello(REGION, "silent")
        yield report(1)
        quiet.wait(60)

    async with region_to_ourselves(cluster) as leader:
        try:
            silent = asyncio.create_task(
                asyncio.to_thread(_stream, leader, hello_then_nothing(), 30)
            )
            await wait_status(cluster, lambda s: connected(s, REGION), 10, "the stream held")
            error = await asyncio.wait_for(silent, 30)
            assert error is not None, "the leader ended the silent stream with OK"
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
            assert error.details().startswith("nothing received for 3.0 s"), error.details()
            await wait_status(cluster, lambda s: not connected(s, REGION), 5, "the region let go")
        finally:
            quiet.set()


def _stream(address: str, messages, timeout: float) -> grpc.RpcError | None:
    """``messages`` on an agent stream as the region's agent (its certificate in TLS mode),
    on grpc's synchronous client: grpc.aio's reports its own write after the server's end as
    INTERNAL, hiding the server's status, where this one gives the server's. How the stream
    ended (None: OK)."""
    tls = suite_client_tls("agent", REGION)
    if tls is None:
        channel = grpc.insecure_channel(address)
    else:
        cert, key, ca = tls.read()
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert))
    with channel:
        answers = agent_pb2_grpc.AgentServiceStub(channel).Connect(messages, timeout=timeout)
        try:
            for _ in answers:
                pass
        except grpc.RpcError as err:
            return err
    return None


async def test_list_events_since_out_of_range_is_invalid_argument(cluster: Stack):
    request = admin_pb2.ListEventsRequest()
    request.since.seconds = 2**62
    for address in cluster.coordinator_addresses(cluster.state()):
        async with open_channel(address, TLS) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListEvents(request, timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith("since: not a valid timestamp")

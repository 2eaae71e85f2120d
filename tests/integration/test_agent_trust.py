"""A stranger speaking as an agent on the real stack: its addresses must be where the stack
says its region is, and a region's stream that still reports is not taken over, not even
under the real agent's id (GetStatus shows it to anyone)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from latitude.admin_client import cluster_status
from latitude.channels import open_channel
from latitude.stack.harness import suite_client_tls
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, agent_pb2, agent_pb2_grpc, common_pb2
from tests.integration.connections import TLS, agent_hello

pytestmark = pytest.mark.stack


@pytest.fixture
async def cluster(stack: Stack):
    await stack.up()
    yield stack
    await stack.up()


async def status(stack: Stack) -> admin_pb2.ClusterStatus:
    return await cluster_status(stack.coordinator_addresses(stack.state()), 1.0, tls=TLS)


def region(view: admin_pb2.ClusterStatus, name: str) -> admin_pb2.RegionStatus:
    return next(r for r in view.regions if r.region == name)


async def refusal(stack: Stack, message: agent_pb2.AgentMessage) -> grpc.aio.AioRpcError:
    """Open a stream to the leader with ``message``; the error that ends it."""
    leader = (await status(stack)).leader.address
    # In TLS mode, the certificate of the region the Hello names.
    tls = suite_client_tls("agent", message.hello.region) if TLS else None
    async with open_channel(leader, tls) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.write(message)
            while await call.read() is not grpc.aio.EOF:
                pass
            await call
        return raised.value


async def test_an_endpoint_outside_its_regions_hosts_is_refused_naming_the_field(cluster: Stack):
    # Documentation addresses (RFC 5737): on no region's host.
    error = await refusal(cluster, agent_hello("eu-west-1", "stranger", "203.0.113.9:5432"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "hello.endpoints[0].address: host 203.0.113.9 is not one of eu-west-1's configured "
        "hosts (region_hosts)"
    )


async def test_the_real_agents_id_does_not_take_over_its_stream(cluster: Stack):
    before = region(await status(cluster), "eu-west-1")
    assert before.agent_connected
    # Where the real agent's database is: only the held stream stands in the way.
    address = next(
        e.address for e in before.endpoints if e.kind == common_pb2.ENDPOINT_KIND_POSTGRES
    )
    error = await refusal(cluster, agent_hello("eu-west-1", before.agent_id, address))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"already reported by agent {before.agent_id!r}" in error.details()
    # The real agent's stream carries on: its reports keep arriving.
    deadline = time.monotonic() + 5.0
    while True:
        after = region(await status(cluster), "eu-west-1")
        newer = after.last_report_at.ToNanoseconds() > before.last_report_at.ToNanoseconds()
        if after.agent_connected and newer:
            break
        assert time.monotonic() < deadline, f"no report from the real agent since: {after}"
        await asyncio.sleep(0.05)
    assert after.agent_id == before.agent_id

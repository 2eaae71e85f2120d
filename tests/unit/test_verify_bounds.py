"""The agent's VerifyService refuses limits it would have to hold in memory, before it touches
the database (there is none here: a call that reached it would fail otherwise)."""

from __future__ import annotations

import grpc
import pytest

from agent.verify_service import MAX_LIMIT, VerifyServicer
from latitude.v1 import agent_pb2, agent_pb2_grpc


@pytest.fixture
async def verify():
    server = grpc.aio.server()
    servicer = VerifyServicer(target=None, region="eu-west-1", connect_timeout=0.1)
    agent_pb2_grpc.add_VerifyServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield agent_pb2_grpc.VerifyServiceStub(channel)
    await server.stop(None)
    await servicer.close()


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("Rows", agent_pb2.RowsRequest(schema="public", table="t", limit=MAX_LIMIT + 1)),
        ("Bounds", agent_pb2.BoundsRequest(schema="public", table="t", every=1, limit=2**32 - 1)),
    ],
)
async def test_a_limit_past_the_bound_is_invalid_argument(verify, method, request_):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await getattr(verify, method)(request_, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith(f"limit: at most {MAX_LIMIT}")

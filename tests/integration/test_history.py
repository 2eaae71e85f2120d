"""Health history on the real stack: the leader samples every region, any replica answers,
a region's failure shows in its history, and a new leader keeps what the old one recorded."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest

from latitude import cli
from latitude.admin_client import call_any, cluster_status
from latitude.channels import open_channel
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2_grpc, common_pb2, history_pb2
from tests.integration.connections import TLS, eventually

pytestmark = pytest.mark.stack

HEALTHY = common_pb2.REGION_STATE_HEALTHY
STANDBY_REGION = "eu-west-1"


@pytest.fixture
async def cluster(stack: Stack):
    await stack.up()
    yield stack
    await stack.up()


def addresses(stack: Stack) -> list[str]:
    return stack.coordinator_addresses(stack.state())


async def history(address: str, region: str, since: float = 600) -> history_pb2.GetHistoryResponse:
    request = history_pb2.GetHistoryRequest(region=region, since_seconds=since)
    return await call_any([address], "GetHistory", request, 5.0, tls=TLS)


async def test_every_replica_answers_the_history_the_leader_records(cluster: Stack):
    view = await cluster_status(addresses(cluster), 2.0, tls=TLS)
    follower = next(a for a in addresses(cluster) if a != view.leader.address)
    started = time.time()

    async def two_new_samples():
        answer = await history(follower, "us-east-1")
        fresh = [s for s in answer.samples if s.at_ms >= started * 1000]
        return answer if len(fresh) >= 2 else None

    answer = await eventually(two_new_samples, 20, "two samples newer than the test")
    assert answer.resolution_seconds == 5.0
    assert answer.samples[-1].state == HEALTHY
    assert answer.samples[-1].role == common_pb2.DATABASE_ROLE_PRIMARY
    assert [s.at_ms for s in answer.samples] == sorted(s.at_ms for s in answer.samples)
    on_leader = await history(view.leader.address, "us-east-1")
    assert {s.at_ms for s in answer.samples} <= {s.at_ms for s in on_leader.samples} | {
        answer.samples[-1].at_ms
    }


async def test_a_region_failure_shows_in_its_history_and_survives_a_leader_change(
    cluster: Stack,
):
    view = await cluster_status(addresses(cluster), 2.0, tls=TLS)
    await cluster.kill(f"agent-{STANDBY_REGION}")

    async def unhealthy_sampled():
        answer = await history(view.leader.address, STANDBY_REGION)
        states = [s.state for s in answer.samples]
        return answer if common_pb2.REGION_STATE_UNHEALTHY in states else None

    before = await eventually(unhealthy_sampled, 20, f"{STANDBY_REGION} sampled UNHEALTHY")
    await cluster.kill(view.leader.leader_id, signal.SIGKILL)
    survivors = [a for a in addresses(cluster) if a != view.leader.address]

    async def new_leader_samples():
        try:
            status = await cluster_status(survivors, 1.0, tls=TLS)
        except Exception:
            return None
        if status.leader.leader_id in ("", view.leader.leader_id):
            return None
        answer = await history(survivors[0], STANDBY_REGION)
        newer = [s for s in answer.samples if s.at_ms > before.samples[-1].at_ms]
        return answer if newer else None

    after = await eventually(new_leader_samples, 30, "a sample by the new leader")
    kept = {s.at_ms for s in after.samples}
    assert {s.at_ms for s in before.samples} <= kept, "the new leader lost recorded history"


async def test_history_refuses_an_unknown_region_and_a_bad_window(cluster: Stack):
    channel = open_channel(addresses(cluster)[0], TLS)
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.GetHistory(history_pb2.GetHistoryRequest(region="mars-1"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert "mars-1" in unknown.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.GetHistory(
                history_pb2.GetHistoryRequest(region="us-east-1", since_seconds=-1), timeout=5
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "since_seconds" in bad.value.details()
    finally:
        await channel.close()


async def test_latitude_history_prints_a_timeline(cluster: Stack, capsys):
    argv = ["history", "us-east-1", "--since", "10m", "--dir", str(cluster.dir)]

    async def printed():
        code = await asyncio.to_thread(cli.main, argv)
        out = capsys.readouterr().out
        return out if code == 0 and "HEALTHY" in out else None

    out = await eventually(printed, 20, "a timeline with a HEALTHY span")
    assert "FROM" in out and "STATE" in out and "weight" in out

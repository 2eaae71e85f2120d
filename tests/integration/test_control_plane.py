"""Agents, coordinators and failure detection on the real stack (issue: report stream,
election, detection, status). Each test leaves the stack as it found it: every region
HEALTHY under one leader."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time

import grpc
import pytest

from latitude.admin_client import NoCoordinator, cluster_status
from latitude.channels import open_channel
from latitude.stack.harness import suite_client_tls
from latitude.stack.postgres import connect
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, agent_pb2, agent_pb2_grpc, common_pb2
from tests.integration.connections import TLS, agent_hello

pytestmark = pytest.mark.stack

HEALTHY = common_pb2.REGION_STATE_HEALTHY
UNHEALTHY = common_pb2.REGION_STATE_UNHEALTHY


@pytest.fixture
async def cluster(stack: Stack):
    """The stack, healthy before the test and made healthy again after it."""
    await stack.up()
    yield stack
    await stack.up()


async def status(stack: Stack) -> admin_pb2.ClusterStatus:
    return await cluster_status(stack.coordinator_addresses(stack.state()), 1.0, tls=TLS)


async def wait_status(stack: Stack, predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await status(stack)
            if predicate(last):
                return last
        except NoCoordinator:  # every replica may be down mid-test
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last status: {last}")


def region(view: admin_pb2.ClusterStatus, name: str) -> admin_pb2.RegionStatus:
    return next(r for r in view.regions if r.region == name)


async def test_every_region_reports_to_one_leader(cluster: Stack):
    view = await status(cluster)
    assert view.leader.leader_id in cluster.topology.coordinators
    assert [r.region for r in view.regions] == sorted(r.name for r in cluster.topology.regions)
    assert {r.region: r.state for r in view.regions} == dict.fromkeys(
        [r.region for r in view.regions], HEALTHY
    )
    assert view.write_region == "us-east-1"
    assert region(view, "us-east-1").database.role == common_pb2.DATABASE_ROLE_PRIMARY
    for name in ("eu-west-1", "ap-southeast-1"):
        standby = region(view, name)
        assert standby.database.role == common_pb2.DATABASE_ROLE_STANDBY
        assert standby.database.wal_receiver_streaming
        assert standby.agent_connected and standby.last_report_age_seconds < 2
    # Every replica answers from etcd, and they agree.
    answers = [
        await cluster_status([a], 1.0, tls=TLS)
        for a in cluster.coordinator_addresses(cluster.state())
    ]
    assert {a.leader.leader_id for a in answers} == {view.leader.leader_id}
    assert {a.responder_id for a in answers} == set(cluster.topology.coordinators)
    assert all(m.healthy for m in view.etcd_members) and len(view.etcd_members) == 3


async def test_killing_the_leader_elects_another_and_agents_follow(cluster: Stack):
    before = await status(cluster)
    old = before.leader.leader_id
    killed_at = time.monotonic()
    await cluster.kill(old, signal.SIGKILL)
    after = await wait_status(
        cluster,
        lambda s: s.leader.leader_id not in ("", old),
        timeout=3 + 1 + 1,  # lease TTL + 1 s, plus a second of slack for a loaded machine
        what="a new leader",
    )
    elected_in = time.monotonic() - killed_at
    assert after.leader.epoch > before.leader.epoch
    assert elected_in <= 5.0

    def all_reporting(s):
        return s.leader.leader_id == after.leader.leader_id and all(
            r.agent_connected and r.last_report_age_seconds < 1.0 and r.state == HEALTHY
            for r in s.regions
        )

    await wait_status(cluster, all_reporting, 10, "every agent to report to the new leader")
    await cluster.up()  # restarts the old leader
    view = await status(cluster)
    assert view.leader.leader_id == after.leader.leader_id, "the restarted replica must follow"


async def _detect(cluster: Stack, name: str, fault) -> float:
    await fault()
    started = time.monotonic()
    await wait_status(
        cluster, lambda s: region(s, name).state == UNHEALTHY, 10, f"{name} to be UNHEALTHY"
    )
    return time.monotonic() - started


async def _recovers_without_flapping(cluster: Stack, name: str) -> None:
    await wait_status(cluster, lambda s: region(s, name).state == HEALTHY, 20, f"{name} back")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert region(await status(cluster), name).state == HEALTHY, "flapped after recovery"
        await asyncio.sleep(0.1)


async def test_a_killed_region_is_unhealthy_and_comes_back(cluster: Stack):
    name = "ap-southeast-1"

    async def kill_region():
        await cluster.kill(f"agent-{name}")
        await cluster.kill(f"postgres-{name}")

    detected = await _detect(cluster, name, kill_region)
    assert detected < 4.0
    reason = region(await status(cluster), name).state_reason
    assert reason.startswith("no report for over")
    await cluster.up()
    await _recovers_without_flapping(cluster, name)


async def test_a_frozen_agent_is_unhealthy_and_recovers_when_thawed(cluster: Stack):
    name = "eu-west-1"
    record = cluster.state().processes[f"agent-{name}"]

    async def freeze():
        await cluster.kill(f"agent-{name}", signal.SIGSTOP)

    try:
        detected = await _detect(cluster, name, freeze)
        assert detected < 4.0
    finally:
        os.kill(record.pid, signal.SIGCONT)
    await _recovers_without_flapping(cluster, name)


async def test_paused_replay_shows_growing_lag_in_bytes_and_seconds(cluster: Stack):
    state = cluster.state()
    standby = await connect(cluster.postgres_node(state, "eu-west-1"), state.superuser_password)
    primary = await connect(cluster.postgres_node(state, "us-east-1"), state.superuser_password)
    try:
        await standby.execute("SELECT pg_wal_replay_pause()")
        await primary.execute("CREATE TABLE IF NOT EXISTS lag_probe (v text)")
        deadline = time.monotonic() + 15
        while True:
            await primary.execute(
                "INSERT INTO lag_probe SELECT repeat('x', 1000) FROM generate_series(1, 100)"
            )
            view = await status(cluster)
            lagging = region(view, "eu-west-1")
            if lagging.replay_lag_bytes > 100_000 and lagging.replay_lag_seconds > 1.0:
                break
            assert time.monotonic() < deadline, f"lag never grew: {lagging}"
            await asyncio.sleep(0.2)
        assert region(view, "ap-southeast-1").replay_lag_bytes < lagging.replay_lag_bytes
    finally:
        await standby.execute("SELECT pg_wal_replay_resume()")
        await standby.close()
        await primary.close()


# -- bad input on the agent stream ---------------------------------------------------------


async def _stream(cluster: Stack, *messages: agent_pb2.AgentMessage) -> grpc.aio.AioRpcError:
    """Send ``messages`` to the leader; the error that ends the stream."""
    leader = (await status(cluster)).leader.address
    # An agent speaks for the region its certificate names: the first Hello's (any one
    # when there is none).
    hello = next((m.hello for m in messages if m.HasField("hello")), None)
    tls = suite_client_tls("agent", hello.region if hello else "us-east-1")
    async with open_channel(leader, tls) as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            for message in messages:
                await call.write(message)
            while await call.read() is not grpc.aio.EOF:
                pass
            await call  # the final status
        return raised.value


def _report(**fields) -> agent_pb2.AgentMessage:
    report = agent_pb2.Report(sequence=1, **fields)
    report.sent_at.GetCurrentTime()
    return agent_pb2.AgentMessage(report=report)


@pytest.mark.parametrize(
    ("messages", "code", "names"),
    [
        ([agent_hello("mars-1")], grpc.StatusCode.INVALID_ARGUMENT, "hello.region"),
        ([_report()], grpc.StatusCode.INVALID_ARGUMENT, "hello"),
        ([agent_hello("eu-west-1")], grpc.StatusCode.ALREADY_EXISTS, "eu-west-1"),
    ],
    ids=["unknown-region", "report-before-hello", "region-already-held"],
)
async def test_bad_streams_are_refused_naming_the_problem(cluster: Stack, messages, code, names):
    error = await _stream(cluster, *messages)
    assert error.code() == code
    assert names in error.details()


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"error_rate": math.nan}, "report.error_rate"),
        ({"capacity_utilization": -1.0}, "report.capacity_utilization"),
        ({"response_time_seconds": math.inf}, "report.response_time_seconds"),
    ],
)
async def test_bad_reports_are_refused_naming_the_field(cluster: Stack, fields, names):
    # A region nobody holds: a stack agent would rightly be refused as a duplicate.
    await cluster.kill("agent-ap-southeast-1")
    # Setup, not the subject: the leader ends a stream silent for fail_after (3 s) and
    # publishes within a second; the margin is for a loaded machine.
    await wait_status(
        cluster,
        lambda s: not region(s, "ap-southeast-1").agent_connected,
        15,
        "the leader to notice the agent's stream closed",
    )
    error = await _stream(cluster, agent_hello("ap-southeast-1", "impostor"), _report(**fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert names in error.details()


async def test_an_oversized_message_is_refused_and_others_carry_on(cluster: Stack):
    huge = agent_hello("eu-west-1")
    huge.hello.agent_version = "x" * (1024 * 1024)
    error = await _stream(cluster, huge)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The real agents' streams are untouched. (A region may blip to DEGRADED, or for a moment
    # UNHEALTHY, when a probe or a report is late on a loaded machine; that is not what this
    # test is about: a stream cut by the refusal would stay down.)
    await wait_status(
        cluster,
        lambda s: all(r.agent_connected and r.state != UNHEALTHY for r in s.regions),
        5,
        "every agent connected and no region UNHEALTHY",
    )


async def test_a_region_whose_database_is_down_is_degraded_not_dead(cluster: Stack):
    name = "ap-southeast-1"
    await cluster.kill(f"postgres-{name}")
    # The probe's open connection breaks first ("database not answering"); the next probe
    # cannot connect at all ("database down").
    view = await wait_status(
        cluster,
        lambda s: (
            region(s, name).state == common_pb2.REGION_STATE_DEGRADED
            and region(s, name).state_reason.startswith("database down")
        ),
        10,
        f"{name} to be DEGRADED with its database down",
    )
    degraded = region(view, name)
    assert degraded.agent_connected and degraded.database.role == common_pb2.DATABASE_ROLE_DOWN
    await cluster.up()
    await _recovers_without_flapping(cluster, name)


async def test_a_standby_whose_server_stays_down_is_brought_back_by_the_leader(cluster: Stack):
    """Nobody runs `latitude up`: the leader sees the agent report its server down past the
    grace (coordinator.failover.guards.DOWN_GRACE) and REJOINs it, which starts it as a
    standby of the write region again."""
    name = "ap-southeast-1"
    await cluster.kill(f"postgres-{name}", signal.SIGKILL)
    await wait_status(
        cluster,
        lambda s: region(s, name).database.role == common_pb2.DATABASE_ROLE_DOWN,
        10,
        f"{name}'s database to be reported down",
    )
    await wait_status(
        cluster,
        lambda s: (
            region(s, name).state == HEALTHY
            and region(s, name).database.role == common_pb2.DATABASE_ROLE_STANDBY
            and region(s, name).database.wal_receiver_streaming
        ),
        60,
        f"{name} streaming again without anyone restarting it",
    )
    await wait_status(
        cluster,
        lambda s: any(
            r.region == name and r.state == "streaming"
            for r in region(s, s.write_region).database.replicas
        ),
        10,
        f"the primary to list {name} streaming from it",
    )

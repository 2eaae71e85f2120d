"""The failsafe and the fence keeper on private stacks (the tests break them on purpose).

No promotion can happen without a leader, so losing etcd's quorum or freezing the leader must
not take writes down: the primary's agent keeps its database writable while every standby
confirms that it follows it. And a primary whose agent is gone is fenced all the same, by its
keeper, at the lease's deadline: the moment the leader may promote another region.

The failsafe needs the leader's word (ClusterWord in Welcome and ReportAck) behind every
confirmation.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import asyncpg
import pytest

from agent.demotion import fence_cause
from agent.keeper import read_lease
from latitude.admin_client import NoCoordinator, cluster_status
from latitude.channels import open_channel
from latitude.netaddr import join_host_port
from latitude.stack.harness import running_stack, suite_client_tls
from latitude.stack.postgres import SUPERUSER
from latitude.stack.stack import Stack
from latitude.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from tests.integration.connections import CONNECTION_TROUBLE, TLS, eventually, query, session

pytestmark = pytest.mark.stack

PRIMARY = "us-east-1"
STANDBYS = ("eu-west-1", "ap-southeast-1")
FENCE_AFTER = 4.0


@pytest.fixture(scope="module")
def private_stack():
    with running_stack() as stack:
        yield stack


async def confirmations(stack: Stack) -> dict[str, agent_pb2.ConfirmReply]:
    """Ask every standby's agent, as the primary's agent does, whether it vouches for it."""
    state = stack.state()
    node = stack.postgres_node(state, PRIMARY)
    request = agent_pb2.ConfirmRequest(
        primary_region=PRIMARY, primary_address=join_host_port(node.host, node.port)
    )
    replies = {}
    for region in STANDBYS:
        address = join_host_port(state.host, state.ports[f"agent-{region}"])
        # Only agents and coordinators may ask for a confirmation.
        async with open_channel(address, suite_client_tls("coordinator")) as channel:
            stub = agent_pb2_grpc.FailsafeServiceStub(channel)
            replies[region] = await stub.Confirm(request, timeout=2.0)
    return replies


async def failsafe_in_place(stack: Stack) -> None:
    """Every standby vouches for the primary (the leader's word included)."""
    deadline = time.monotonic() + 10
    while True:
        replies = await confirmations(stack)
        if all(r.confirmed for r in replies.values()):
            return
        reasons = {r: reply.reason for r, reply in replies.items() if not reply.confirmed}
        if time.monotonic() > deadline:
            raise AssertionError(f"the standbys do not confirm the primary: {reasons}")
        await asyncio.sleep(0.2)


class Writer:
    """Commits a row on the primary every 20 ms over one session; every failure is kept."""

    def __init__(self, stack: Stack, table: str) -> None:
        self._stack = stack
        self._table = table
        self.committed = 0
        self.failures: list[tuple[float, str]] = []  # (monotonic, error)

    async def run(self) -> None:
        conn = None
        try:
            while True:
                try:
                    if conn is None:
                        conn = await self._connect()
                    await conn.execute(f"INSERT INTO {self._table} DEFAULT VALUES", timeout=1.0)
                    self.committed += 1
                except CONNECTION_TROUBLE as err:
                    self.failures.append((time.monotonic(), f"{type(err).__name__}: {err}"))
                    if conn is not None:
                        conn.terminate()
                    conn = None
                await asyncio.sleep(0.02)
        finally:
            if conn is not None:
                conn.terminate()

    async def _connect(self) -> asyncpg.Connection:
        state = self._stack.state()
        node = self._stack.postgres_node(state, PRIMARY)
        return await asyncpg.connect(
            host=node.host, port=node.port, user=SUPERUSER, password=state.superuser_password,
            database="postgres", timeout=1.0,
        )  # fmt: skip


async def writing(stack: Stack, table: str, seconds: float) -> Writer:
    """Write for ``seconds``; the writer, to look at."""
    async with session(stack, PRIMARY) as conn:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY)")
    writer = Writer(stack, table)
    task = asyncio.create_task(writer.run())
    try:
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return writer


async def assert_writable_primary(stack: Stack) -> None:
    assert not await query(stack, PRIMARY, "SELECT pg_is_in_recovery()")
    assert await query(stack, PRIMARY, "SHOW default_transaction_read_only") == "off"
    data = stack.postgres_node(stack.state(), PRIMARY).data_dir
    assert fence_cause(data) is None


async def leader_of(stack: Stack) -> str:
    async def look():
        try:
            view = await cluster_status(stack.coordinator_addresses(stack.state()), 1.0, tls=TLS)
        except NoCoordinator:
            return None
        return view.leader.leader_id or None

    return await eventually(look, 15, "a coordinator leader")


async def test_losing_etcds_quorum_does_not_take_writes_down(private_stack: Stack):
    stack = private_stack
    await failsafe_in_place(stack)
    await stack.kill("etcd-2")
    await stack.kill("etcd-3")
    try:
        writer = await writing(stack, "through_etcd_outage", 15.0)
    finally:
        await stack.up()  # restarts them, and waits for a leader to see every region HEALTHY
    assert writer.failures == [], f"writes failed without quorum: {writer.failures[:3]}"
    assert writer.committed > 200
    await assert_writable_primary(stack)


async def test_a_frozen_leader_does_not_take_writes_down(private_stack: Stack):
    stack = private_stack
    await failsafe_in_place(stack)
    leader = await leader_of(stack)
    pid = stack.state().processes[leader].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        writer = await writing(stack, "through_frozen_leader", 8.0)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert writer.failures == [], f"writes failed while {leader} was frozen: {writer.failures[:3]}"
    assert writer.committed > 100
    await assert_writable_primary(stack)
    await stack.up()


@pytest.fixture
def own_stack():
    """A stack for one test: it ends with its primary fenced by its keeper."""
    with running_stack() as stack:
        yield stack


async def test_the_keeper_fences_the_primary_of_a_dead_agent_at_its_lease(own_stack: Stack):
    stack = own_stack
    state = stack.state()
    data = stack.postgres_node(state, PRIMARY).data_dir
    lease_file = stack.dir / PRIMARY / "fence.lease"
    async with session(stack, PRIMARY) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS past_the_agent (id bigserial PRIMARY KEY)")
    writer = Writer(stack, "past_the_agent")
    task = asyncio.create_task(writer.run())
    try:
        await asyncio.sleep(1.0)
        await stack.kill(f"agent-{PRIMARY}")
        killed_at = time.monotonic()
        lease = read_lease(lease_file, PRIMARY)  # the agent's last word on it
        assert lease is not None
        # Renewed by acknowledgements (or failsafe rounds) up to the end.
        assert lease.deadline - killed_at <= FENCE_AFTER + 0.1
        await eventually(lambda: writer.failures, lease.deadline - time.monotonic() + 3.0,
                         "the keeper to stop the primary taking writes")  # fmt: skip
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stopped_at = writer.failures[0][0]
    late = stopped_at - lease.deadline
    assert -0.2 <= late <= 1.0, f"writes stopped {late:+.2f} s after the lease's deadline"
    assert fence_cause(data) == "keeper"
    assert (data / "standby.signal").exists()  # whoever starts it again gets a standby
    # Bringing the region back (`up`: the agent, and the server as a fenced primary that the
    # leader rejoins or unfences) needs the agent to report the demoted server as a fenced
    # primary, which is the hard fence's work (agent/actuator.py, the probe), not this one's.


async def test_a_region_whose_keeper_is_gone_is_degraded(private_stack: Stack):
    stack = private_stack
    region = "ap-southeast-1"
    await stack.kill(f"keeper-{region}")

    async def degraded():
        view = await cluster_status(stack.coordinator_addresses(stack.state()), 1.0, tls=TLS)
        seen = next(r for r in view.regions if r.region == region)
        return seen.state == common_pb2.REGION_STATE_DEGRADED and seen.state_reason

    reason = await eventually(degraded, 10, f"{region} to be DEGRADED")
    assert "fence-keeper" in reason
    await stack.up()  # restarts the keeper; ready once every region is HEALTHY again


async def test_a_region_brought_back_by_up_is_not_fenced_by_its_keeper(private_stack: Stack):
    """`up` restarts a killed region's server (fenced) before its agent: the keeper, whose lease
    from the dead agent has long passed, leaves it to the new agent (the leader fails over
    meanwhile, and makes it rejoin as a standby)."""
    stack = private_stack
    await stack.kill(f"agent-{PRIMARY}")
    await stack.kill(f"postgres-{PRIMARY}")
    await asyncio.sleep(FENCE_AFTER + 1.0)  # the dead agent's lease passes
    await stack.up()  # ready: one writable primary, every standby streaming, all HEALTHY
    log = (stack.dir / "logs" / f"keeper-{PRIMARY}.log").read_text()
    assert "fencing it" not in log, log

"""Regional failover on a private stack (it is destroyed along the way) under a write load,
watched by an independent monitor that samples every region's writability."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import pytest

from latitude.admin_client import NoCoordinator, cluster_status
from latitude.stack.harness import running_stack
from latitude.stack.postgres import connect
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2
from tests.integration.connections import CONNECTION_TROUBLE, streams_to

pytestmark = pytest.mark.stack


REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")


@pytest.fixture(scope="module")
def private_stack():
    with running_stack() as stack:
        yield stack


async def status(stack: Stack) -> admin_pb2.ClusterStatus | None:
    try:
        return await cluster_status(stack.coordinator_addresses(stack.state()), 1.0)
    except NoCoordinator:
        return None


class Monitor:
    """Samples pg_is_in_recovery() and default_transaction_read_only everywhere, 20 times a
    second, and remembers the most regions it ever saw writable at once."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self.most_writable = 0
        self.samples = 0
        self._conns: dict[str, asyncpg.Connection | None] = dict.fromkeys(REGIONS)

    async def _writable(self, region: str) -> bool:
        state = self._stack.state()
        try:
            conn = self._conns[region]
            if conn is None or conn.is_closed():
                node = self._stack.postgres_node(state, region)
                conn = await connect(node, state.superuser_password, timeout=0.3)
                self._conns[region] = conn
            row = await conn.fetchrow(
                "SELECT NOT pg_is_in_recovery() AS primary, "
                "current_setting('default_transaction_read_only') = 'off' AS writable",
                timeout=0.3,
            )
            return bool(row["primary"] and row["writable"])
        except CONNECTION_TROUBLE:
            self._conns[region] = None
            return False

    async def run(self) -> None:
        while True:
            writable = await asyncio.gather(*(self._writable(r) for r in REGIONS))
            self.most_writable = max(self.most_writable, sum(writable))
            self.samples += 1
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for conn in self._conns.values():
            if conn is not None:
                conn.terminate()


async def test_losing_only_the_primarys_agent_does_not_promote(private_stack: Stack):
    stack = private_stack
    await stack.kill("agent-us-east-1")
    deadline = time.monotonic() + 8  # well past the 3 s failure threshold and fence deadline
    while time.monotonic() < deadline:
        view = await status(stack)
        assert view is not None
        assert view.write_region == "us-east-1"
        assert not view.HasField("failover"), f"a failover started: {view.failover}"
        await asyncio.sleep(0.2)
    await stack.up()


async def test_losing_the_primary_region_promotes_the_best_standby(private_stack: Stack):
    stack = private_stack
    state = stack.state()
    primary = await connect(stack.postgres_node(state, "us-east-1"), state.superuser_password)
    await primary.execute("CREATE TABLE IF NOT EXISTS failover_probe (id int PRIMARY KEY)")
    await primary.execute("INSERT INTO failover_probe VALUES (0)")
    primary.terminate()
    monitor = Monitor(stack)
    watching = asyncio.create_task(monitor.run())
    try:
        killed_at = time.monotonic()
        await stack.kill("agent-us-east-1")
        await stack.kill("postgres-us-east-1")
        while True:
            view = await status(stack)
            if view is not None and view.write_region not in ("", "us-east-1"):
                break
            assert time.monotonic() - killed_at < 15, f"no failover: {view}"
            await asyncio.sleep(0.05)
        redirected_in = time.monotonic() - killed_at
        new = view.write_region
        assert new in ("eu-west-1", "ap-southeast-1")
        assert redirected_in < 10, f"failover took {redirected_in:.1f} s"

        # The new primary takes writes, and holds what was committed before the failure.
        conn = await connect(stack.postgres_node(state, new), state.superuser_password)
        try:
            await conn.execute("INSERT INTO failover_probe VALUES (1)")
            assert await conn.fetchval("SELECT count(*) FROM failover_probe") == 2
            other = next(r for r in ("eu-west-1", "ap-southeast-1") if r != new)
            await streams_to(stack, new, other, timeout=10)
        finally:
            await conn.close()
        assert monitor.samples > 20
        assert monitor.most_writable == 1, "two writable primaries were seen at once"
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await monitor.close()


def _logs(stack: Stack, prefix: str, lines: int = 15) -> str:
    """The end of the stack's logs of ``prefix``*, for a failure message."""
    tails = []
    for log in sorted((stack.dir / "logs").glob(f"{prefix}*.log")):
        tails.append(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-lines:]))
    return "\n".join(tails)


@pytest.fixture
def fresh_stack():
    with running_stack() as stack:
        yield stack


async def test_a_new_leader_finishes_a_failover_its_predecessor_started(fresh_stack: Stack):
    stack = fresh_stack
    leader = (await status(stack)).leader.leader_id
    await stack.kill("agent-us-east-1")
    await stack.kill("postgres-us-east-1")
    # Kill the leader while it promotes: the record says PROMOTING, the rest is undone.
    deadline = time.monotonic() + 15
    while True:
        view = await status(stack)
        if view is not None and view.failover.phase == admin_pb2.FAILOVER_PHASE_PROMOTING:
            break
        assert time.monotonic() < deadline, f"never saw the promotion start: {view}"
        await asyncio.sleep(0.01)
    await stack.kill(leader)
    deadline = time.monotonic() + 20
    while True:
        view = await status(stack)
        if (
            view is not None
            and view.leader.leader_id not in ("", leader)
            and view.write_region not in ("", "us-east-1")
            and not view.HasField("failover")
        ):
            break
        assert time.monotonic() < deadline, (
            f"the new leader did not finish: {view}\n{_logs(stack, 'coordinator')}"
        )
        await asyncio.sleep(0.05)
    new = view.write_region
    other = next(r for r in ("eu-west-1", "ap-southeast-1") if r != new)
    state = stack.state()
    conn = await connect(stack.postgres_node(state, new), state.superuser_password)
    try:
        # A promoted primary that lost its leader fences itself fence_after later; the new
        # leader lifts that fence once it hears the primary again.
        deadline = time.monotonic() + 10
        while True:
            try:
                await conn.execute("CREATE TABLE resumed (v int)")
                break
            except asyncpg.ReadOnlySQLTransactionError:
                assert time.monotonic() < deadline, f"{new} never became writable"
                await asyncio.sleep(0.1)
        deadline = time.monotonic() + 10
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1", other
        ):
            assert time.monotonic() < deadline, f"{other} never followed {new}"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


@pytest.fixture
def synchronous_stack():
    with running_stack(synchronous=True) as stack:
        yield stack


async def test_in_synchronous_mode_no_acknowledged_commit_is_lost(synchronous_stack: Stack):
    stack = synchronous_stack
    state = stack.state()
    primary = await connect(stack.postgres_node(state, "us-east-1"), state.superuser_password)
    try:
        await primary.execute("CREATE TABLE acked (id int PRIMARY KEY)")
        deadline = time.monotonic() + 10
        while not (await primary.fetchval("SHOW synchronous_standby_names")).startswith("ANY 1"):
            assert time.monotonic() < deadline, "the leader never made replication synchronous"
            await asyncio.sleep(0.05)
        acknowledged: list[int] = []

        async def write() -> None:
            for i in range(1, 1_000_000):
                await primary.execute("INSERT INTO acked VALUES ($1)", i)
                acknowledged.append(i)

        writing = asyncio.create_task(write())
        await asyncio.sleep(1.0)
        await stack.kill("agent-us-east-1")
        await stack.kill("postgres-us-east-1")
        with contextlib.suppress(*CONNECTION_TROUBLE):
            await writing
    finally:
        primary.terminate()
    assert len(acknowledged) > 50
    deadline = time.monotonic() + 15
    while True:
        view = await status(stack)
        if view is not None and view.write_region not in ("", "us-east-1"):
            break
        assert time.monotonic() < deadline, f"no failover: {view}"
        await asyncio.sleep(0.05)
    conn = await connect(stack.postgres_node(state, view.write_region), state.superuser_password)
    try:
        stored = {r["id"] for r in await conn.fetch("SELECT id FROM acked")}
    finally:
        await conn.close()
    missing = [i for i in acknowledged if i not in stored]
    assert missing == [], f"{len(missing)} acknowledged commits lost: {missing[:10]}"

"""Regional failover on private stacks (they are destroyed along the way) under a write load,
watched by an independent monitor that samples every region's writability.

The old primary comes back the way users bring it back, through the stack's ``up``: it must
start fenced and rejoin as a standby of the new primary, by pg_rewind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import asyncpg
import pytest

from agent.demotion import fence_cause
from agent.keeper import read_lease
from latitude.admin_client import NoCoordinator, cluster_status
from latitude.stack.harness import running_stack
from latitude.stack.postgres import connect
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2
from tests.integration.connections import (
    CONNECTION_TROUBLE,
    TLS,
    Writer,
    eventually,
    failover_from,
    kill_region,
    missing_on,
    query,
    running,
    session,
    streams_to,
)

pytestmark = pytest.mark.stack


REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")


@pytest.fixture(scope="module")
def private_stack():
    with running_stack() as stack:
        yield stack


async def status(stack: Stack) -> admin_pb2.ClusterStatus | None:
    try:
        return await cluster_status(stack.coordinator_addresses(stack.state()), 1.0, tls=TLS)
    except NoCoordinator:
        return None


class Monitor:
    """Samples pg_is_in_recovery(), default_transaction_read_only and
    synchronous_standby_names everywhere, 20 times a second; remembers the most regions it
    ever saw writable at once, and every sample of a writable primary without synchronous
    standbys."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self.most_writable = 0
        self.samples = 0
        self.writable_asynchronous: list[tuple[float, str]] = []
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
                "current_setting('default_transaction_read_only') = 'off' AS writable, "
                "current_setting('synchronous_standby_names') AS synchronous",
                timeout=0.3,
            )
        except CONNECTION_TROUBLE:
            conn, self._conns[region] = self._conns[region], None
            if conn is not None:
                conn.terminate()
            return False
        writable = bool(row["primary"] and row["writable"])
        if writable and not row["synchronous"]:
            self.writable_asynchronous.append((time.time(), region))
        return writable

    async def run(self) -> None:
        try:
            while True:
                writable = await asyncio.gather(*(self._writable(r) for r in REGIONS))
                self.most_writable = max(self.most_writable, sum(writable))
                self.samples += 1
                await asyncio.sleep(0.05)
        finally:
            for conn in self._conns.values():
                if conn is not None:
                    conn.terminate()


def log_size(stack: Stack, name: str) -> int:
    path = stack.dir / "logs" / f"{name}.log"
    return path.stat().st_size if path.exists() else 0


def log_since(stack: Stack, name: str, offset: int) -> str:
    with (stack.dir / "logs" / f"{name}.log").open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


async def restart_and_rejoin(stack: Stack, region: str, primary: str) -> str:
    """Bring ``region`` back through the stack's ``up``, as a user would after the failover;
    it must come back as a standby streaming from ``primary``. Its agent's log meanwhile."""
    offset = log_size(stack, f"agent-{region}")
    await stack.up()  # ready only once every standby streams from the one writable primary
    await streams_to(stack, primary, region, timeout=10)
    assert await query(stack, region, "SELECT pg_is_in_recovery()"), f"{region} is no standby"
    return log_since(stack, f"agent-{region}", offset)


async def test_losing_only_the_primarys_agent_fences_it_by_its_keeper_and_not_sooner(
    fresh_stack: Stack,
):
    """An agent gone while standbys still stream from its primary is no reason to promote; but
    nobody can lift its fence deadline any more, so at the deadline the region's keeper fences
    the primary (what the leader counts on before it promotes another). A failover may follow:
    the standbys no longer stream from it."""
    stack = fresh_stack
    data = stack.postgres_node(stack.state(), "us-east-1").data_dir
    await stack.kill("agent-us-east-1")
    lease = read_lease(stack.dir / "us-east-1" / "fence.lease", "us-east-1")
    assert lease is not None
    while time.monotonic() < lease.deadline - 0.3:  # past the 3 s failure threshold
        view = await status(stack)
        assert view is not None
        assert view.write_region == "us-east-1"
        assert not view.HasField("failover"), f"a failover started: {view.failover}"
        assert fence_cause(data) is None, "fenced before the deadline"
        await asyncio.sleep(0.2)
    await eventually(lambda: fence_cause(data) == "keeper", 2.0, "the keeper to fence us-east-1")


async def stall_replication(stack: Stack, region: str) -> list[int]:
    """Freeze the primary's WAL senders (SIGSTOP): it goes on acknowledging commits that no
    standby receives, as when its region is cut off just before it dies. Their pids."""
    senders = await query(stack, region, "SELECT array_agg(pid) FROM pg_stat_replication")
    for pid in senders:
        os.kill(pid, signal.SIGSTOP)
    return list(senders)


async def test_the_primary_region_lost_fails_over_within_the_loss_bound_and_rejoins_by_rewind(
    private_stack: Stack,
):
    stack = private_stack
    async with session(stack, "us-east-1") as conn:
        await conn.execute("CREATE TABLE failover_probe (id int PRIMARY KEY)")
    monitor, writer = Monitor(stack), Writer(stack, "failover_probe")
    async with running(monitor.run(), writer.run()):
        await eventually(lambda: writer.acked_on("us-east-1") >= 50, 10, "writes to land")
        # Commits acknowledged while replication stalls are lost with the region: the loss
        # the recorded bound must cover.
        stalled_at = time.time()
        senders = await stall_replication(stack, "us-east-1")
        stalled = len(writer.acked)
        await eventually(lambda: len(writer.acked) >= stalled + 20, 5, "unreplicated writes")
        killed_at = await kill_region(stack, "us-east-1")
        for pid in senders:
            os.kill(pid, signal.SIGKILL)

        record = await failover_from(stack, "us-east-1", timeout=15, since=killed_at)
        assert record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, record.error
        new = record.to_region
        assert new in ("eu-west-1", "ap-southeast-1")
        redirected_in = record.steps["redirected"].ToNanoseconds() / 1e9 - killed_at
        assert redirected_in < 10, f"failover took {redirected_in:.1f} s"
        other = next(r for r in ("eu-west-1", "ap-southeast-1") if r != new)
        await streams_to(stack, new, other, timeout=10)
        await eventually(lambda: writer.acked_on(new) >= 20, 10, f"writes to land on {new}")

        # What is missing was acknowledged within the recorded bound of the writes' end.
        missing = await missing_on(stack, new, "failover_probe", writer)
        assert missing, "the stalled commits should be lost (async replication)"
        assert all(a.region == "us-east-1" for a in missing)
        assert not record.HasField("data_loss_bound_bytes"), "the old primary was unreachable"
        assert record.HasField("data_loss_bound_seconds")
        bound = record.data_loss_bound_seconds
        ended = record.fence_deadline.ToNanoseconds() / 1e9
        early = [a for a in missing if a.at < ended - bound]
        assert not early, (
            f"{len(early)} of {len(missing)} lost commits were acknowledged more than the bound "
            f"({bound:.3f} s) before the writes ended ({ended:.3f}); first: {early[0]}"
        )
        # And not padded: it reaches back to the standby's last heartbeat before the stall
        # (heartbeats come every 0.5 s), not further.
        assert ended - bound > stalled_at - 1.0, f"bound {bound:.3f} s is looser than it need be"

        # The old region comes back through `up`: fenced, then rewound into a standby.
        rejoin_log = await restart_and_rejoin(stack, "us-east-1", new)
        assert "rewound with pg_rewind" in rejoin_log, rejoin_log[-2000:]
        async with session(stack, new) as conn:
            await conn.execute("INSERT INTO failover_probe VALUES (-1)")
        await eventually(
            lambda: query(stack, "us-east-1", "SELECT count(*) FROM failover_probe WHERE id = -1"),
            10,
            "a new write to reach the rejoined standby",
        )
    assert monitor.samples > 100
    assert monitor.most_writable == 1, "two writable primaries were seen at once"


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
        # The other standby may have replayed past the new timeline's fork point (the old
        # primary wrote a little more before its fence): then it is rewound first, which
        # takes longer than a plain repoint.
        deadline = time.monotonic() + 30
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


async def test_in_synchronous_mode_repeated_failovers_lose_no_acknowledged_commit(
    synchronous_stack: Stack,
):
    """Three failovers in a row on one stack, each old primary rejoining before the next."""
    stack = synchronous_stack
    async with session(stack, "us-east-1") as conn:
        await conn.execute("CREATE TABLE acked (id int PRIMARY KEY)")
        await eventually(
            lambda: conn.fetchval("SELECT current_setting('synchronous_standby_names') <> ''"),
            10,
            "the leader to make replication synchronous",
        )
    # Commits wait for a standby, which takes a moment after a promotion.
    monitor, writer = Monitor(stack), Writer(stack, "acked", timeout=5.0)
    primary = "us-east-1"
    async with running(monitor.run(), writer.run()):
        for _ in range(3):
            await eventually(lambda p=primary: writer.acked_on(p) >= 50, 15, f"writes on {primary}")
            killed_at = await kill_region(stack, primary)
            # Generous: this test is about loss; bench/failover.py measures the time.
            record = await failover_from(stack, primary, timeout=30, since=killed_at)
            assert record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, record.error
            new = record.to_region
            await eventually(lambda n=new: writer.acked_on(n) >= 20, 15, f"writes on {new}")
            missing = await missing_on(stack, new, "acked", writer)
            assert missing == [], f"{len(missing)} acknowledged commits lost: {missing[:10]}"
            rejoin_log = await restart_and_rejoin(stack, primary, new)
            # up brings the old primary back demoted, in recovery, writing no WAL of its own:
            # it needs pg_rewind only when it had WAL the new primary never received.
            assert re.search(r"REJOIN: (rewound with pg_rewind|.*no rewind needed)", rejoin_log), (
                rejoin_log[-2000:]
            )
            primary = new
    assert monitor.most_writable == 1, "two writable primaries were seen at once"
    assert monitor.writable_asynchronous == [], (
        f"a writable primary had no synchronous standbys: {monitor.writable_asynchronous[:5]}"
    )

"""The hard fence under attack: clients that try to go on writing through a FENCE.

A fence that a session default made could be undone by any client. Here each way a client can
ask for writes (``BEGIN READ WRITE``, ``SET``, a role's setting, a startup option, the agent's
own application name) is used by a client committing in a loop while the primary is fenced:
after FENCE has answered nothing commits, and every commit the client saw acknowledged ends at
or before the position FENCE answered. A server whose every connection slot is taken, or whose
postmaster is hung, is fenced all the same; a fenced server started by hand comes back in
recovery; UNFENCE makes it writable again, on a higher timeline.

The module runs its own stack (it demotes and promotes us-east-1); each test leaves us-east-1
the writable primary, but the last, which promotes eu-west-1 and rejoins us-east-1 to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field

import asyncpg
import pytest

from agent.demotion import fence_cause, mark_fenced, postmaster_pid
from latitude.stack import processes
from latitude.stack.harness import running_stack
from latitude.stack.postgres import SUPERUSER, Postgres
from latitude.stack.stack import Stack
from latitude.v1 import agent_pb2, common_pb2
from tests.integration.actuators import actuator_for, command, in_recovery, timeline
from tests.integration.connections import CONNECTION_TROUBLE, eventually, query, session

pytestmark = pytest.mark.stack

K = agent_pb2.CommandKind
PRIMARY = common_pb2.DATABASE_ROLE_PRIMARY
US, EU = "us-east-1", "eu-west-1"
APP, APP_PASSWORD = "fence_app", "fence-app-password"


@pytest.fixture(scope="module")
def cluster() -> Stack:
    # No control plane: its leader would lift or repoint the fences these tests make.
    with running_stack(control_plane=False) as stack:
        asyncio.run(_prepare(stack))
        yield stack


async def _prepare(stack: Stack) -> None:
    async with session(stack, US) as conn:
        await conn.execute(f"""
            CREATE TABLE attempts (id bigint PRIMARY KEY, how text NOT NULL);
            CREATE ROLE {APP} LOGIN PASSWORD '{APP_PASSWORD}';
            GRANT SELECT, INSERT ON attempts TO {APP};
        """)  # fmt: skip


@dataclass
class Committer:
    """A client committing one row at a time, in a session opened by ``connect`` and set up by
    ``begin`` (a statement run before each insert, inside its transaction); it reconnects
    whenever its session fails. Each acknowledged commit: (id, when acknowledged, the WAL
    position read right after it in the same session, or None if that read failed)."""

    connect: object
    how: str
    begin: str = "BEGIN"
    setup: str = ""
    acked: list[tuple[int, float, int | None]] = field(default_factory=list)
    refused: int = 0
    error: str = ""

    async def run(self, first_id: int) -> None:
        conn, next_id = None, first_id
        try:
            while True:
                try:
                    if conn is None:
                        conn = await self.connect()
                        if self.setup:
                            await conn.execute(self.setup)
                    await conn.execute(
                        f"{self.begin}; INSERT INTO attempts VALUES ({next_id}, '{self.how}'); "
                        "COMMIT",
                        timeout=2.0,
                    )
                    acked_at = time.monotonic()
                    try:
                        lsn = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'", timeout=2)
                        lsn = int(lsn)
                    except CONNECTION_TROUBLE:
                        lsn = None
                    self.acked.append((next_id, acked_at, lsn))
                except CONNECTION_TROUBLE as err:
                    self.refused += 1
                    self.error = repr(err)
                    if conn is not None:
                        conn.terminate()
                    conn = None
                    await asyncio.sleep(0.02)
                next_id += 1
                await asyncio.sleep(0.005)
        finally:
            if conn is not None:
                conn.terminate()


def connector(stack: Stack, *, user: str = SUPERUSER, password: str | None = None, **settings):
    state = stack.state()
    node = stack.postgres_node(state, US)

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(
            host=node.host, port=node.port, user=user,
            password=password or state.superuser_password, database="postgres", timeout=2.0,
            server_settings={"application_name": "test", **settings},
        )  # fmt: skip

    return connect


async def fence_under(stack: Stack, client: Committer, first_id: int) -> agent_pb2.CommandResult:
    """FENCE us-east-1 while ``client`` commits; check what it saw; UNFENCE it again."""
    before = await timeline(stack, US)
    task = asyncio.create_task(client.run(first_id))
    try:
        await eventually(lambda: len(client.acked) >= 5, 10.0, f"{client.how}: commits ({client})")
        async with actuator_for(stack, US) as actuator:
            fenced = await actuator.execute(command(K.COMMAND_KIND_FENCE))
            answered = time.monotonic()
            assert fenced.ok, fenced.error
            assert fenced.observed.role == PRIMARY and fenced.observed.fenced
            assert fenced.fence_lsn, "a clean stop: the position is known"
            # The client keeps trying, against the server stopped and started in recovery.
            refused = client.refused
            await eventually(lambda: client.refused >= refused + 3, 15.0, "refused attempts")
            await asyncio.sleep(0.5)
            after = [a for a in client.acked if a[1] >= answered]
            assert after == [], f"{client.how}: committed after FENCE answered: {after}"
            beyond = [a for a in client.acked if a[2] is not None and a[2] > fenced.fence_lsn]
            assert beyond == [], f"{client.how}: acknowledged past {fenced.fence_lsn}: {beyond}"
            assert await in_recovery(stack, US)
            # Every acknowledged commit is there, in the fenced server.
            ids = [a[0] for a in client.acked]
            found = await query(stack, US, "SELECT count(*) FROM attempts WHERE id = any($1)", ids)
            assert found == len(ids)
            task.cancel()
            unfenced = await actuator.execute(command(K.COMMAND_KIND_UNFENCE))
            assert unfenced.ok, unfenced.error
            assert not unfenced.observed.fenced and unfenced.observed.timeline_id > before
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not await in_recovery(stack, US)
    assert await timeline(stack, US) > before
    return fenced


async def test_begin_read_write_commits_nothing_past_the_fence(cluster: Stack):
    client = Committer(connector(cluster), "begin read write", begin="BEGIN READ WRITE")
    await fence_under(cluster, client, 1_000_000)


async def test_a_session_setting_commits_nothing_past_the_fence(cluster: Stack):
    client = Committer(
        connector(cluster), "session set", setup="SET default_transaction_read_only = off"
    )
    await fence_under(cluster, client, 2_000_000)


async def test_a_role_setting_commits_nothing_past_the_fence(cluster: Stack):
    async with session(cluster, US) as conn:
        await conn.execute(f"ALTER ROLE {APP} SET default_transaction_read_only = off")
    client = Committer(connector(cluster, user=APP, password=APP_PASSWORD), "role setting")
    await fence_under(cluster, client, 3_000_000)


async def test_a_startup_option_commits_nothing_past_the_fence(cluster: Stack):
    connect = connector(cluster, default_transaction_read_only="off")
    await fence_under(cluster, Committer(connect, "startup option"), 4_000_000)


async def test_the_agents_name_commits_nothing_past_the_fence(cluster: Stack):
    connect = connector(cluster, application_name="latitude-agent x")
    await fence_under(cluster, Committer(connect, "agent name"), 5_000_000)


async def test_a_server_with_no_free_connection_is_fenced_all_the_same(cluster: Stack):
    """Every slot taken, the superusers' reserved ones too: no probe, no SQL. The FENCE
    answers from files and signals; the connections end with the server."""
    before = await timeline(cluster, US)
    max_connections = int(await query(cluster, US, "SHOW max_connections"))
    reserved = int(await query(cluster, US, "SHOW superuser_reserved_connections"))
    app = connector(cluster, user=APP, password=APP_PASSWORD)
    holders: list[asyncpg.Connection] = []
    client = Committer(app, "no free slot")
    task = asyncio.create_task(client.run(6_000_000))
    try:
        await eventually(lambda: len(client.acked) >= 3, 10.0, "commits")
        for _ in range(max_connections - reserved - 1):  # the client holds one
            holders.append(await app())
        superuser = connector(cluster)
        for _ in range(reserved):
            holders.append(await superuser())
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await superuser()
        async with actuator_for(cluster, US) as actuator:
            fenced = await actuator.execute(command(K.COMMAND_KIND_FENCE))
            answered = time.monotonic()
            assert fenced.ok, fenced.error
            assert fenced.observed.role == PRIMARY and fenced.observed.fenced
            assert fenced.fence_lsn
            await eventually(lambda: in_recovery(cluster, US), 15.0, "the server in recovery")
            report = await actuator.execute(command(K.COMMAND_KIND_REPORT_NOW))
            assert report.observed.fenced
            assert [a for a in client.acked if a[1] >= answered] == []
            beyond = [a for a in client.acked if a[2] is not None and a[2] > fenced.fence_lsn]
            assert beyond == []
            task.cancel()
            for conn in holders:
                conn.terminate()
            unfenced = await actuator.execute(command(K.COMMAND_KIND_UNFENCE))
            assert unfenced.ok and unfenced.observed.timeline_id > before, unfenced.error
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for conn in holders:
            conn.terminate()


async def test_a_hung_postmaster_is_stopped_at_once_and_fenced(cluster: Stack):
    """A stopped postmaster answers no connection and no fast shutdown: past the grace
    period the fence stops it at once, its backends too; the position is then unknown."""
    before = await timeline(cluster, US)
    node = cluster.postgres_node(cluster.state(), US)
    client = Committer(connector(cluster), "hung postmaster", begin="BEGIN READ WRITE")
    task = asyncio.create_task(client.run(7_000_000))
    pid = postmaster_pid(node.data_dir)
    assert pid is not None
    try:
        await eventually(lambda: len(client.acked) >= 3, 10.0, "commits")
        os.kill(pid, signal.SIGSTOP)
        async with actuator_for(cluster, US) as actuator:
            started = time.monotonic()
            fenced = await actuator.execute(command(K.COMMAND_KIND_FENCE))
            answered = time.monotonic()
            assert fenced.ok, fenced.error
            assert fenced.fence_lsn == 0  # stopped at once: not known exactly
            assert answered - started < 8.0
            assert processes.start_ticks(pid) is None or postmaster_pid(node.data_dir) != pid
            await eventually(lambda: in_recovery(cluster, US), 15.0, "the server in recovery")
            report = await actuator.execute(command(K.COMMAND_KIND_REPORT_NOW))
            assert report.observed.role == PRIMARY and report.observed.fenced
            await asyncio.sleep(0.3)
            assert [a for a in client.acked if a[1] >= answered] == []
            task.cancel()
            unfenced = await actuator.execute(command(K.COMMAND_KIND_UNFENCE))
            assert unfenced.ok and unfenced.observed.timeline_id > before, unfenced.error
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_fenced_server_started_by_hand_comes_back_in_recovery(cluster: Stack):
    node = cluster.postgres_node(cluster.state(), US)
    pg_ctl = str(cluster.config.pg_programs()["pg_ctl"])
    user = cluster.config.db_user
    async with actuator_for(cluster, US) as actuator:
        fenced = await actuator.execute(command(K.COMMAND_KIND_FENCE))
        assert fenced.ok, fenced.error
        again = await actuator.execute(command(K.COMMAND_KIND_FENCE))  # idempotent
        assert again.ok and again.fence_lsn and again.observed.fenced, again.error
        await processes.run([pg_ctl, "stop", "-D", str(node.data_dir), "-m", "fast", "-w"],
                            what="stopping", user=user)  # fmt: skip
        # A server that is down is only marked; FENCE needs no server to answer.
        down = await actuator.execute(command(K.COMMAND_KIND_FENCE))
        assert down.ok and down.observed.role == common_pb2.DATABASE_ROLE_DOWN, down.error
        await processes.run(
            [pg_ctl, "start", "-D", str(node.data_dir), "-l", str(node.log), "-w"],
            what="starting by hand", user=user,
        )  # fmt: skip
        assert await in_recovery(cluster, US)
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await query(cluster, US, "INSERT INTO attempts VALUES (0, 'by hand')")
        report = await actuator.execute(command(K.COMMAND_KIND_REPORT_NOW))
        assert report.observed.role == PRIMARY and report.observed.fenced
        assert report.observed.fence_cause == common_pb2.FENCE_CAUSE_COMMAND
        unfenced = await actuator.execute(command(K.COMMAND_KIND_UNFENCE))
        assert unfenced.ok and not unfenced.observed.fenced, unfenced.error
        # Unfencing an unfenced primary changes nothing.
        assert (await actuator.execute(command(K.COMMAND_KIND_UNFENCE))).ok
    await query(cluster, US, "INSERT INTO attempts VALUES (0, 'unfenced')")


async def test_the_first_primary_up_fenced_is_promoted_to_set_up_replication(cluster: Stack):
    """`latitude up` after a crash in the very first start: the primary comes back demoted,
    and the stack, still setting up (no leader has decided anything), promotes it to make the
    replication role and slots (see Stack._up_postgres)."""
    before = await timeline(cluster, US)
    state = cluster.state()
    node = cluster.postgres_node(state, US)
    postgres = Postgres(cluster.config.pg_programs(), cluster.config.db_user)
    pg_ctl = str(cluster.config.pg_programs()["pg_ctl"])
    await processes.run([pg_ctl, "stop", "-D", str(node.data_dir), "-m", "immediate", "-w"],
                        what="stopping", user=cluster.config.db_user)  # fmt: skip
    postgres.fence(node)
    await postgres.start(node, 30.0)
    found = {r.region: r for r in (await cluster.status()).regions}
    assert found[US].role == "primary" and found[US].fenced
    assert fence_cause(node.data_dir) == "startup"

    await postgres.create_replication(
        node, state.superuser_password, state.replication_password, ["latitude_test_slot"]
    )
    assert not await in_recovery(cluster, US) and await timeline(cluster, US) > before
    assert fence_cause(node.data_dir) is None
    slots = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'latitude_test_slot'"
    assert await query(cluster, US, slots) == 1
    await query(cluster, US, "SELECT pg_drop_replication_slot('latitude_test_slot')")

    async def streaming() -> bool:
        return (await cluster.status()).streaming

    await eventually(streaming, 15.0, "both standbys to stream the new timeline")


async def test_a_demoted_primary_stopped_at_once_rejoins_after_recovering_in_recovery(
    cluster: Stack, caplog: pytest.LogCaptureFixture
):
    """Marked, then killed before it could be started again (a keeper's immediate stop): it
    crashed as a primary yet holds standby.signal, which single-user crash recovery refuses.
    REJOIN recovers it in recovery instead, then rewinds it. Last: eu-west-1 is promoted."""
    caplog.set_level(logging.INFO, logger="latitude.agent")
    await cluster.status()  # adopts the postmasters the fences above started again
    state = cluster.state()
    us, eu = (cluster.postgres_node(state, r) for r in (US, EU))
    async with actuator_for(cluster, US) as old, actuator_for(cluster, EU) as new:
        head = await query(cluster, US, "SELECT pg_current_wal_lsn() - '0/0'")
        # As a failover would: the slot the old primary will stream through once rejoined.
        slot = cluster.topology.region(US).slot_name
        args = agent_pb2.PromoteArgs(min_replayed_lsn=int(head), create_slots=[slot])
        promoted = await new.execute(command(K.COMMAND_KIND_PROMOTE, within=20, promote=args))
        assert promoted.ok, promoted.error
        await query(cluster, US, "INSERT INTO attempts VALUES (-1, 'diverging')")
        mark_fenced(us.data_dir, "keeper")
        pid = postmaster_pid(us.data_dir)
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: postmaster_pid(us.data_dir) is None, 5.0, "the kill")

        follow = agent_pb2.FollowArgs(
            primary_region=EU, primary_host=eu.host, primary_port=eu.port,
            slot_name=cluster.topology.region(US).slot_name,
        )  # fmt: skip
        rejoin = agent_pb2.RejoinArgs(follow=follow, allow_rewind=True)
        result = await old.execute(command(K.COMMAND_KIND_REJOIN, within=60, rejoin=rejoin))
        assert result.ok, result.error
        assert result.observed.role == common_pb2.DATABASE_ROLE_STANDBY
        assert not result.observed.fenced and fence_cause(us.data_dir) is None
    assert "recovered the demoted" in caplog.text
    assert await query(cluster, US, "SELECT count(*) FROM attempts WHERE id = -1") == 0

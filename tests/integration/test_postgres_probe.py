"""The agent's PostgreSQL probe against the stack's real servers, and against broken links to
them. Every test leaves the shared stack as it found it: replay running, primary writable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid

import asyncpg
import pytest

from agent.postgres_probe import DatabaseTarget, PostgresProbe
from latitude.netaddr import join_host_port
from latitude.stack.postgres import connect
from latitude.stack.stack import Stack
from latitude.v1 import common_pb2

pytestmark = pytest.mark.stack

PRIMARY = "us-east-1"
STANDBYS = ("eu-west-1", "ap-southeast-1")


def beat_name() -> str:
    """A region name of the test's own, so that its heartbeat row is told from the agent's."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def probe_for(stack: Stack):
    """make(region or (host, port), ...) -> a PostgresProbe; closed after the test, and its
    heartbeat row deleted."""
    state = stack.state()
    made: list[PostgresProbe] = []
    names: list[str] = []

    def make(where, *, password=state.superuser_password, name=None, **settings):
        if isinstance(where, str):
            node = stack.postgres_node(state, where)
            where = (node.host, node.port)
        names.append(name or beat_name())
        target = DatabaseTarget(where[0], where[1], "postgres", password)
        made.append(PostgresProbe(target, region=names[-1], **settings))
        return made[-1]

    yield make
    for probe in made:
        await probe.close()
    conn = await connect(stack.postgres_node(state, PRIMARY), state.superuser_password)
    try:
        with contextlib.suppress(asyncpg.UndefinedTableError):
            await conn.execute("DELETE FROM latitude.heartbeat WHERE region = any($1)", names)
    finally:
        await conn.close()


@pytest.fixture
async def sql(stack: Stack):
    """sql(region) -> a superuser connection to that region's server, closed after the test."""
    state = stack.state()
    opened: list[asyncpg.Connection] = []

    async def open_(region: str) -> asyncpg.Connection:
        opened.append(await connect(stack.postgres_node(state, region), state.superuser_password))
        return opened[-1]

    yield open_
    for conn in opened:
        await conn.close()


async def observe_until(probe: PostgresProbe, predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not predicate(status := await probe.observe()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}; last: {status}"
        await asyncio.sleep(0.05)
    return status


async def timed(call):
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started


async def test_the_primary_sees_both_standbys_streaming(probe_for, stack: Stack):
    probe = probe_for(PRIMARY, clock=lambda: 1_700_000_000.25)
    streaming = sorted(STANDBYS)
    status = await observe_until(
        probe,
        lambda s: sorted(r.region for r in s.replicas if r.state == "streaming") == streaming,
        "both standbys to stream",
    )
    assert status.role == common_pb2.DATABASE_ROLE_PRIMARY and status.probe_error == ""
    assert not status.fenced and status.fence_cause == common_pb2.FENCE_CAUSE_UNSPECIFIED
    assert status.current_lsn > 0 and status.timeline_id >= 1
    assert status.received_lsn == status.replayed_lsn == status.replay_lag_bytes == 0
    assert status.system_identifier > 0 and status.server_version[:2].isdigit()
    assert status.observed_at.ToNanoseconds() == 1_700_000_000_250_000_000
    host = stack.postgres_node(stack.state(), PRIMARY).host
    for replica in status.replicas:
        assert replica.client_address == host
        assert replica.sync_state == common_pb2.SYNC_STATE_ASYNC
        assert 0 < replica.replay_lsn <= replica.flush_lsn <= replica.sent_lsn
        assert replica.sent_lsn <= status.current_lsn


@pytest.mark.parametrize("region", STANDBYS)
async def test_a_standby_streams_from_the_primary(probe_for, stack: Stack, region: str):
    primary = await probe_for(PRIMARY).observe()
    status = await observe_until(probe_for(region), lambda s: s.wal_receiver_streaming, "WAL")
    node = stack.postgres_node(stack.state(), PRIMARY)
    assert status.role == common_pb2.DATABASE_ROLE_STANDBY and status.probe_error == ""
    assert status.upstream_address == join_host_port(node.host, node.port)
    assert status.received_lsn >= status.replayed_lsn > 0
    assert status.current_lsn == 0 and not status.replicas and not status.fenced
    assert status.system_identifier == primary.system_identifier
    assert status.timeline_id == primary.timeline_id


async def test_heartbeats_reach_a_standby_and_keep_its_lag_small(probe_for, sql):
    name = beat_name()
    primary, standby = probe_for(PRIMARY, name=name), probe_for(STANDBYS[0])
    await primary.observe()
    await primary.heartbeat()
    beat = await (await sql(PRIMARY)).fetchval(
        "SELECT beat_at FROM latitude.heartbeat WHERE region = $1", name
    )
    assert beat is not None, "heartbeat() wrote no row"
    assert (await primary.observe()).heartbeat_at.ToDatetime(beat.tzinfo) >= beat
    await observe_until(
        standby,
        lambda s: s.heartbeat_at.ToDatetime(beat.tzinfo) >= beat and s.replay_lag_seconds < 2,
        "the standby to replay the heartbeat with a lag under 2 s",
    )
    await standby.heartbeat()  # a no-op on a standby: nothing to write, nothing raised


async def test_paused_replay_grows_lag_in_bytes_and_seconds(probe_for, sql):
    region = STANDBYS[1]
    primary, standby = probe_for(PRIMARY), probe_for(region)
    admin, writer = await sql(region), await sql(PRIMARY)
    await primary.observe()
    await primary.heartbeat()
    before = await observe_until(standby, lambda s: s.replay_lag_seconds < 2, "a fresh standby")
    await admin.execute("SELECT pg_wal_replay_pause()")
    try:
        deadline = time.monotonic() + 15
        while await admin.fetchval("SELECT pg_get_wal_replay_pause_state()") != "paused":
            assert time.monotonic() < deadline, "replay never paused"
            await asyncio.sleep(0.05)
        while True:
            # WAL without a table to clean up afterwards.
            await writer.execute(
                "SELECT pg_logical_emit_message(false, 'latitude-test', repeat('x', 50000))"
            )
            await primary.observe()
            await primary.heartbeat()
            status = await standby.observe()
            if (
                status.replay_lag_bytes > before.replay_lag_bytes + 100_000
                and status.replay_lag_seconds > before.replay_lag_seconds + 1.0
            ):
                break
            assert time.monotonic() < deadline, f"lag never grew: before {before}, now {status}"
            await asyncio.sleep(0.1)
        assert status.received_lsn > status.replayed_lsn and status.wal_receiver_streaming
    finally:
        await admin.execute("SELECT pg_wal_replay_resume()")
    await primary.heartbeat()
    await observe_until(
        standby,
        lambda s: s.replay_lag_bytes < 64 * 1024 and s.replay_lag_seconds < 2,
        "the standby to catch up",
    )


def _unused_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


async def test_a_closed_port_is_down_at_once(probe_for, stack: Stack):
    host = stack.state().host
    port = _unused_port(host)
    status, took = await timed(probe_for((host, port), connect_timeout=1.0).observe())
    assert status.role == common_pb2.DATABASE_ROLE_DOWN
    assert "connection refused" in status.probe_error
    assert join_host_port(host, port) in status.probe_error
    assert took < 2.0


async def test_a_server_that_never_answers_is_down_after_the_connect_timeout(probe_for, stack):
    host = stack.state().host
    with socket.socket() as silent:  # the kernel accepts connections; nobody ever reads them
        silent.bind((host, 0))
        silent.listen()
        probe = probe_for(silent.getsockname(), connect_timeout=0.5)
        status, took = await timed(probe.observe())
    assert status.role == common_pb2.DATABASE_ROLE_DOWN and "timed out" in status.probe_error
    assert 0.4 < took < 1.5


async def test_a_wrong_password_is_down_naming_authentication(probe_for):
    status = await probe_for(PRIMARY, password="not-the-password").observe()
    assert status.role == common_pb2.DATABASE_ROLE_DOWN
    assert "authentication failed" in status.probe_error


class Relay:
    """A TCP relay to a server that a test can freeze (bytes stop flowing) or cut."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.connections = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._relay, self.upstream[0], 0)
        return self._server.sockets[0].getsockname()[:2]

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def close(self) -> None:
        self._server.close()
        self.thaw()
        self.cut()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        self._tasks.add(asyncio.current_task())
        self.connections += 1
        self._writers.append(client_w)
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        self._writers.append(server_w)
        await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()


@pytest.fixture
async def relay(stack: Stack):
    node = stack.postgres_node(stack.state(), PRIMARY)
    relay = Relay(node.host, node.port)
    yield relay
    await relay.close()


async def test_a_frozen_link_is_unknown_in_time_and_the_probe_reconnects(probe_for, relay):
    probe = probe_for(await relay.start(), connect_timeout=0.5, query_timeout=0.5)
    assert (await probe.observe()).role == common_pb2.DATABASE_ROLE_PRIMARY
    assert (await probe.observe()).role == common_pb2.DATABASE_ROLE_PRIMARY
    assert relay.connections == 1  # one connection, reused

    relay.freeze()
    status, took = await timed(probe.observe())
    assert status.role == common_pb2.DATABASE_ROLE_UNKNOWN and "timed out" in status.probe_error
    assert took < 0.5 + 0.5
    _, took = await timed(probe.heartbeat())  # the last observation was not a primary: no-op
    assert took < 0.1
    status, took = await timed(probe.observe())  # a new connection, which hangs as well
    assert status.role == common_pb2.DATABASE_ROLE_DOWN and "timed out" in status.probe_error
    assert took < 0.5 + 0.5

    relay.thaw()
    await observe_until(probe, lambda s: s.role == common_pb2.DATABASE_ROLE_PRIMARY, "a thaw")
    relay.cut()
    connections = relay.connections
    await observe_until(probe, lambda s: s.role == common_pb2.DATABASE_ROLE_PRIMARY, "a redial")
    assert relay.connections == connections + 1


async def test_a_read_only_default_is_no_fence_and_its_heartbeat_fails_quietly(probe_for, sql):
    """Only a demoted primary is fenced (see test_hard_fence.py): a read-only default is one a
    client sets back, so it fences nothing; the heartbeat it refuses is skipped quietly."""
    name = beat_name()
    probe = probe_for(PRIMARY, name=name)
    admin = await sql(PRIMARY)
    # So that this session can undo the setting whatever the server's.
    await admin.execute("SET default_transaction_read_only = off")
    await probe.observe()
    await probe.heartbeat()
    beats = "SELECT beat_at FROM latitude.heartbeat WHERE region = $1"
    beat = await admin.fetchval(beats, name)
    assert beat is not None, "heartbeat() wrote no row"
    try:
        await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        await admin.execute("SELECT pg_reload_conf()")
        await probe.close()  # a new session, with the new default
        status = await probe.observe()
        assert status.role == common_pb2.DATABASE_ROLE_PRIMARY and not status.fenced
        assert status.fence_cause == common_pb2.FENCE_CAUSE_UNSPECIFIED
        await probe.heartbeat()
        assert await admin.fetchval(beats, name) == beat
    finally:
        await admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await admin.execute("SELECT pg_reload_conf()")


async def test_a_stream_that_brings_nothing_is_not_streaming(stack: Stack, probe_for, sql):
    """A silently cut link leaves the WAL receiver 'streaming' until wal_receiver_timeout: the
    probe counts a stream only while it brings something (the primary's agent writes a
    heartbeat every interval). Frozen here by stopping the walsender that feeds the standby."""
    primary = await sql(PRIMARY)
    pid = await primary.fetchval(
        "SELECT pid FROM pg_stat_replication WHERE application_name = $1", STANDBYS[0]
    )
    probe = probe_for(STANDBYS[0])
    await observe_until(probe, lambda s: s.wal_receiver_streaming, "a live stream")
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = await observe_until(
            probe, lambda s: not s.wal_receiver_streaming, "the frozen stream to stop counting"
        )
        assert frozen.wal_receiver_silence_seconds > 4.0
    finally:
        os.kill(pid, signal.SIGCONT)
    back = await observe_until(probe, lambda s: s.wal_receiver_streaming, "the stream back")
    assert back.wal_receiver_silence_seconds < 4.0

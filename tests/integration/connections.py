"""Test clients of the stack's databases, and what they see when a database dies."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from coordinator import keys
from coordinator.etcd import Etcd
from latitude.admin_client import NoCoordinator, cluster_status
from latitude.stack.harness import suite_client_tls, suite_etcd_tls
from latitude.stack.postgres import SUPERUSER, connect
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

# What test clients present to the stacks: an operator's certificate from the run's CA when
# LATITUDE_TEST_TLS=1 (every test stack then runs with TLS), None in plaintext.
TLS = suite_client_tls()
# The same for the ``latitude`` command pointed at --coordinators (not a stack's --dir).
CLI_TLS = (
    []
    if TLS is None
    else ["--tls-ca", str(TLS.ca), "--tls-cert", str(TLS.cert), "--tls-key", str(TLS.key)]
)

# A connection that dies mid-query can surface as any of these (asyncpg's InternalClientError
# when the failure interrupts its state machine).
CONNECTION_TROUBLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


@asynccontextmanager
async def session(
    stack: Stack, region: str, app: str = "test"
) -> AsyncIterator[asyncpg.Connection]:
    """A fresh client session on a region's PostgreSQL, as an application would open one."""
    state = stack.state()
    node = stack.postgres_node(state, region)
    conn = await asyncpg.connect(
        host=node.host, port=node.port, user=SUPERUSER, password=state.superuser_password,
        database="postgres", timeout=3.0, server_settings={"application_name": app},
    )  # fmt: skip
    try:
        yield conn
    finally:
        await conn.close(timeout=3.0)


async def query(stack: Stack, region: str, sql: str, *args):
    async with session(stack, region) as conn:
        return await conn.fetchval(sql, *args, timeout=3.0)


async def eventually(look: Callable[[], Awaitable | object], timeout: float, what: str):
    """Poll ``look`` (a function or a coroutine function) until it returns something true (a
    server still starting may refuse meanwhile); on timeout fail with the last value or error
    seen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = look()
            if inspect.isawaitable(seen):
                seen = await seen
        except (OSError, asyncpg.PostgresError) as err:
            seen = err
        if seen and not isinstance(seen, Exception):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; saw {seen!r}")
        await asyncio.sleep(0.05)


async def streams_to(stack: Stack, primary: str, standby: str, timeout: float) -> None:
    """Wait until ``primary`` sees ``standby`` streaming from it."""
    await eventually(
        lambda: query(
            stack,
            primary,
            "SELECT count(*) FROM pg_stat_replication "
            "WHERE application_name = $1 AND state = 'streaming'",
            standby,
        ),
        timeout,
        f"{standby} to stream from {primary}",
    )


@dataclass(frozen=True, slots=True)
class Ack:
    id: int
    at: float  # wall clock, when the client had the answer
    region: str


class Writer:
    """An application writing numbered rows one at a time into whichever region is the write
    region (asked of the coordinators whenever its connection fails); it remembers every
    acknowledged id, with when and where it was acknowledged."""

    def __init__(self, stack: Stack, table: str, timeout: float = 1.0) -> None:
        self._stack = stack
        self._insert = f"INSERT INTO {table} VALUES ($1)"
        self._timeout = timeout
        self.acked: list[Ack] = []

    def acked_on(self, region: str) -> int:
        return sum(a.region == region for a in self.acked)

    @property
    def longest_gap(self) -> float:
        """The longest time between two acknowledgements."""
        times = [a.at for a in self.acked]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    async def run(self) -> None:
        state = self._stack.state()
        addresses = self._stack.coordinator_addresses(state)
        conn, region, next_id = None, "", 1
        try:
            while True:
                try:
                    if conn is None:
                        region = (await cluster_status(addresses, 1.0, tls=TLS)).write_region
                        node = self._stack.postgres_node(state, region)
                        conn = await connect(node, state.superuser_password, timeout=0.5)
                    await conn.execute(self._insert, next_id, timeout=self._timeout)
                    self.acked.append(Ack(next_id, time.time(), region))
                except (*CONNECTION_TROUBLE, NoCoordinator):
                    if conn is not None:
                        conn.terminate()
                    conn = None
                next_id += 1
                await asyncio.sleep(0.01)
        finally:
            if conn is not None:
                conn.terminate()


@asynccontextmanager
async def running(*work: Coroutine) -> AsyncIterator[None]:
    """Run ``work`` beside the block; cancelled after it. One that failed meanwhile fails
    the block."""
    tasks = [asyncio.create_task(w) for w in work]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# Under the coordinators' default prefix.
FAILOVER_RECORD = f"/latitude/{keys.FAILOVER}".encode()


async def failover_record(stack: Stack) -> admin_pb2.FailoverStatus | None:
    """The newest failover record, straight from etcd (it outlives the failover)."""
    etcd = Etcd([m.endpoint for m in stack.etcd_members(stack.state())], tls=suite_etcd_tls())
    await etcd.connect()
    try:
        kv = await etcd.get(FAILOVER_RECORD, timeout=1.0)
    finally:
        await etcd.close()
    return admin_pb2.FailoverStatus.FromString(kv.value) if kv is not None else None


def agent_hello(
    region: str, agent_id: str = "test-agent", address: str = "127.0.0.1:1"
) -> agent_pb2.AgentMessage:
    """A Hello for ``region``, as a test's own agent stream says it: one database endpoint."""
    return agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(
            region=region,
            agent_id=agent_id,
            location=common_pb2.Location(latitude=1.0, longitude=2.0),
            capacity=10,
            endpoints=[
                common_pb2.Endpoint(
                    name="pg", kind=common_pb2.ENDPOINT_KIND_POSTGRES, address=address
                )
            ],
        )
    )


async def failover_from(
    stack: Stack, region: str, timeout: float, since: float
) -> admin_pb2.FailoverStatus:
    """Wait for a failover away from ``region``, started after ``since`` (wall clock), to
    finish; its record."""

    async def finished():
        record = await failover_record(stack)
        if (
            record
            and record.from_region == region
            and record.started_at.ToNanoseconds() / 1e9 > since
            and record.HasField("finished_at")
        ):
            return record
        return None

    return await eventually(finished, timeout, f"a failover away from {region} to finish")


async def kill_region(stack: Stack, region: str) -> float:
    """kill -9 the region's agent and PostgreSQL; when (wall clock)."""
    await stack.status()  # an agent may have restarted its server: learn the postmaster
    killed_at = time.time()
    await stack.kill(f"agent-{region}")
    await stack.kill(f"postgres-{region}")
    return killed_at


async def missing_on(stack: Stack, region: str, table: str, writer: Writer) -> list[Ack]:
    """The writer's acknowledged rows that ``region`` does not have."""
    acked = list(writer.acked)  # before the query: later ones may commit after its snapshot
    async with session(stack, region) as conn:
        stored = {r["id"] for r in await conn.fetch(f"SELECT id FROM {table}")}
    return [a for a in acked if a.id not in stored]

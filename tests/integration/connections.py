"""Test clients of the stack's databases, and what they see when a database dies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg

from latitude.stack.postgres import SUPERUSER
from latitude.stack.stack import Stack

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


async def eventually(look: Callable[[], Awaitable], timeout: float, what: str):
    """Poll ``look`` until it returns something true (a server still starting may refuse
    meanwhile); on timeout fail with the last value or error seen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            seen = await look()
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

"""The actuator's one connection to the region's PostgreSQL, and how long each step may take on it.

Commands run as steps on a connection of the actuator's own (the probe's belongs to the probe
loop). A statement gets statement_timeout, and never more than is left before the command's
deadline; a wait (a setting taking effect, WAL being replayed, a promotion) gets all that is
left. After an error that leaves the connection's state unknown it is dropped, not reused: the
next step connects anew. The session is named for the agent, and its commits do not wait on a
synchronous standby that may be gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from agent.postgres_probe import DatabaseTarget
from latitude.errors import LatitudeError

POLL = 0.02  # seconds between looks while waiting for the server

TROUBLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
           asyncpg.InternalClientError)  # fmt: skip
# After these the connection's state is unknown: drop it rather than reuse it.
BROKEN = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
          asyncpg.PostgresConnectionError)  # fmt: skip

_CREATE_SLOT = """
SELECT pg_create_physical_replication_slot($1, true)
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)
"""


class ActuatorError(LatitudeError):
    """A command could not be carried out; the message says why."""


class CommandSession:
    def __init__(self, target: DatabaseTarget, *, region: str, statement_timeout: float) -> None:
        self._target = target
        self._region = region
        self.statement_timeout = statement_timeout
        self._conn: asyncpg.Connection | None = None

    async def sql(self, op: str, query: str, *args: Any, stop: float | None, wait=False) -> Any:
        """conn.<op>(query, *args) (fetchval, fetchrow or execute) within the step's budget."""
        conn = await self.connection(stop)
        return await getattr(conn, op)(query, *args, timeout=self.budget(stop, wait=wait))

    async def settle(
        self, query: str, *args: Any, done: Callable[[Any], bool], failure: Callable[[Any], str],
        stop: float | None, wait: bool = False,
    ) -> None:  # fmt: skip
        """Run ``query`` until done(its value), for the step's budget; then ActuatorError."""
        until = time.monotonic() + self.budget(stop, wait=wait)
        while True:
            seen = await self.sql("fetchval", query, *args, stop=stop)
            if done(seen):
                return
            if time.monotonic() + POLL >= until:
                raise ActuatorError(failure(seen))
            await asyncio.sleep(POLL)

    async def alter_system(self, name: str, value: str | None, stop: float | None) -> None:
        """ALTER SYSTEM SET name = value; RESET when ``value`` is None. No reload."""
        if value is None:
            await self.sql("execute", f"ALTER SYSTEM RESET {name}", stop=stop)
            return
        # ALTER SYSTEM takes no bind parameters: the server quotes the value.
        statement = await self.sql("fetchval", "SELECT format('ALTER SYSTEM SET %I = %L', "
                                   "$1::text, $2::text)", name, value, stop=stop)  # fmt: skip
        await self.sql("execute", statement, stop=stop)

    async def create_slot(self, name: str, stop: float | None) -> None:
        """A physical replication slot reserving WAL from now on, unless it exists already."""
        await self.sql("execute", _CREATE_SLOT, name, stop=stop)

    async def promote(self, stop: float | None) -> None:
        """Promote the server and wait, for all that is left of the step's budget, until it is
        out of recovery. Not pg_promote(wait => true): it looks only every 100 ms, and a
        promotion is on a switchover's critical path."""
        if not await self.sql("fetchval", "SELECT pg_promote(wait => false)", stop=stop):
            raise ActuatorError("the promotion could not be requested (pg_promote)")
        await self.settle(
            "SELECT NOT pg_is_in_recovery()", done=bool, stop=stop, wait=True,
            failure=lambda _: "the promotion did not finish by the deadline (it may yet)",
        )  # fmt: skip

    def budget(self, stop: float | None, *, wait: bool = False) -> float:
        """Seconds for one step: up to the deadline, and at most statement_timeout unless it is
        a wait. Without a deadline every step gets statement_timeout."""
        if stop is None:
            return self.statement_timeout
        left = stop - time.monotonic()
        if left <= 0:
            raise ActuatorError("the command's deadline passed before it was done")
        return left if wait else min(left, self.statement_timeout)

    async def connection(self, stop: float | None) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self.discard()
        budget, target = self.budget(stop), self._target
        async with asyncio.timeout(budget):
            self._conn = await asyncpg.connect(
                host=target.host, port=target.port, user=target.user, password=target.password,
                database=target.database, timeout=budget,
                server_settings={
                    "application_name": f"latitude-agent {self._region} actuator",
                    # A fence must not wait on a synchronous standby that may be gone.
                    "synchronous_commit": "local",
                },
            )  # fmt: skip
        return self._conn

    def discard(self) -> None:
        """Drop the connection at once (its state is unknown); the next step connects anew."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # Shielded so that a cancelled caller still leaves a closed (or terminated) socket.
            await asyncio.shield(conn.close(timeout=self.statement_timeout))
        except asyncio.CancelledError:
            conn.terminate()
            raise
        except TROUBLE:
            conn.terminate()

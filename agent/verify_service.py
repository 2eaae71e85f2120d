"""VerifyService: the agent's half of the data-level consistency check (see agent.verify_sql
for what is hashed and how).

The agent runs the check's SQL on connections of its own (at most ``MAX_CONNECTIONS``, so that
a check cannot crowd its region's database; never the probe's connection, so that the reports
go on). When the database runs on the agent's host, those connections' backends are reniced
(``NICE``): the check then takes CPU the database's clients leave idle, not theirs.

Every call is one read-only REPEATABLE READ transaction under a statement timeout: its
statements see one snapshot, and the position it answers (``lsn``) is read in the statement
that takes the snapshot, so that on a primary every commit the snapshot sees ends at or before
it. A call that must see ``min_lsn`` first waits, outside the transaction, for a standby to
replay it, bounded by ``wait_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import grpc

from agent.postgres_probe import DatabaseTarget
from agent.verify_sql import (
    KEY_COLUMNS,
    POSITION,
    SESSION_SETTINGS,
    TABLE_EXISTS,
    TABLES,
    TIMELINE,
    KeyColumn,
    TableSql,
)
from latitude.lsn import format_lsn
from latitude.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("latitude.agent.verify")

MAX_CONNECTIONS = 2
MAX_RANGES = 256
STATEMENT_TIMEOUT = "30s"
DEFAULT_WAIT = 10.0
DEFAULT_BOUNDS_LIMIT = 10_000
DEFAULT_ROWS_LIMIT = 1000
# A caller's limit and wait are bounded: rows are fetched into memory, and a wait holds one of
# the MAX_CONNECTIONS (the coordinator asks for at most 1,000,000 bounds and waits an hour).
MAX_LIMIT = 1_000_000
MAX_WAIT = 3600.0
NICE = 10  # the check's backends' CPU priority, when the database runs on this host
_POLL = 0.02  # seconds between looks at the replay position while waiting for min_lsn
_TROUBLE = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


def lower_priority(pid: int) -> str:
    """Renice a backend of the check on this host to ``NICE``, so that the database's own
    clients come first for the CPU; "" when done, else why not. Only a PostgreSQL process is
    touched (a pid read from another host's server could name anything here)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        if not command.startswith(b"postgres"):
            return f"process {pid} is not a PostgreSQL backend on this host"
        os.setpriority(os.PRIO_PROCESS, pid, max(NICE, os.getpriority(os.PRIO_PROCESS, pid)))
    except OSError as err:
        return f"cannot renice backend {pid}: {err}"
    return ""


class VerifyServicer(agent_pb2_grpc.VerifyServiceServicer):
    """``renice``: the database runs on this host (the agent has its data directory); the
    check's backends then run at a lower CPU priority than the database's clients."""

    def __init__(
        self, target: DatabaseTarget, region: str, *, renice: bool = False,
        connect_timeout: float = 3.0,
    ) -> None:  # fmt: skip
        self._target = target
        self._region = region
        self._renice = renice
        self._renice_problem = ""
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def close(self) -> None:
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 2.0)
            except (TimeoutError, *_TROUBLE):
                self._pool.terminate()
            self._pool = None

    async def _connections(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                t = self._target
                self._pool = await asyncpg.create_pool(
                    host=t.host, port=t.port, user=t.user, password=t.password,
                    database=t.database, min_size=0, max_size=MAX_CONNECTIONS,
                    timeout=self._connect_timeout, server_settings=SESSION_SETTINGS,
                    max_inactive_connection_lifetime=30.0, init=self._connected,
                )  # fmt: skip
            return self._pool

    async def _connected(self, conn: asyncpg.Connection) -> None:
        if not self._renice:
            return
        problem = lower_priority(await conn.fetchval("SELECT pg_backend_pid()"))
        if problem and problem != self._renice_problem:
            log.warning("the check's backends keep their CPU priority: %s", problem)
        self._renice_problem = problem

    @asynccontextmanager
    async def _snapshot(self, context) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a read-only REPEATABLE READ transaction; trouble with the
        database aborts the call with UNAVAILABLE naming it."""
        try:
            pool = await self._connections()
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    await conn.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
                    yield conn
        except asyncpg.TransactionRollbackError as err:
            # On a standby: a conflict with recovery (replaying a lock or a vacuum the
            # snapshot still needed) cancelled the statement. Replay goes first; try again.
            await context.abort(grpc.StatusCode.ABORTED, f"{self._region}: {err}")
        except asyncpg.QueryCanceledError as err:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{self._region}: a statement ran past {STATEMENT_TIMEOUT}: {err}",
            )
        except _TROUBLE as err:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"{self._region}: database trouble: {err}"
            )
        except asyncpg.DataError as err:
            # The request's values do not fit the table (a key value that is not a number,
            # past the column's type, or holding a NUL), or its names hold such bytes.
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{self._region}: the request does not fit the table: {err}",
            )
        except asyncpg.PostgresError as err:
            await context.abort(grpc.StatusCode.INTERNAL, f"{self._region}: {err}")

    async def _replayed(self, context, min_lsn: int, wait: float) -> None:
        """Return once the database has replayed ``min_lsn`` (a primary: at once)."""
        if not min_lsn:
            return
        wait = min(wait, MAX_WAIT) if wait > 0 else DEFAULT_WAIT  # NaN: the default
        deadline = time.monotonic() + wait
        try:
            pool = await self._connections()
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                while True:
                    row = await conn.fetchrow(POSITION, timeout=self._connect_timeout)
                    if not row["standby"] or int(row["lsn"]) >= min_lsn:
                        return
                    if time.monotonic() >= deadline:
                        break
                    await asyncio.sleep(_POLL)
        except (*_TROUBLE, asyncpg.PostgresError) as err:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"{self._region}: database trouble: {err}"
            )
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"{self._region} has replayed {format_lsn(int(row['lsn']))}, not yet "
            f"{format_lsn(min_lsn)}, after {wait:.1f} s",
        )

    async def _table(self, conn: asyncpg.Connection, context, schema: str, name: str) -> TableSql:
        if not schema or not name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "schema, table: required")
        if not await conn.fetchval(TABLE_EXISTS, schema, name):
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"{self._region} has no table {schema}.{name}"
            )
        relation = TableSql(schema, name, ()).relation
        key = await conn.fetch(KEY_COLUMNS, relation)
        return TableSql(schema, name, tuple(KeyColumn(r["name"], r["type"]) for r in key))

    async def _bounds_args(self, context, table: TableSql, key_range: agent_pb2.KeyRange):
        """The range's SQL parameters, checked against the table's key."""
        args = []
        for field in ("after", "upto"):
            if key_range.HasField(field):
                values = list(getattr(key_range, field).values)
                if len(values) != len(table.key):
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"range.{field}: {len(values)} key values for {table.schema}."
                        f"{table.name}, whose primary key has {len(table.key)} columns",
                    )
                args += values
        return key_range.HasField("after"), key_range.HasField("upto"), args

    async def Tables(self, request, context):
        await self._replayed(context, request.min_lsn, request.wait_seconds)
        async with self._snapshot(context) as conn:
            position = await conn.fetchrow(POSITION)
            rows = await conn.fetch(TABLES)
            timeline = await conn.fetchval(TIMELINE)
        return agent_pb2.VerifyTablesReply(
            region=self._region, standby=position["standby"], lsn=int(position["lsn"]),
            timeline_id=timeline,
            tables=[
                agent_pb2.VerifyTable(
                    schema=r["schema"], name=r["name"], key_columns=r["key_columns"],
                    estimated_rows=r["estimated_rows"],
                )
                for r in rows
            ],
        )  # fmt: skip

    async def Checksum(self, request, context):
        if len(request.ranges) > MAX_RANGES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"ranges: at most {MAX_RANGES} per call, got {len(request.ranges)}",
            )
        await self._replayed(context, request.min_lsn, request.wait_seconds)
        reply = agent_pb2.ChecksumReply()
        async with self._snapshot(context) as conn:
            position = await conn.fetchrow(POSITION)
            reply.lsn, reply.standby = int(position["lsn"]), position["standby"]
            table = await self._table(conn, context, request.schema, request.table)
            for key_range in request.ranges:
                after, upto, args = await self._bounds_args(context, table, key_range)
                row = await conn.fetchrow(table.checksum(after, upto), *args)
                reply.ranges.add(rows=row["rows"], digest=row["digest"])
        return reply

    async def Bounds(self, request, context):
        if request.every <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "every: must be > 0")
        await _bounded_limit(request.limit, context)
        async with self._snapshot(context) as conn:
            table = await self._table(conn, context, request.schema, request.table)
            if not table.key:
                return agent_pb2.BoundsReply()
            after, upto, args = await self._bounds_args(context, table, request.range)
            limit = request.limit or DEFAULT_BOUNDS_LIMIT
            rows = await conn.fetch(table.bounds(after, upto), *args, request.every, limit)
        return agent_pb2.BoundsReply(keys=[agent_pb2.VerifyKey(values=r["k"]) for r in rows])

    async def Rows(self, request, context):
        await _bounded_limit(request.limit, context)
        await self._replayed(context, request.min_lsn, request.wait_seconds)
        limit = request.limit or DEFAULT_ROWS_LIMIT
        reply = agent_pb2.RowsReply()
        async with self._snapshot(context) as conn:
            position = await conn.fetchrow(POSITION)
            reply.lsn, reply.standby = int(position["lsn"]), position["standby"]
            table = await self._table(conn, context, request.schema, request.table)
            after, upto, args = await self._bounds_args(context, table, request.range)
            rows = await conn.fetch(table.rows(after, upto), *args, limit + 1)
        reply.truncated = len(rows) > limit
        for r in rows[:limit]:
            reply.rows.add(key=agent_pb2.VerifyKey(values=r["k"]), digest=r["h"])
        return reply


async def _bounded_limit(limit: int, context) -> None:
    if limit > MAX_LIMIT:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"limit: at most {MAX_LIMIT}, got {limit}"
        )

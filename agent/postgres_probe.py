"""What the agent sees of its region's PostgreSQL, and the heartbeat that makes time lag exact.

One connection, kept open and reused, reopened lazily when it breaks. Every wait is bounded: a
call never takes longer than connect_timeout + query_timeout, and trouble with the database
becomes a DatabaseStatus (DOWN or UNKNOWN, with the reason), never an exception. One caller at
a time: the agent's probe loop owns the probe.

Time lag: pg_last_xact_replay_timestamp() stops moving when the primary is idle, so it cannot
tell an idle standby from a stuck one. Instead the primary's agent writes (region, now()) into
``latitude.heartbeat`` every interval, and a standby's lag is its now() minus the newest beat it
has replayed: exact to one interval (plus clock skew between the hosts), idle or busy. The
newest beat itself goes out as heartbeat_at, so the coordinator can subtract a standby's from
the primary's without trusting either clock.

A demoted primary (agent.demotion: in recovery, ``latitude.fenced`` set) is reported as what it
was, a fenced primary, with the cause the setting names; its standby fields stay empty.

Reading pg_stat_wal_receiver's sender and pg_stat_replication's rows needs a superuser or
pg_read_all_stats; without it those fields stay empty. A primary's timeline history (which
timelines it went through, and where each forked) is read from its history file once per
timeline, with pg_read_file (a superuser, or EXECUTE on pg_read_file(text)); without it, it
stays empty. latitude.stack.postgres lists every grant the agent's role needs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from agent import metrics
from latitude.netaddr import join_host_port
from latitude.v1 import common_pb2

log = logging.getLogger("latitude.agent.postgres")

# latitude.fenced (see agent.demotion) as reported.
FENCE_CAUSES = {
    "self": common_pb2.FENCE_CAUSE_SELF,
    "command": common_pb2.FENCE_CAUSE_COMMAND,
    "startup": common_pb2.FENCE_CAUSE_STARTUP,
    "keeper": common_pb2.FENCE_CAUSE_KEEPER,
}

_SYNC_STATES = {
    "async": common_pb2.SYNC_STATE_ASYNC,
    "potential": common_pb2.SYNC_STATE_POTENTIAL,
    "sync": common_pb2.SYNC_STATE_SYNC,
    "quorum": common_pb2.SYNC_STATE_QUORUM,
}

# Everything in one round trip. pg_is_in_recovery() is read once (OFFSET 0 keeps the planner
# from inlining it) so a promotion mid-statement cannot make pg_current_wal_lsn() fail. LSNs
# are numeric byte positions (pg_lsn - '0/0'). {newest_beat} is NULL until the heartbeat table
# is known to be readable here: naming a missing table fails the whole statement at parse time.
_OBSERVE = """
SELECT s.standby, nullif(current_setting('latitude.fenced', true), '') AS fenced,
       CASE WHEN NOT s.standby THEN pg_current_wal_lsn() - '0/0' END AS current_lsn,
       CASE WHEN NOT s.standby
            THEN substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END AS wal_timeline,
       pg_last_wal_receive_lsn() - '0/0' AS received_lsn,
       pg_last_wal_replay_lsn() - '0/0' AS replayed_lsn,
       r.status AS receiver_status, r.received_tli,
       extract(epoch FROM clock_timestamp() - r.last_msg_receipt_time) AS receiver_silence,
       r.latest_end_lsn - '0/0' AS latest_end_lsn, r.sender_host, r.sender_port,
       (SELECT setting FROM pg_settings WHERE name = 'primary_conninfo') AS primary_conninfo,
       (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_timeline,
       (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
       current_setting('server_version') AS server_version,
       coalesce(has_table_privilege(to_regclass('latitude.heartbeat'), 'SELECT'), false)
           AS beats_visible,
       {newest_beat} AS newest_beat, pg_last_xact_replay_timestamp() AS replayed_at, now(),
       CASE WHEN NOT s.standby THEN (
           SELECT json_agg(json_build_object(
               'region', application_name, 'address', host(client_addr), 'state', state,
               'sync', sync_state, 'sent', sent_lsn - '0/0', 'flush', flush_lsn - '0/0',
               'replay', replay_lsn - '0/0', 'lag', extract(epoch FROM replay_lag)
           ) ORDER BY application_name) FROM pg_stat_replication) END AS replicas
FROM (SELECT pg_is_in_recovery() AS standby OFFSET 0) s
LEFT JOIN pg_stat_wal_receiver r ON true
"""
_OBSERVE_WITHOUT_BEATS = _OBSERVE.format(newest_beat="NULL::timestamptz")
_OBSERVE_WITH_BEATS = _OBSERVE.format(newest_beat="(SELECT max(beat_at) FROM latitude.heartbeat)")

# vacuum_truncate off: truncation takes an ACCESS EXCLUSIVE lock that standbys replay, and it
# would stall the standbys' probes, which read this table. Only what is missing is created:
# CREATE ... IF NOT EXISTS checks the privilege to create before it looks, and the agent's role
# owns the schema the stack made for it (or was granted only INSERT, UPDATE and SELECT on a
# table an administrator made), not the database (see latitude.stack.postgres).
_HEARTBEAT_SETUP = """
DO $$
BEGIN
    IF to_regnamespace('latitude') IS NULL THEN
        CREATE SCHEMA latitude;
    END IF;
    IF to_regclass('latitude.heartbeat') IS NULL THEN
        CREATE TABLE latitude.heartbeat (
            region text PRIMARY KEY,
            beat_at timestamptz NOT NULL
        ) WITH (vacuum_truncate = off);
    END IF;
END
$$
"""
_HEARTBEAT = """
INSERT INTO latitude.heartbeat (region, beat_at) VALUES ($1, now())
ON CONFLICT (region) DO UPDATE SET beat_at = excluded.beat_at
"""
_TIMELINE_HISTORY = "SELECT pg_read_file('pg_wal/' || $1 || '.history')"

# A WAL receiver that has heard nothing from its upstream for this long does not count as
# streaming (seconds; heartbeats come every report interval, 0.5 s by default, but an idle
# primary whose agent is gone sends nothing: at least fail_after, so that silence alone is not
# read as a lost stream before the leader could act on it, and at most fence_after).
STREAM_SILENCE_LIMIT = 4.0

# Trouble with the database or the way to it, as opposed to a bug here.
_TROUBLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
            asyncpg.InternalClientError)  # fmt: skip
# After these the connection's state is unknown: drop it rather than reuse it.
_BROKEN = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
           asyncpg.PostgresConnectionError)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """How to reach the region's PostgreSQL."""

    host: str
    port: int
    user: str
    password: str | None
    database: str = "postgres"


class PostgresProbe:
    def __init__(
        self,
        target: DatabaseTarget,
        *,
        region: str,
        connect_timeout: float = 1.0,
        query_timeout: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self._address = join_host_port(target.host, target.port)
        self._region = region
        self._connect_timeout = connect_timeout
        self._query_timeout = query_timeout
        self._clock = clock
        self._conn: asyncpg.Connection | None = None
        self._beats_visible = False
        self._heartbeat_ready = False  # schema and table exist (checked once per connection)
        self._heartbeat_problem = ""
        self._last: common_pb2.DatabaseStatus | None = None
        # A timeline's history never changes: (timeline, its history), read once.
        self._history: tuple[int, list[common_pb2.TimelineSwitch]] = (1, [])

    @property
    def last(self) -> common_pb2.DatabaseStatus | None:
        """The latest observation (None before the first)."""
        return self._last

    @metrics.timed_probe
    async def observe(self) -> common_pb2.DatabaseStatus:
        status = common_pb2.DatabaseStatus()
        status.observed_at.FromMicroseconds(round(self._clock() * 1e6))
        try:
            conn = await self._connection()
        except _TROUBLE as err:
            status.role = common_pb2.DATABASE_ROLE_DOWN
            status.probe_error = f"cannot connect to {self._address}: {_why(err)}"
            self._last = status
            return status
        history: list[common_pb2.TimelineSwitch] = []
        try:
            async with asyncio.timeout(self._query_timeout):
                row = await self._observe_row(conn)
                if not row["standby"]:
                    history = await self._timeline_history(conn, int(row["wal_timeline"], 16))
                elif row["fenced"] is not None:
                    history = await self._timeline_history(conn, row["checkpoint_timeline"])
        except _TROUBLE as err:
            if isinstance(err, _BROKEN):
                self._discard()
            status.role = common_pb2.DATABASE_ROLE_UNKNOWN
            status.probe_error = f"query on {self._address} failed: {_why(err)}"
            self._last = status
            return status
        _fill(status, row)
        status.timeline_history.extend(history)
        self._last = status
        return status

    async def _timeline_history(
        self, conn: asyncpg.Connection, timeline: int
    ) -> list[common_pb2.TimelineSwitch]:
        if timeline != self._history[0]:
            try:
                text = await conn.fetchval(_TIMELINE_HISTORY, f"{timeline:08X}")
            except asyncpg.PostgresError as err:
                # Unreadable (privileges, a removed file): the consistency check says so.
                log.warning("timeline %d history on %s unreadable: %s",
                            timeline, self._address, _why(err))  # fmt: skip
                text = ""
            self._history = (timeline, parse_timeline_history(text or ""))
        return self._history[1]

    async def heartbeat(self) -> None:
        """Stamp now() for this region into latitude.heartbeat, on a writable primary only.

        Acts on what the latest observe() saw (a standby, a fenced primary or no observation
        yet: nothing to do), so it costs one round trip and never writes errors into a standby's
        log. A fence that lands between the two is read-only SQL state 25006, skipped quietly.
        """
        last = self._last
        if last is None or last.role != common_pb2.DATABASE_ROLE_PRIMARY or last.fenced:
            return
        try:
            conn = await self._connection()
            async with asyncio.timeout(self._query_timeout):
                if not self._heartbeat_ready:
                    await conn.execute(_HEARTBEAT_SETUP)
                    self._heartbeat_ready = True
                await conn.execute(_HEARTBEAT, self._region)
        except asyncpg.ReadOnlySQLTransactionError:
            return
        except _TROUBLE as err:
            if isinstance(err, _BROKEN):
                self._discard()
            self._heartbeat_ready = False
            problem = _why(err)
            if problem != self._heartbeat_problem:  # once per distinct problem, not per beat
                log.warning("heartbeat on %s failed: %s", self._address, problem)
            self._heartbeat_problem = problem
            return
        self._heartbeat_problem = ""

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # Shielded so that a cancelled caller still leaves a closed (or terminated) socket.
            await asyncio.shield(conn.close(timeout=self._query_timeout))
        except asyncio.CancelledError:
            conn.terminate()
            raise
        except _TROUBLE:
            conn.terminate()

    async def _observe_row(self, conn: asyncpg.Connection) -> asyncpg.Record:
        if not self._beats_visible:
            row = await conn.fetchrow(_OBSERVE_WITHOUT_BEATS)
        else:
            try:
                row = await conn.fetchrow(_OBSERVE_WITH_BEATS)
            except asyncpg.UndefinedTableError:  # dropped since we last looked
                row = await conn.fetchrow(_OBSERVE_WITHOUT_BEATS)
        if row["beats_visible"] and not self._beats_visible:
            row = await conn.fetchrow(_OBSERVE_WITH_BEATS)
        self._beats_visible = row["beats_visible"]
        return row

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._discard()
        target = self.target
        async with asyncio.timeout(self._connect_timeout):
            self._conn = await asyncpg.connect(
                host=target.host,
                port=target.port,
                user=target.user,
                password=target.password,
                database=target.database,
                timeout=self._connect_timeout,
                server_settings={
                    "application_name": f"latitude-agent {self._region}",
                    # A heartbeat must not wait for a synchronous standby that may be gone.
                    "synchronous_commit": "local",
                },
            )
        self._heartbeat_ready = False
        return self._conn

    def _discard(self) -> None:
        # No graceful close here: it would wait on the very connection that just failed us,
        # past the caller's time budget.
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()


def _fill(status: common_pb2.DatabaseStatus, row: asyncpg.Record) -> None:
    # bigint on the server, uint64 in pg_control: mask so that a "negative" id survives.
    status.system_identifier = int(row["system_identifier"] or 0) & 0xFFFF_FFFF_FFFF_FFFF
    status.server_version = row["server_version"].split(" ", 1)[0]
    if row["newest_beat"] is not None:
        status.heartbeat_at.FromDatetime(row["newest_beat"])
    if row["standby"] and row["fenced"] is not None:
        # A demoted primary (agent.demotion): in recovery with no upstream, its WAL ends
        # where its replay does; pg_current_wal_lsn() and pg_walfile_name() fail in recovery.
        status.role = common_pb2.DATABASE_ROLE_PRIMARY
        status.fenced = True
        status.fence_cause = FENCE_CAUSES.get(row["fenced"], common_pb2.FENCE_CAUSE_STARTUP)
        status.current_lsn = int(row["replayed_lsn"] or 0)
        status.timeline_id = int(row["checkpoint_timeline"] or 0)
        return
    if not row["standby"]:
        status.role = common_pb2.DATABASE_ROLE_PRIMARY
        status.current_lsn = int(row["current_lsn"])
        # pg_control_checkpoint() keeps the old timeline until the first checkpoint after a
        # promotion; the name of the WAL file being written is never stale.
        status.timeline_id = int(row["wal_timeline"], 16)
        for r in json.loads(row["replicas"] or "[]"):
            status.replicas.append(
                common_pb2.ReplicaStatus(
                    region=r["region"] or "",
                    client_address=r["address"] or "",
                    state=r["state"] or "",
                    sync_state=_SYNC_STATES.get(r["sync"], common_pb2.SYNC_STATE_UNSPECIFIED),
                    sent_lsn=int(r["sent"] or 0),
                    flush_lsn=int(r["flush"] or 0),
                    replay_lsn=int(r["replay"] or 0),
                    replay_lag_seconds=max(0.0, r["lag"] or 0.0),
                )
            )
        return
    status.role = common_pb2.DATABASE_ROLE_STANDBY
    received = int(row["received_lsn"] or 0)
    replayed = int(row["replayed_lsn"] or 0)
    status.received_lsn = received
    status.replayed_lsn = replayed
    status.timeline_id = int(row["received_tli"] or row["checkpoint_timeline"] or 0)
    silence = row["receiver_silence"]
    if silence is not None:
        status.wal_receiver_silence_seconds = max(0.0, float(silence))
    # "streaming" lasts until wal_receiver_timeout after a silent cut: a stream counts only
    # while it brings something (the primary's heartbeat, at least every interval).
    status.wal_receiver_streaming = row["receiver_status"] == "streaming" and (
        silence is None or float(silence) <= STREAM_SILENCE_LIMIT
    )
    head = received
    if status.wal_receiver_streaming and row["latest_end_lsn"] is not None:
        head = max(head, int(row["latest_end_lsn"]))
    status.replay_lag_bytes = max(0, head - replayed)
    if row["newest_beat"] is not None:
        status.replay_lag_seconds = max(0.0, (row["now"] - row["newest_beat"]).total_seconds())
    elif received > replayed and row["replayed_at"] is not None:
        status.replay_lag_seconds = max(0.0, (row["now"] - row["replayed_at"]).total_seconds())
    if row["sender_host"]:
        status.upstream_address = join_host_port(row["sender_host"], row["sender_port"])
    else:  # the receiver is between attempts: say where it will reconnect
        status.upstream_address = _conninfo_address(row["primary_conninfo"])


def parse_timeline_history(text: str) -> list[common_pb2.TimelineSwitch]:
    """A timeline history file's lines ("1\t0/3000060\treason"), oldest first."""
    switches = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or not fields[0].isdigit() or "/" not in fields[1]:
            continue  # a blank line or a comment
        high, _, low = fields[1].partition("/")
        switches.append(common_pb2.TimelineSwitch(
            timeline_id=int(fields[0]), end_lsn=(int(high, 16) << 32) | int(low, 16)
        ))  # fmt: skip
    return switches


def _why(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, asyncpg.InvalidAuthorizationSpecificationError):
        return f"authentication failed: {err}"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err).strip() or type(err).__name__


# key=value pairs of a libpq conninfo; values may be single-quoted with backslash escapes.
_CONNINFO_PAIR = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def _conninfo_address(conninfo: str | None) -> str:
    fields = {}
    for key, value in _CONNINFO_PAIR.findall(conninfo or ""):
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields[key] = value
    host = fields.get("host") or fields.get("hostaddr")
    port = fields.get("port", "5432")
    if not host or "," in host or not port.isdigit():  # a list of candidates has no one answer
        return ""
    return join_host_port(host, int(port))

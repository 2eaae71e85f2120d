"""Carries out the leader's commands on the region's PostgreSQL; self-fencing calls fence() too.

One connection of its own (the probe's belongs to the probe loop), one command at a time on it.
Every step is bounded: a statement by statement_timeout and by the command's deadline, a wait
(a setting taking effect, WAL being replayed, a promotion) by the deadline alone. Trouble with the
database becomes CommandResult(ok=False, error=...), never an exception out of execute().

Commands are idempotent twice over: a repeated command_id gets the remembered result back
without acting again, and each command only drives the server towards a state, so repeating it
under a new id is harmless too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import asyncpg

from agent.postgres_probe import DatabaseTarget, PostgresProbe
from agent.rejoin import REWIND_SLOT, LocalServer, RejoinError, describe_error
from latitude.errors import LatitudeError
from latitude.netaddr import join_host_port
from latitude.v1 import agent_pb2, common_pb2

_UNSPECIFIED = common_pb2.FENCE_CAUSE_UNSPECIFIED
_K = agent_pb2.CommandKind
_REMEMBERED = 256  # command results kept for repeated command_ids
_POLL = 0.02  # seconds between looks while waiting for the server
_REJOIN_BUDGET = 120.0  # seconds for a REJOIN sent without a deadline
_REJOIN_GRACE = 10.0  # at most this long for a standby already following to stream again

log = logging.getLogger("latitude.agent.actuator")

_TROUBLE = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
            asyncpg.InternalClientError)  # fmt: skip
# After these the connection's state is unknown: drop it rather than reuse it.
_BROKEN = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError,
           asyncpg.PostgresConnectionError)  # fmt: skip

# The agent's own sessions (the probe, this one) are spared: the probe must go on reporting the
# fence. Signalling in the select list of a materialized list keeps pg_terminate_backend from
# running before the filters (the planner may reorder WHERE clauses).
_TERMINATE = """
WITH victims AS MATERIALIZED (
    SELECT pid FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND coalesce(application_name, '') NOT LIKE 'latitude-agent%'
)
SELECT coalesce(array_agg(pid) FILTER (WHERE pg_terminate_backend(pid)), '{}') FROM victims
"""
_SURVIVORS = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])"
_CREATE_SLOT = """
SELECT pg_create_physical_replication_slot($1, true)
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)
"""
# What REJOIN looks at: is the server already a standby of the new primary, and streaming its
# timeline? A standby that went past the point where that timeline forked streams the old
# timeline to its end, is cut off, and starts again, forever: "streaming" for moments at a time.
_STANDBY_VIEW = """
SELECT pg_is_in_recovery() AS standby, current_setting('primary_conninfo') AS conninfo,
       current_setting('primary_slot_name') AS slot,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver,
       (SELECT received_tli FROM pg_stat_wal_receiver) AS receiver_timeline
"""
# key = value in libpq's conninfo syntax: a value is single-quoted or bare, \ escapes anywhere.
_CONNINFO_PAIR = re.compile(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|(?!')(?:[^\s\\]|\\.)+)")


class ActuatorError(LatitudeError):
    """A command could not be carried out; the message says why."""


class Actuator:
    def __init__(
        self, target: DatabaseTarget, probe: PostgresProbe, *, region: str,
        clock: Callable[[], float] = time.time, statement_timeout: float = 5.0,
        probe_lock: asyncio.Lock | None = None, server: LocalServer | None = None,
    ) -> None:  # fmt: skip
        self._target = target
        self._address = join_host_port(target.host, target.port)
        self._probe = probe
        # The probe takes one caller at a time: pass the lock the probe loop holds around it.
        self._probe_lock = probe_lock or asyncio.Lock()
        self._region = region
        self._clock = clock
        self._statement_timeout = statement_timeout
        # The database as files and processes, for REJOIN; None when the agent runs elsewhere.
        self._server = server
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # one command at a time on the one connection
        self._results: OrderedDict[str, agent_pb2.CommandResult] = OrderedDict()
        self._upstream_region = ""  # from the last FOLLOW
        self._rewound = False  # the REJOIN being answered discarded diverged WAL
        self.highest_epoch = 0
        self.fence_cause: int = _UNSPECIFIED

    def accept_epoch(self, epoch: int) -> bool:
        """Record ``epoch``; False if a higher one was accepted already (a deposed leader's)."""
        if epoch < self.highest_epoch:
            return False
        self.highest_epoch = epoch
        return True

    async def execute(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        async with self._lock:
            remembered = self._results.get(command.command_id)
            if remembered is None:
                remembered = await self._answer(command)
                if command.command_id:
                    self._results[command.command_id] = remembered
                    while len(self._results) > _REMEMBERED:
                        self._results.popitem(last=False)
            result = agent_pb2.CommandResult()
            result.CopyFrom(remembered)
            return result

    async def fence(self, cause: int) -> None:
        """Make the database refuse writes; ActuatorError when that could not be confirmed."""
        async with self._lock:
            await self._guarded("FENCE", self._fence(cause, None))

    @property
    def reported_fence_cause(self) -> int:
        """Why a fenced database is fenced, as reported: a fence this agent did not make (it
        found the database so when it started) is FENCE_CAUSE_STARTUP."""
        return self.fence_cause or common_pb2.FENCE_CAUSE_STARTUP

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # Shielded so that a cancelled caller still leaves a closed (or terminated) socket.
            await asyncio.shield(conn.close(timeout=self._statement_timeout))
        except asyncio.CancelledError:
            conn.terminate()
            raise
        except _TROUBLE:
            conn.terminate()

    async def _answer(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        result = agent_pb2.CommandResult(command_id=command.command_id)
        self._rewound = False
        try:
            await self._carry_out(command)
            result.ok = True
        except ActuatorError as err:
            result.error = str(err)
        result.rewound = self._rewound
        result.observed.CopyFrom(await self._observe())
        result.agent_epoch = self.highest_epoch
        return result

    async def _carry_out(self, command: agent_pb2.Command) -> None:
        if not self.accept_epoch(command.epoch):
            raise ActuatorError(
                f"refused: the command's epoch {command.epoch} is lower than epoch "
                f"{self.highest_epoch} already accepted (it comes from a deposed leader)"
            )
        stop = None  # time.monotonic() at the deadline: waits must survive wall-clock steps
        if command.HasField("deadline"):
            left = command.deadline.ToNanoseconds() / 1e9 - self._clock()
            if left <= 0:
                raise ActuatorError(f"refused: received {-left:.3f} s after its deadline")
            stop = time.monotonic() + left
        match command.kind:
            case _K.COMMAND_KIND_FENCE:
                step = self._fence(common_pb2.FENCE_CAUSE_COMMAND, stop)
            case _K.COMMAND_KIND_UNFENCE:
                step = self._unfence(stop)
            case _K.COMMAND_KIND_PROMOTE:
                step = self._promote(command.promote, stop)
            case _K.COMMAND_KIND_FOLLOW:
                step = self._follow(command.follow, stop)
            case _K.COMMAND_KIND_REPORT_NOW:
                return  # the fresh observation is the answer
            case _K.COMMAND_KIND_CHECKPOINT:
                step = self._sql("execute", "CHECKPOINT", stop=stop, wait=True)
            case _K.COMMAND_KIND_REJOIN:
                step = self._rejoin(command.rejoin, stop)
            case _K.COMMAND_KIND_SET_SYNCHRONOUS:
                step = self._set_synchronous(command.synchronous.synchronous_standby_names, stop)
            case _:
                raise ActuatorError(f"unknown command kind {command.kind}")
        await self._guarded(_K.Name(command.kind).removeprefix("COMMAND_KIND_"), step)

    async def _guarded(self, what: str, step) -> None:
        try:
            await step
        except _TROUBLE as err:
            if isinstance(err, _BROKEN):
                self._discard()
            raise ActuatorError(f"{what} on {self._address} failed: {describe_error(err)}") from err

    # -- the commands ----------------------------------------------------------------------

    async def _fence(self, cause: int, stop: float | None) -> None:
        # The first cause is kept until the fence is lifted: it is why the database is fenced.
        self.fence_cause = self.fence_cause or cause
        if await self._sql("fetchval", "SELECT pg_is_in_recovery()", stop=stop):
            return  # a standby refuses writes already
        # Confirmed before the sweep: a session forked before the postmaster reloaded would
        # start writable and could escape a sweep made too early.
        await self._set_read_only(True, stop)
        # default_transaction_read_only binds new transactions only: open ones must die.
        victims = await self._sql("fetchval", _TERMINATE, stop=stop)
        if victims:
            await self._settle(
                _SURVIVORS, victims, done=lambda alive: alive == 0, stop=stop,
                failure=lambda alive: f"{alive} terminated session(s) still running",
            )  # fmt: skip

    async def _unfence(self, stop: float | None) -> None:
        await self._set_read_only(False, stop)
        self.fence_cause = _UNSPECIFIED

    async def _promote(self, args: agent_pb2.PromoteArgs, stop: float | None) -> None:
        standby, read_only = await self._sql("fetchrow", "SELECT pg_is_in_recovery(), "
                                             "current_setting('default_transaction_read_only')::bool",
                                             stop=stop)  # fmt: skip
        if not standby and read_only:
            raise ActuatorError("this is a fenced primary (the old one?): PROMOTE never unfences")
        if standby:
            want = args.min_replayed_lsn
            if want:
                await self._settle(
                    "SELECT coalesce(pg_last_wal_replay_lsn() - '0/0', 0)",
                    done=lambda replayed: replayed >= want, stop=stop, wait=True,
                    failure=lambda replayed: f"replayed WAL reached {_lsn(replayed)}, not "
                    f"{_lsn(want)}, by the deadline: not promoted",
                )  # fmt: skip
            if read_only:  # a former primary's configuration may carry its fence
                await self._set_read_only(False, stop)
            if args.HasField("synchronous_standby_names"):
                await self._synchronous_before_promotion(args.synchronous_standby_names, stop)
            seconds = max(1, math.floor(self._budget(stop, wait=True)))
            conn = await self._connection(stop)
            promote = "SELECT pg_promote(wait => true, wait_seconds => $1)"
            if not await conn.fetchval(promote, seconds, timeout=seconds + self._statement_timeout):
                raise ActuatorError(f"promotion did not finish in {seconds} s (it may yet)")
        for slot in args.create_slots:
            try:
                await self._sql("execute", _CREATE_SLOT, slot, stop=stop)
            except asyncpg.DuplicateObjectError:
                pass  # created between our look and our request: kept, as asked
        self.fence_cause = _UNSPECIFIED
        self._upstream_region = ""

    async def _follow(self, follow: agent_pb2.FollowArgs, stop: float | None) -> None:
        if not follow.primary_host or not 0 < follow.primary_port < 65536:
            raise ActuatorError("FOLLOW needs follow.primary_host and follow.primary_port")
        if not await self._sql("fetchval", "SELECT pg_is_in_recovery()", stop=stop):
            raise ActuatorError("a primary cannot follow; use REJOIN")
        now = await self._sql("fetchval", "SELECT current_setting('primary_conninfo')", stop=stop)
        conninfo = follow_conninfo(now, follow.primary_host, follow.primary_port)
        await self._alter_system("primary_conninfo", conninfo, stop)
        await self._alter_system("primary_slot_name", follow.slot_name or None, stop)
        # PostgreSQL 13+ restarts the WAL receiver when a reload changes primary_conninfo.
        await self._sql("execute", "SELECT pg_reload_conf()", stop=stop)
        await self._settle(
            "SELECT current_setting('primary_conninfo') = $1 "
            "AND current_setting('primary_slot_name') = $2",
            conninfo, follow.slot_name, done=bool, stop=stop,
            failure=lambda _: "the new primary_conninfo did not take effect on reload",
        )  # fmt: skip
        self.fence_cause = _UNSPECIFIED
        self._upstream_region = follow.primary_region

    async def _rejoin(self, args: agent_pb2.RejoinArgs, stop: float | None) -> None:
        """A former primary (or a standby gone astray) becomes a streaming standby of
        args.follow: stopped, rewound or copied afresh when its WAL diverged, started as a
        standby. It is never writable meanwhile: a running primary is fenced, then stopped,
        and the server is only ever started with standby.signal (see agent.rejoin)."""
        server, follow = self._server, args.follow
        if server is None:
            raise ActuatorError("REJOIN needs pg_data: this agent has no data directory to "
                                "stop, rewind and start (set pg_data)")  # fmt: skip
        if not follow.primary_host or not 0 < follow.primary_port < 65536:
            raise ActuatorError("REJOIN needs rejoin.follow.primary_host and primary_port")
        if (follow.primary_host, follow.primary_port) == (self._target.host, self._target.port):
            raise ActuatorError("REJOIN was asked to follow this very server")
        until = stop if stop is not None else time.monotonic() + _REJOIN_BUDGET
        seen = await self._standby_view(until)
        try:
            timeline = await server.check_source(follow.primary_host, follow.primary_port, until)
        except RejoinError as err:
            raise ActuatorError(f"REJOIN: {err}") from err
        if seen is not None and _follows(seen, follow):
            # Already done (a repeated REJOIN), or about to be: a standby that has just started
            # or lost its connection for a moment streams again soon.
            now = time.monotonic()
            grace = now + min(_REJOIN_GRACE, (until - now) / 3)
            if await self._streaming(follow, timeline, grace):
                self._rejoined(follow)
                return
        try:
            if seen is not None:
                await self._before_the_stop(primary=not seen["standby"], stop=until)
            await self.close()  # our session must not hold up the shutdown
            done = await server.rejoin(
                follow.primary_host, follow.primary_port, follow.slot_name,
                allow_rewind=args.allow_rewind, until=until,
            )  # fmt: skip
            self._rewound = server.rewound
        except RejoinError as err:
            if server.running():  # not stopped after all: the slot must not hold its WAL
                await self._drop_rewind_slot()
            raise ActuatorError(f"REJOIN: {err}") from err
        if not await self._streaming(follow, timeline, until):
            raise ActuatorError(
                f"REJOIN: {done}, but it does not stream from "
                f"{join_host_port(follow.primary_host, follow.primary_port)} by the deadline"
            )
        log.info("REJOIN: %s; streaming from %s", done, follow.primary_region or "the primary")
        self._rejoined(follow)

    async def _before_the_stop(self, *, primary: bool, stop: float) -> None:
        """Fence a primary; keep the WAL pg_rewind may read from the shutdown checkpoint.
        Best effort: the stop that follows ends writes all the same, and a rewind that lacks
        WAL falls back to a fresh copy."""
        try:
            if primary:
                await self._fence(common_pb2.FENCE_CAUSE_COMMAND, stop)
            await self._sql("execute", _CREATE_SLOT, REWIND_SLOT, stop=stop)
        except (ActuatorError, *_TROUBLE) as err:
            if isinstance(err, _BROKEN):
                self._discard()
            log.warning("REJOIN: before stopping the server: %s", describe_error(err))

    async def _drop_rewind_slot(self) -> None:
        try:  # its own budget: the command's deadline may have passed
            await self._sql("execute", "SELECT pg_drop_replication_slot(slot_name) FROM "
                            "pg_replication_slots WHERE slot_name = $1 AND NOT active",
                            REWIND_SLOT, stop=None)  # fmt: skip
        except _TROUBLE as err:
            if isinstance(err, _BROKEN):
                self._discard()
            log.warning(
                "REJOIN: the slot %s could not be dropped: %s", REWIND_SLOT, describe_error(err)
            )

    def _rejoined(self, follow: agent_pb2.FollowArgs) -> None:
        self.fence_cause = _UNSPECIFIED
        self._upstream_region = follow.primary_region

    async def _standby_view(self, stop: float) -> asyncpg.Record | None:
        """What _STANDBY_VIEW says; None when the server cannot be asked (down, starting)."""
        try:
            return await self._sql("fetchrow", _STANDBY_VIEW, stop=stop)
        except _TROUBLE as err:
            if isinstance(err, _BROKEN):
                self._discard()
            return None

    async def _streaming(
        self, follow: agent_pb2.FollowArgs, timeline: int | None, until: float
    ) -> bool:
        """Wait until the server is a standby streaming ``timeline`` (if known) from
        ``follow``; False at ``until``."""
        while True:
            if time.monotonic() < until:
                seen = await self._standby_view(until)
                if seen is not None and not seen["standby"]:
                    raise ActuatorError("REJOIN: the server runs as a primary")  # never expected
                if (
                    seen is not None
                    and _follows(seen, follow)
                    and seen["receiver"] == "streaming"
                    and timeline in (None, seen["receiver_timeline"])
                ):
                    return True
            if time.monotonic() + _POLL >= until:
                return False
            await asyncio.sleep(_POLL * 5)

    # -- steps -----------------------------------------------------------------------------

    async def _set_synchronous(self, names: str, stop: float | None) -> None:
        if await self._sql("fetchval", "SELECT pg_is_in_recovery()", stop=stop):
            raise ActuatorError("synchronous_standby_names only matters on a primary")
        await self._apply_synchronous(names, stop)

    async def _synchronous_before_promotion(self, names: str, stop: float | None) -> None:
        """Set on the standby, the setting holds from the promotion on. A commit consults
        not its own session's value but a flag in shared memory that the checkpointer sets
        when it takes up a reload; a CHECKPOINT (a restartpoint, on a standby) returns only
        after a checkpointer cycle that began after the reload and took it up first. Without
        that, the first commits of the new primary could be acknowledged without a standby."""
        now = await self._sql("fetchval", "SHOW synchronous_standby_names", stop=stop)
        if now != names:
            await self._apply_synchronous(names, stop)
        if names:
            await self._sql("execute", "CHECKPOINT", stop=stop, wait=True)

    async def _apply_synchronous(self, names: str, stop: float | None) -> None:
        await self._alter_system("synchronous_standby_names", names or None, stop)
        await self._sql("execute", "SELECT pg_reload_conf()", stop=stop)
        await self._settle(
            "SHOW synchronous_standby_names", done=lambda value: value == names, stop=stop,
            failure=lambda value: f"synchronous_standby_names is {value!r} after a reload",
        )  # fmt: skip

    async def _set_read_only(self, on: bool, stop: float | None) -> None:
        await self._alter_system("default_transaction_read_only", "on" if on else None, stop)
        await self._sql("execute", "SELECT pg_reload_conf()", stop=stop)
        # The reload is asynchronous. The postmaster re-reads the files before it passes SIGHUP
        # on to the backends, so once this session sees the value, every new session does too.
        want = "on" if on else "off"
        await self._settle(
            "SHOW default_transaction_read_only", done=lambda value: value == want, stop=stop,
            failure=lambda value: f"default_transaction_read_only is still {value} after a "
            "reload (is it set in postgresql.conf?)",
        )  # fmt: skip

    async def _alter_system(self, name: str, value: str | None, stop: float | None) -> None:
        if value is None:
            await self._sql("execute", f"ALTER SYSTEM RESET {name}", stop=stop)
            return
        # ALTER SYSTEM takes no bind parameters: the server quotes the value.
        statement = await self._sql("fetchval", "SELECT format('ALTER SYSTEM SET %I = %L', "
                                    "$1::text, $2::text)", name, value, stop=stop)  # fmt: skip
        await self._sql("execute", statement, stop=stop)

    async def _settle(
        self, query: str, *args: Any, done: Callable[[Any], bool], failure: Callable[[Any], str],
        stop: float | None, wait: bool = False,
    ) -> None:  # fmt: skip
        """Run ``query`` until done(its value), for the step's budget; then ActuatorError."""
        until = time.monotonic() + self._budget(stop, wait=wait)
        while True:
            seen = await self._sql("fetchval", query, *args, stop=stop)
            if done(seen):
                return
            if time.monotonic() + _POLL >= until:
                raise ActuatorError(failure(seen))
            await asyncio.sleep(_POLL)

    def _budget(self, stop: float | None, *, wait: bool = False) -> float:
        """Seconds for one step: up to the deadline, and at most statement_timeout unless it is
        a wait. Without a deadline every step gets statement_timeout."""
        if stop is None:
            return self._statement_timeout
        left = stop - time.monotonic()
        if left <= 0:
            raise ActuatorError("the command's deadline passed before it was done")
        return left if wait else min(left, self._statement_timeout)

    async def _sql(self, op: str, query: str, *args: Any, stop: float | None, wait=False) -> Any:
        """conn.<op>(query, *args) (fetchval, fetchrow or execute) within the step's budget."""
        conn = await self._connection(stop)
        return await getattr(conn, op)(query, *args, timeout=self._budget(stop, wait=wait))

    async def _connection(self, stop: float | None) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._discard()
        budget, target = self._budget(stop), self._target
        async with asyncio.timeout(budget):
            self._conn = await asyncpg.connect(
                host=target.host, port=target.port, user=target.user, password=target.password,
                database=target.database, timeout=budget,
                server_settings={
                    # The probe's prefix, which a fence spares.
                    "application_name": f"latitude-agent {self._region} actuator",
                    # A fence must not wait on a synchronous standby that may be gone.
                    "synchronous_commit": "local",
                },
            )  # fmt: skip
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _observe(self) -> common_pb2.DatabaseStatus:
        async with self._probe_lock:
            status = await self._probe.observe()
        if status.role == common_pb2.DATABASE_ROLE_STANDBY:
            status.upstream_region = status.upstream_region or self._upstream_region
            # A fenced standby is reported fenced until PROMOTE, FOLLOW or UNFENCE.
            status.fenced = status.fenced or self.fence_cause != _UNSPECIFIED
        status.fence_cause = self.reported_fence_cause if status.fenced else _UNSPECIFIED
        return status


def parse_conninfo(text: str) -> list[tuple[str, str]]:
    """libpq's ``key = value ...``: values bare or single-quoted, with backslash escapes."""
    if text.lstrip().startswith(("postgresql://", "postgres://")):
        raise ActuatorError("primary_conninfo is a URI; only key=value conninfo can be rewritten")
    pairs, at, text = [], 0, text.rstrip()
    while at < len(text):
        pair = _CONNINFO_PAIR.match(text, at)
        if pair is None:  # not quoting the text: it may hold a password
            raise ActuatorError(f"primary_conninfo is malformed at character {at + 1}")
        key, value = pair.groups()
        value = value[1:-1] if value.startswith("'") else value
        pairs.append((key, re.sub(r"\\(.)", r"\1", value)))
        at = pair.end()
    return pairs


def follow_conninfo(current: str, host: str, port: int) -> str:
    """``current`` with the new host and port, everything else (user, passfile,
    application_name, ...) kept. hostaddr goes too: libpq would connect to it, not to host."""
    kept = [(k, v) for k, v in parse_conninfo(current) if k not in ("host", "hostaddr", "port")]
    return " ".join(f"{k}={_quote(v)}" for k, v in [("host", host), ("port", str(port)), *kept])


def _follows(seen: asyncpg.Record, follow: agent_pb2.FollowArgs) -> bool:
    """A standby configured to stream from ``follow``'s server, through its slot."""
    if not seen["standby"]:
        return False
    try:
        conninfo = dict(parse_conninfo(seen["conninfo"] or ""))
    except ActuatorError:
        return False
    return (
        conninfo.get("host") == follow.primary_host
        and conninfo.get("port") == str(follow.primary_port)
        and (seen["slot"] or "") == follow.slot_name
    )


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _lsn(position: int) -> str:
    position = int(position)
    return f"{position >> 32:X}/{position & 0xFFFF_FFFF:X}"

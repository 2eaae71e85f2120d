"""REJOIN as the actuator carries it out: when the server must be taken apart, and when it is done.

agent.rejoin does the work on files and processes; this is the half that talks to the database
through the actuator's session. A REJOIN that is done already (a repeated command, or a standby
that lost its primary for a moment) changes nothing. Otherwise nothing is stopped until the new
primary answers and holds the same database system; a slot keeps the WAL pg_rewind may need
(made first: the fence's shutdown checkpoint may recycle it) and a running primary is fenced
(demoted; one that cannot be asked, with no free connection or hung, is fenced if its files
say it may be a primary); LocalServer.rejoin stops, rewinds or copies, and starts the server;
and the command succeeds only once the server streams the new primary's timeline. A server
found still running after a failure must not keep that slot: it would hold WAL forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from agent.command_session import BROKEN, POLL, TROUBLE, ActuatorError, CommandSession
from agent.conninfo import ConninfoError, parse_conninfo
from agent.postgres_probe import DatabaseTarget
from agent.rejoin import REWIND_SLOT, LocalServer, RejoinError
from latitude.errors import describe_error
from latitude.netaddr import join_host_port
from latitude.v1 import agent_pb2

_REJOIN_BUDGET = 120.0  # seconds for a REJOIN sent without a deadline
_REJOIN_GRACE = 10.0  # at most this long for a standby already following to stream again

# The actuator's log: these are its steps.
log = logging.getLogger("latitude.agent.actuator")

# What REJOIN looks at: is the server already a standby of the new primary, and streaming its
# timeline? A standby that went past the point where that timeline forked streams the old
# timeline to its end, is cut off, and starts again, forever: "streaming" for moments at a time.
_STANDBY_VIEW = """
SELECT pg_is_in_recovery() AS standby, current_setting('primary_conninfo') AS conninfo,
       current_setting('primary_slot_name') AS slot,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver,
       (SELECT received_tli FROM pg_stat_wal_receiver) AS receiver_timeline
"""


class Rejoin:
    """One REJOIN command. ``fence`` fences (demotes) a running primary by command, within a
    deadline; ``writable`` tells from files whether a server that cannot be asked may be one."""

    def __init__(
        self, db: CommandSession, server: LocalServer | None, target: DatabaseTarget, *,
        fence: Callable[[float], Awaitable[None]], writable: Callable[[], bool],
    ) -> None:  # fmt: skip
        self._db = db
        self._server = server
        self._target = target
        self._fence = fence
        self._writable = writable
        # The server discarded diverged WAL (rewound, or copied afresh), whatever came after.
        self.rewound = False

    async def carry_out(self, args: agent_pb2.RejoinArgs, stop: float | None) -> None:
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
                return
        try:
            primary = not seen["standby"] if seen is not None else self._writable()
            await self._before_the_stop(primary=primary, slot=seen is not None, stop=until)
            await self._db.close()  # our session must not hold up the shutdown
            done = await server.rejoin(
                follow.primary_host, follow.primary_port, follow.slot_name,
                allow_rewind=args.allow_rewind, until=until,
            )  # fmt: skip
            self.rewound = server.rewound
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

    async def _before_the_stop(self, *, primary: bool, slot: bool, stop: float) -> None:
        """Keep the WAL pg_rewind may read, from before the fence's shutdown checkpoint (it
        may recycle it) on; then fence (demote) a primary. Best effort: the stop that follows
        ends writes all the same, and a rewind that lacks WAL falls back to a fresh copy."""
        if slot:
            try:
                await self._db.create_slot(REWIND_SLOT, stop)
            except TROUBLE as err:
                if isinstance(err, BROKEN):
                    self._db.discard()
                log.warning("REJOIN: the slot %s was not made: %s", REWIND_SLOT,
                            describe_error(err))  # fmt: skip
        if primary:
            try:
                await self._fence(stop)
            except (ActuatorError, *TROUBLE) as err:
                if isinstance(err, BROKEN):
                    self._db.discard()
                log.warning("REJOIN: fencing before the stop: %s", describe_error(err))

    async def _drop_rewind_slot(self) -> None:
        try:  # its own budget: the command's deadline may have passed
            await self._db.sql("execute", "SELECT pg_drop_replication_slot(slot_name) FROM "
                               "pg_replication_slots WHERE slot_name = $1 AND NOT active",
                               REWIND_SLOT, stop=None)  # fmt: skip
        except TROUBLE as err:
            if isinstance(err, BROKEN):
                self._db.discard()
            log.warning(
                "REJOIN: the slot %s could not be dropped: %s", REWIND_SLOT, describe_error(err)
            )

    async def _standby_view(self, stop: float) -> asyncpg.Record | None:
        """What _STANDBY_VIEW says; None when the server cannot be asked (down, starting)."""
        try:
            return await self._db.sql("fetchrow", _STANDBY_VIEW, stop=stop)
        except TROUBLE as err:
            if isinstance(err, BROKEN):
                self._db.discard()
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
            if time.monotonic() + POLL >= until:
                return False
            await asyncio.sleep(POLL * 5)


def _follows(seen: asyncpg.Record, follow: agent_pb2.FollowArgs) -> bool:
    """A standby configured to stream from ``follow``'s server, through its slot."""
    if not seen["standby"]:
        return False
    try:
        conninfo = dict(parse_conninfo(seen["conninfo"] or ""))
    except ConninfoError:
        return False
    return (
        conninfo.get("host") == follow.primary_host
        and conninfo.get("port") == str(follow.primary_port)
        and (seen["slot"] or "") == follow.slot_name
    )

"""FENCE and UNFENCE as the actuator carries them out: a fenced primary is demoted.

A session default cannot fence: any client sets it back (``BEGIN READ WRITE``, ``SET``, a role
setting, a startup option). So FENCE demotes the primary, on files and signals alone
(agent.demotion), which needs no database connection: a server with every connection slot
taken, or hung, is fenced all the same. The fence is marked in the data directory first, the
server stopped (a fast shutdown, immediate past a grace period), and started again in recovery
with no upstream: it serves reads and the agent's probe, and reports as a fenced primary.

After a clean stop the shutdown checkpoint is the fence's position: every commit the primary
acknowledged ends at or before it, and nothing is written after it. pg_controldata reads it
from the stopped server, so FENCE can answer before the server is up again (the restart then
holds up the next command, not the switchover waiting for this answer). After an immediate
stop the position is not known exactly: 0.

UNFENCE removes the mark and promotes the server: it comes out of recovery on a new timeline,
which standbys follow by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from agent.command_session import ActuatorError, CommandSession
from agent.demotion import (
    clear_fence,
    could_be_writable,
    fence_cause,
    in_recovery_when_started,
    mark_fenced,
    postmaster_pid,
    stop_postmaster,
)
from agent.rejoin import LocalServer, RejoinError
from latitude.errors import describe_error
from latitude.v1 import common_pb2

log = logging.getLogger("latitude.agent.actuator")

# The fence's cause as the data directory records it (agent.demotion.CAUSES).
CAUSE_NAMES = {
    common_pb2.FENCE_CAUSE_SELF: "self",
    common_pb2.FENCE_CAUSE_COMMAND: "command",
    common_pb2.FENCE_CAUSE_STARTUP: "startup",
    common_pb2.FENCE_CAUSE_KEEPER: "keeper",
}
CAUSES = {name: cause for cause, name in CAUSE_NAMES.items()}

_GRACE = 2.0  # seconds for a fast shutdown before an immediate one
# Kept before the command's deadline for pg_controldata and the answer: an answer after the
# deadline is one the leader no longer waits for.
_ANSWER_MARGIN = 0.3
_RESTART_BUDGET = 60.0  # seconds to start the demoted server again in recovery
_CLEAN_STATES = ("shut down", "shut down in recovery")

# What UNFENCE, PROMOTE and FOLLOW look at: is the server a demoted primary (see demoted())?
DEMOTION_VIEW = """
SELECT pg_is_in_recovery() AS standby,
       nullif(current_setting('latitude.fenced', true), '') AS fenced,
       current_setting('primary_conninfo') = '' AS no_upstream,
       current_setting('default_transaction_read_only')::bool AS read_only
"""


@dataclass(frozen=True, slots=True)
class Demotion:
    """What FENCE did to the server."""

    stopped: str  # "clean", "immediate", "not running" (by stop_postmaster), or "" (untouched)
    fence_lsn: int = 0  # see CommandResult.fence_lsn
    control: dict[str, str] | None = None  # pg_controldata after the stop
    restart: bool = False  # it was running: it must be started again, in recovery


class HardFence:
    """FENCE's and UNFENCE's work on one region's server."""

    def __init__(self, db: CommandSession, server: LocalServer | None) -> None:
        self._db = db
        self._server = server

    def stopped_fenced(self) -> bool:
        """A demoted primary that no postmaster runs: safe to start (it starts in recovery)."""
        server = self._server
        return (
            server is not None
            and postmaster_pid(server.data) is None
            and fence_cause(server.data) is not None
            and in_recovery_when_started(server.data)
        )

    def marked(self) -> str | None:
        """The cause recorded in the data directory (None: not fenced, or no pg_data)."""
        return fence_cause(self._server.data) if self._server is not None else None

    def demoted(self, seen) -> bool:
        """DEMOTION_VIEW's row is a demoted primary's: in recovery with the fence's setting
        loaded, or marked in its files (the setting is loaded at the next start or reload) and
        following nobody. A standby marked while it follows a primary is still a standby."""
        marked = self.marked() is not None
        return seen["standby"] and (seen["fenced"] is not None or (marked and seen["no_upstream"]))

    async def demote(self, cause: str, stop: float | None) -> Demotion:
        """Make the server unwritable for good: marked, stopped. Not started again (restart)."""
        server = self._server
        if server is None:
            raise ActuatorError("FENCE: a hard fence needs pg_data: this agent has no data "
                                "directory to demote the server in (set pg_data)")  # fmt: skip
        data = server.data
        running = postmaster_pid(data) is not None
        if running and not could_be_writable(data):
            return Demotion("")  # a standby, or a primary demoted already
        marked = fence_cause(data)
        if not running and marked is None and in_recovery_when_started(data):
            return Demotion("")  # a stopped standby: it starts as one
        # The first cause stays until the fence is lifted: it is why the server is fenced.
        await asyncio.to_thread(mark_fenced, data, marked or cause)
        if not running:
            control = await self._control(stop)
            clean = control is not None and control.get("Database cluster state") == "shut down"
            lsn = _position(control["Latest checkpoint location"]) if clean else 0
            return Demotion("not running", lsn, control)
        # Our session must not hold up the shutdown; a graceful close could wait on a hung one.
        self._db.discard()
        give_up = None if stop is None else stop - _ANSWER_MARGIN
        stopped = await asyncio.to_thread(stop_postmaster, data, grace=_GRACE, until=give_up)
        control = await self._control(stop) if stopped == "clean" else None
        lsn = 0
        if control is not None and control.get("Database cluster state") in _CLEAN_STATES:
            lsn = _position(control["Latest checkpoint location"])
        log.warning("FENCE: demoted %s (%s stop, fenced at %s)", data, stopped, _lsn_text(lsn))
        return Demotion(stopped, lsn, control, restart=True)

    async def restart(self) -> None:
        """Start the demoted server again, in recovery: it serves reads and the probe."""
        assert self._server is not None
        try:
            await self._server.start(time.monotonic() + _RESTART_BUDGET)
        except RejoinError as err:
            raise ActuatorError(f"FENCE: the demoted server did not start again: {err}") from err

    async def lift(self, stop: float | None) -> None:
        """UNFENCE: a demoted primary is promoted (on a new timeline); one marked but still
        running as a primary loses its mark; an older agent's read-only default goes. A
        demoted primary left stopped (its keeper's fence, or an immediate stop) is started in
        recovery first."""
        if self.stopped_fenced():
            await self.restart()
        seen = await self._db.sql("fetchrow", DEMOTION_VIEW, stop=stop)
        marked = self.marked() is not None
        if self.demoted(seen):
            if self._server is None:
                raise ActuatorError("UNFENCE of a demoted primary needs pg_data: this agent "
                                    "has no data directory to lift the fence in")  # fmt: skip
            await asyncio.to_thread(clear_fence, self._server.data)
            if seen["read_only"]:
                await self._db.alter_system("default_transaction_read_only", None, stop)
            await self._db.sql("execute", "SELECT pg_reload_conf()", stop=stop)
            await self._db.promote(stop)
            log.warning("UNFENCE: promoted the demoted %s", self._server.data)
            return
        if marked:
            assert self._server is not None
            await asyncio.to_thread(clear_fence, self._server.data)
            if not seen["standby"]:
                # Marked, never stopped (an interrupted FENCE): it must not start in recovery.
                (self._server.data / "standby.signal").unlink(missing_ok=True)
        if seen["read_only"]:
            await self.reset_read_only(stop)

    async def reset_read_only(self, stop: float | None) -> None:
        """Remove an older agent's fence, default_transaction_read_only, and see it gone."""
        await self._db.alter_system("default_transaction_read_only", None, stop)
        await self._db.sql("execute", "SELECT pg_reload_conf()", stop=stop)
        # The reload is asynchronous. The postmaster re-reads the files before it passes SIGHUP
        # on to the backends, so once this session sees the value, every new session does too.
        await self._db.settle(
            "SHOW default_transaction_read_only", done=lambda value: value == "off",
            stop=stop, failure=lambda value: f"default_transaction_read_only is still "
            f"{value} after a reload (is it set in postgresql.conf?)",
        )  # fmt: skip

    async def _control(self, stop: float | None) -> dict[str, str] | None:
        """pg_controldata, or None (logged): the fence holds without its position."""
        assert self._server is not None
        until = max(stop or 0.0, time.monotonic() + 5.0)
        try:
            return await self._server.control(until)
        except RejoinError as err:
            log.warning("FENCE: pg_controldata failed: %s", describe_error(err))
            return None


def fenced_status(
    demotion: Demotion, cause: int, last: common_pb2.DatabaseStatus | None, now: float
) -> common_pb2.DatabaseStatus:
    """The fenced primary as FENCE answers it while it is down for its restart: its position
    and identity from pg_controldata, what does not change (version, newest heartbeat) from
    the probe's last look."""
    status = common_pb2.DatabaseStatus(
        role=common_pb2.DATABASE_ROLE_PRIMARY, fenced=True, fence_cause=cause,
        current_lsn=demotion.fence_lsn,
    )  # fmt: skip
    status.observed_at.FromMicroseconds(round(now * 1e6))
    control = demotion.control or {}
    if control.get("Latest checkpoint's TimeLineID", "").isdigit():
        status.timeline_id = int(control["Latest checkpoint's TimeLineID"])
    if control.get("Database system identifier", "").isdigit():
        status.system_identifier = int(control["Database system identifier"])
    if last is not None:
        status.server_version = last.server_version
        if last.HasField("heartbeat_at"):
            status.heartbeat_at.CopyFrom(last.heartbeat_at)
        status.timeline_history.extend(last.timeline_history)
    return status


def _position(text: str) -> int:
    """'0/3000060' -> its byte position in the WAL."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def _lsn_text(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFF_FFFF:X}" if position else "an unknown position"

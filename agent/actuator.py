"""Carries out the leader's commands on the region's PostgreSQL; self-fencing calls fence() too.

One connection of its own (the probe's belongs to the probe loop), one command at a time on it.
Every step is bounded: a statement by statement_timeout and by the command's deadline, a wait
(a setting taking effect, WAL being replayed, a promotion) by the deadline alone. Trouble with the
database becomes CommandResult(ok=False, error=...), never an exception out of execute().

Commands are idempotent twice over: a repeated command_id gets the remembered result back
without acting again, and each command only drives the server towards a state, so repeating it
under a new id is harmless too.

The connection and the budget of each step are agent.command_session's; FENCE and UNFENCE,
which demote and promote the server, are agent.fence_command's; REJOIN, which stops and
restarts the server, is agent.rejoin_command's (and agent.rejoin's, on files and processes).

A FENCE answers as soon as the server is stopped, and the actuator starts it again in recovery
before it takes the next command: the answer is on a switchover's critical path, the restart
is not.

FOLLOW and REJOIN stream only from another configured region's database (``upstreams``, the
agent's peers; agent.trust): the standby hands that server the replication password, and its
WAL becomes the region's data. Any other upstream is refused before anything is touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import asyncpg

from agent.command_session import BROKEN, TROUBLE, ActuatorError, CommandSession
from agent.conninfo import ConninfoError, follow_conninfo
from agent.demotion import could_be_writable
from agent.fence_command import CAUSE_NAMES, CAUSES, DEMOTION_VIEW, HardFence, fenced_status
from agent.peers import Peer
from agent.postgres_probe import DatabaseTarget, PostgresProbe
from agent.rejoin import LocalServer
from agent.rejoin_command import Rejoin
from agent.trust import upstream_problem
from latitude.errors import describe_error
from latitude.netaddr import join_host_port
from latitude.v1 import agent_pb2, common_pb2

_UNSPECIFIED = common_pb2.FENCE_CAUSE_UNSPECIFIED
_K = agent_pb2.CommandKind
_REMEMBERED = 256  # command results kept for repeated command_ids

log = logging.getLogger("latitude.agent.actuator")


class Actuator:
    def __init__(
        self, target: DatabaseTarget, probe: PostgresProbe, *, region: str,
        clock: Callable[[], float] = time.time, statement_timeout: float = 5.0,
        probe_lock: asyncio.Lock | None = None, server: LocalServer | None = None,
        upstreams: Sequence[Peer] | None = None,
    ) -> None:  # fmt: skip
        self._target = target
        # The databases FOLLOW and REJOIN may stream from; None: not checked (tests, tools).
        self._upstreams = upstreams
        self._address = join_host_port(target.host, target.port)
        self._probe = probe
        # The probe takes one caller at a time: pass the lock the probe loop holds around it.
        self._probe_lock = probe_lock or asyncio.Lock()
        self._clock = clock
        self._db = CommandSession(target, region=region, statement_timeout=statement_timeout)
        # The database as files and processes, for REJOIN; None when the agent runs elsewhere.
        self._server = server
        self._fencing = HardFence(self._db, server)
        self._lock = asyncio.Lock()  # one command at a time on the one connection
        # Work a command left to do after its answer, holding the lock meanwhile: the restart
        # of a demoted server. Its task, until done.
        self._after = None
        self._finishing: asyncio.Task | None = None
        self._fence_lsn = 0  # the answer's CommandResult.fence_lsn
        self._fenced_already = False  # FENCE found the server demoted (or a standby)
        self._answer_with: common_pb2.DatabaseStatus | None = None  # instead of observing
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
        await self._lock.acquire()
        try:
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
        finally:
            self._release()

    def _release(self) -> None:
        """Release the lock, or hand it to the work left after the answer, which releases it."""
        after, self._after = self._after, None
        if after is None:
            self._lock.release()
            return

        async def finish() -> None:
            try:
                await after
            except ActuatorError as err:
                log.error("%s", err)
            finally:
                self._lock.release()

        self._finishing = asyncio.create_task(finish(), name="actuator: after the answer")

    async def fence(self, cause: int) -> None:
        """Demote the database (and start it again in recovery); ActuatorError when that
        could not be done."""
        async with self._lock:
            await self._guarded("FENCE", self._fence(cause, None))

    def stopped_fenced(self) -> bool:
        """A demoted primary that no postmaster runs (safe to start: it starts in recovery)."""
        return not self._lock.locked() and self._fencing.stopped_fenced()

    async def revive(self) -> None:
        """Start a stopped demoted primary in recovery, so it can be seen and unfenced."""
        async with self._lock:
            if self._fencing.stopped_fenced():
                log.warning("the fenced primary is stopped: starting it in recovery")
                try:
                    await self._fencing.restart()
                except ActuatorError as err:
                    log.error("%s", err)

    @property
    def reported_fence_cause(self) -> int:
        """Why a fenced database is fenced, as reported: the cause the data directory records
        (whoever demoted it: this agent, an earlier one, the keeper, ``latitude up``), else the
        one the server was started with, else this agent's own fence of a standby; a fence no
        one says anything of is FENCE_CAUSE_STARTUP."""
        marked = self._fencing.marked()
        if marked is not None:
            return CAUSES[marked]
        last = self._probe.last
        if last is not None and last.fenced and last.fence_cause:
            return last.fence_cause
        return self.fence_cause or common_pb2.FENCE_CAUSE_STARTUP

    async def close(self) -> None:
        if self._finishing is not None:
            # The restart of a demoted server: not left half done.
            await asyncio.shield(self._finishing)
        await self._db.close()

    async def _answer(self, command: agent_pb2.Command) -> agent_pb2.CommandResult:
        result = agent_pb2.CommandResult(command_id=command.command_id)
        self._rewound = False
        self._fence_lsn, self._answer_with, self._fenced_already = 0, None, False
        try:
            await self._carry_out(command)
            result.ok = True
        except ActuatorError as err:
            result.error = str(err)
        result.rewound = self._rewound
        if self._answer_with is not None:
            result.observed.CopyFrom(self._answer_with)
        else:
            result.observed.CopyFrom(await self._observe())
        if command.kind == _K.COMMAND_KIND_FENCE and result.ok:
            observed = result.observed
            if self._fenced_already and observed.fenced:
                # Demoted already, and in recovery with no upstream: it writes no WAL past
                # the end of what it replayed, and every commit it made is in it.
                if observed.role == common_pb2.DATABASE_ROLE_PRIMARY:
                    self._fence_lsn = observed.current_lsn
            result.fence_lsn = self._fence_lsn
        result.agent_epoch = self.highest_epoch
        return result

    async def _carry_out(self, command: agent_pb2.Command) -> None:
        if not self.accept_epoch(command.epoch):
            raise ActuatorError(
                f"refused: the command's epoch {command.epoch} is lower than epoch "
                f"{self.highest_epoch} already accepted (it comes from a deposed leader)"
            )
        stop = None  # time.monotonic() at the deadline: waits must survive wall-clock steps
        if command.HasField("time_limit"):
            # Counted from its arrival on this host's monotonic clock: a wall clock that is
            # off (a host 30 s ahead or behind) neither refuses it nor lets it run long.
            stop = time.monotonic() + command.time_limit.ToNanoseconds() / 1e9
        elif command.HasField("deadline"):
            left = command.deadline.ToNanoseconds() / 1e9 - self._clock()
            if left <= 0:
                raise ActuatorError(f"refused: received {-left:.3f} s after its deadline")
            stop = time.monotonic() + left
        match command.kind:
            case _K.COMMAND_KIND_FENCE:
                step = self._fence(common_pb2.FENCE_CAUSE_COMMAND, stop, answer_first=True)
            case _K.COMMAND_KIND_UNFENCE:
                step = self._unfence(stop)
            case _K.COMMAND_KIND_PROMOTE:
                step = self._promote(command.promote, stop)
            case _K.COMMAND_KIND_FOLLOW:
                step = self._follow(command.follow, stop)
            case _K.COMMAND_KIND_REPORT_NOW:
                return  # the fresh observation is the answer
            case _K.COMMAND_KIND_CHECKPOINT:
                step = self._db.sql("execute", "CHECKPOINT", stop=stop, wait=True)
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
        except TROUBLE as err:
            if isinstance(err, BROKEN):
                self._db.discard()
            raise ActuatorError(f"{what} on {self._address} failed: {describe_error(err)}") from err

    # -- the commands ----------------------------------------------------------------------

    async def _fence(self, cause: int, stop: float | None, *, answer_first: bool = False) -> None:
        """Demote the server (agent.fence_command). With ``answer_first``, a server stopped
        cleanly is answered for at once, from its control file, and started again in
        recovery after the answer; else it is started again before this returns."""
        # The first cause is kept until the fence is lifted: it is why the database is fenced.
        self.fence_cause = self.fence_cause or cause
        demotion = await self._fencing.demote(CAUSE_NAMES[self.fence_cause], stop)
        self._fence_lsn = demotion.fence_lsn
        self._fenced_already = demotion.stopped == ""
        if not demotion.restart:
            return
        if answer_first and demotion.stopped == "clean":
            self._answer_with = fenced_status(
                demotion, self.reported_fence_cause, self._probe.last, self._clock()
            )
            self._after = self._fencing.restart()
            return
        await self._fencing.restart()

    async def _unfence(self, stop: float | None) -> None:
        await self._fencing.lift(stop)
        self.fence_cause = _UNSPECIFIED

    async def _promote(self, args: agent_pb2.PromoteArgs, stop: float | None) -> None:
        seen = await self._db.sql("fetchrow", DEMOTION_VIEW, stop=stop)
        standby, read_only = seen["standby"], seen["read_only"]
        if self._fencing.demoted(seen):
            raise ActuatorError("this is a fenced primary: PROMOTE never unfences; UNFENCE it")
        if not standby and read_only:  # an older agent's fence
            raise ActuatorError("this is a fenced primary (the old one?): PROMOTE never "
                                "unfences; UNFENCE it")  # fmt: skip
        if standby:
            want = args.min_replayed_lsn
            if want:
                await self._db.settle(
                    "SELECT coalesce(pg_last_wal_replay_lsn() - '0/0', 0)",
                    done=lambda replayed: replayed >= want, stop=stop, wait=True,
                    failure=lambda replayed: f"replayed WAL reached {_lsn(replayed)}, not "
                    f"{_lsn(want)}, by the deadline: not promoted",
                )  # fmt: skip
            if read_only:  # a former primary's configuration may carry an older fence
                await self._fencing.reset_read_only(stop)
            if args.HasField("synchronous_standby_names"):
                await self._synchronous_before_promotion(args.synchronous_standby_names, stop)
            await self._db.promote(stop)
        for slot in args.create_slots:
            try:
                await self._db.create_slot(slot, stop)
            except asyncpg.DuplicateObjectError:
                pass  # created between our look and our request: kept, as asked
        self.fence_cause = _UNSPECIFIED
        self._upstream_region = ""

    def _check_upstream(self, follow: agent_pb2.FollowArgs) -> None:
        problem = None if self._upstreams is None else upstream_problem(follow, self._upstreams)
        if problem is not None:
            raise ActuatorError(f"refused: {problem}")

    async def _follow(self, follow: agent_pb2.FollowArgs, stop: float | None) -> None:
        if not follow.primary_host or not 0 < follow.primary_port < 65536:
            raise ActuatorError("FOLLOW needs follow.primary_host and follow.primary_port")
        self._check_upstream(follow)
        seen = await self._db.sql("fetchrow", DEMOTION_VIEW, stop=stop)
        if not seen["standby"]:
            raise ActuatorError("a primary cannot follow; use REJOIN")
        if self._fencing.demoted(seen):
            # Its WAL may have gone past the new primary's fork: only REJOIN checks.
            raise ActuatorError("this is a fenced primary: it cannot follow; use REJOIN")
        now = await self._db.sql(
            "fetchval", "SELECT current_setting('primary_conninfo')", stop=stop
        )
        try:
            tls = self._server.tls_pairs() if self._server is not None else ()
            conninfo = follow_conninfo(now, follow.primary_host, follow.primary_port, tls)
        except ConninfoError as err:
            raise ActuatorError(str(err)) from err
        await self._db.alter_system("primary_conninfo", conninfo, stop)
        await self._db.alter_system("primary_slot_name", follow.slot_name or None, stop)
        # PostgreSQL 13+ restarts the WAL receiver when a reload changes primary_conninfo.
        await self._db.sql("execute", "SELECT pg_reload_conf()", stop=stop)
        await self._db.settle(
            "SELECT current_setting('primary_conninfo') = $1 "
            "AND current_setting('primary_slot_name') = $2",
            conninfo, follow.slot_name, done=bool, stop=stop,
            failure=lambda _: "the new primary_conninfo did not take effect on reload",
        )  # fmt: skip
        self.fence_cause = _UNSPECIFIED
        self._upstream_region = follow.primary_region

    async def _rejoin(self, args: agent_pb2.RejoinArgs, stop: float | None) -> None:
        """See agent.rejoin_command. Whether diverged WAL was discarded is answered even when
        the command then fails (the server does not stream by the deadline)."""
        self._check_upstream(args.follow)
        rejoin = Rejoin(
            self._db, self._server, self._target,
            fence=lambda until: self._fence(common_pb2.FENCE_CAUSE_COMMAND, until),
            writable=lambda: self._server is not None and could_be_writable(self._server.data),
        )  # fmt: skip
        try:
            await rejoin.carry_out(args, stop)
        finally:
            self._rewound = rejoin.rewound
        self._rejoined(args.follow)

    def _rejoined(self, follow: agent_pb2.FollowArgs) -> None:
        self.fence_cause = _UNSPECIFIED
        self._upstream_region = follow.primary_region

    # -- steps -----------------------------------------------------------------------------

    async def _set_synchronous(self, names: str, stop: float | None) -> None:
        if await self._db.sql("fetchval", "SELECT pg_is_in_recovery()", stop=stop):
            raise ActuatorError("synchronous_standby_names only matters on a primary")
        await self._apply_synchronous(names, stop)

    async def _synchronous_before_promotion(self, names: str, stop: float | None) -> None:
        """Set on the standby, the setting holds from the promotion on. A commit consults
        not its own session's value but a flag in shared memory that the checkpointer sets
        when it takes up a reload; a CHECKPOINT (a restartpoint, on a standby) returns only
        after a checkpointer cycle that began after the reload and took it up first. Without
        that, the first commits of the new primary could be acknowledged without a standby."""
        now = await self._db.sql("fetchval", "SHOW synchronous_standby_names", stop=stop)
        if now != names:
            await self._apply_synchronous(names, stop)
        if names:
            await self._db.sql("execute", "CHECKPOINT", stop=stop, wait=True)

    async def _apply_synchronous(self, names: str, stop: float | None) -> None:
        await self._db.alter_system("synchronous_standby_names", names or None, stop)
        await self._db.sql("execute", "SELECT pg_reload_conf()", stop=stop)
        await self._db.settle(
            "SHOW synchronous_standby_names", done=lambda value: value == names, stop=stop,
            failure=lambda value: f"synchronous_standby_names is {value!r} after a reload",
        )  # fmt: skip

    async def _observe(self) -> common_pb2.DatabaseStatus:
        async with self._probe_lock:
            status = await self._probe.observe()
        if status.role == common_pb2.DATABASE_ROLE_STANDBY:
            status.upstream_region = status.upstream_region or self._upstream_region
            # A fenced standby is reported fenced until PROMOTE, FOLLOW or UNFENCE.
            status.fenced = status.fenced or self.fence_cause != _UNSPECIFIED
        status.fence_cause = self.reported_fence_cause if status.fenced else _UNSPECIFIED
        return status


def _lsn(position: int) -> str:
    position = int(position)
    return f"{position >> 32:X}/{position & 0xFFFF_FFFF:X}"

"""The leader's failover state machine: when to fail over, then fence, select, promote, repoint.

Each tick the machine runs the guards (``coordinator.failover.guards``: one writable primary,
kept protected) and asks ``decisions.assess_primary`` whether the primary's region has failed;
a confirmed failure with a candidate to promote, or an operator's failover or switchover whose
target passed its checks, starts the phases below. Nothing is fenced before the target is known
to be promotable, and an abort lifts the fence it made. Only one failover runs at a time, and
the guards stand aside until it ends. A failover that cannot start, or aborts, is tried again
with a growing wait, and its cause is recorded once.

The failover record lives in etcd (``keys.FAILOVER``) and is committed, guarded by the leader
key and with a known outcome, at every phase, so a new leader resumes a failover where the old
one stopped: each step is an idempotent command. Promotion waits for the old primary's fence
deadline unless the old primary was fenced by command; the deadline counts the failsafe
confirmations the candidates gave the old primary (they are told to stop giving them first).
The write region changes only in the REPOINTING phase, after the new primary was promoted, and
the failover completes only once that write is known to be committed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from coordinator import keys, metrics
from coordinator.commands import CommandFailed
from coordinator.failover.decisions import (
    Budget,
    RetryPolicy,
    StandbyView,
    any_one,
    assess_primary,
    check_target,
    choose,
    fence_deadline,
    same_reason,
    seconds_at_risk,
)
from coordinator.failover.guards import Guards, record_fenced, unfence
from coordinator.failover.rejoin import Rejoins
from coordinator.failover.views import postgres_address, primary_view, standby_views
from coordinator.leader import Deposed, Leader, OutcomeUnknown
from coordinator.registry import Registry
from latitude.enums import short_name
from latitude.errors import LatitudeError
from latitude.lsn import format_lsn
from latitude.replication import slot_name
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

log = logging.getLogger(__name__)

FENCE_MARGIN = 0.5
TICK = 0.1
Phase = admin_pb2.FailoverPhase
_K = admin_pb2.FailoverKind
_DONE = (admin_pb2.FAILOVER_PHASE_COMPLETED, admin_pb2.FAILOVER_PHASE_ABORTED)
_WARNING, _CRITICAL = admin_pb2.SEVERITY_WARNING, admin_pb2.SEVERITY_CRITICAL
# A FENCE demotes the primary: a fast shutdown (a checkpoint) before it answers.
_FENCE_TIMEOUT = 10.0


class FailoverRefused(LatitudeError):
    """A failover or switchover cannot start now (the message says why)."""


def _kind(kind: int) -> str:
    return short_name(_K, kind, lower=True)


class FailoverMachine:
    def __init__(self, leader: Leader, registry: Registry) -> None:
        self._leader = leader
        self._registry = registry
        self._config = leader.config
        self._clock = leader.clock
        self.current: admin_pb2.FailoverStatus | None = None
        self.write_region = ""
        # Until the record in etcd has been read, a failover may be under way: agents are told
        # so (ClusterWord), and no standby confirms the primary meanwhile.
        self.resumed = False
        self._noted: set[str] = set()
        self._retry = RetryPolicy()
        self._busy = asyncio.Lock()
        self._rejoins = Rejoins(leader, registry)
        self._guards = Guards(leader, registry, self, self._rejoins)

    # -- what others ask -------------------------------------------------------------------

    def word(self) -> agent_pb2.ClusterWord:
        """What agents are told of the cluster (with every acknowledgement)."""
        return agent_pb2.ClusterWord(
            write_region=self.write_region,
            failover_in_progress=self.current is not None or not self.resumed,
        )

    def candidates(self) -> list[StandbyView]:
        """Every region but the primary's, and whether (and why not) it could be promoted."""
        return standby_views(self._registry, self.write_region, now=self._clock.monotonic())

    def primary_failed(self) -> tuple[bool, str]:
        """Whether the primary's region is declared failed, and why (for a manual failover)."""
        if not self.write_region:  # a leader that has not read the write region yet
            return False, "no write region is known yet"
        verdict = self._assess()
        return verdict.failed, verdict.reason

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        writes = self._leader.writes
        while True:
            try:
                raw = await writes.read(keys.FAILOVER)
                self.write_region = (await writes.read(keys.WRITE_REGION) or b"").decode()
                break
            except LatitudeError as err:  # etcd unreachable: nothing can be decided yet
                log.warning("cannot read the failover record yet: %s", err)
                await asyncio.sleep(0.2)
        self.resumed = True
        try:
            if raw:
                record = admin_pb2.FailoverStatus.FromString(raw)
                if record.phase not in _DONE:
                    log.info(
                        "resuming failover %s in phase %s",
                        record.failover_id,
                        Phase.Name(record.phase),
                    )
                    await self._await_agents(record)
                    await self._carry_out(record)
            while True:
                await asyncio.sleep(TICK)
                await self._watch()
        finally:
            await self.cancel_rejoins()

    async def cancel_rejoins(self) -> None:
        """Stop the rejoins still under way in the background (the leader is stopping)."""
        await self._rejoins.cancel()

    async def _watch(self) -> None:
        registry = self._registry
        if not self.write_region:
            primary = registry.primary() or self._sole_primary()
            if primary is not None:
                await self._set_write_region(primary.name)
            return
        if self._busy.locked():
            return  # a switchover or an operator's failover owns the cluster until it ends
        await self._guards.fence_stray_primaries()
        await self._guards.unfence_write_region()
        await self._guards.restart_stopped_standbys()
        if self._config.synchronous:
            await self._guards.keep_synchronous()
        verdict = self._assess()
        now = self._clock.monotonic()
        if not verdict.failed:
            self._noted.clear()
            self._retry.reset()
            return
        if not verdict.confirmed:
            if same_reason(verdict.reason) not in self._noted:
                self._noted.add(same_reason(verdict.reason))
                log.warning("not failing over: %s", verdict.reason)
                self._leader.events.record(
                    admin_pb2.EVENT_KIND_ALERT,
                    _WARNING,
                    region=self.write_region,
                    message=f"not failing over: {verdict.reason}",
                    attributes={"alert": "agent_silent_database_alive"},
                )
            return
        if not self._retry.ready(now):
            return
        try:
            await self.start(_K.Value("FAILOVER_KIND_AUTOMATIC"), verdict.reason)
        except FailoverRefused as err:
            wait = self._retry.failed(now)
            if self._retry.should_record(str(err)):
                log.warning(
                    "not failing over: %s (trying again in %.0f s, then less often)", err, wait
                )
                self._leader.events.record(
                    admin_pb2.EVENT_KIND_ALERT,
                    _CRITICAL,
                    region=self.write_region,
                    message=f"{verdict.reason}, but no failover can start: {err}",
                    attributes={"alert": "failover_impossible", "reason": str(err)},
                )

    def _assess(self):
        now = self._clock.monotonic()
        return assess_primary(
            primary_view(self._registry, self.write_region, now=now, since=self._leader.began),
            standby_views(self._registry, self.write_region, now=now),
            fail_after=self._config.fail_after,
        )

    # -- starting --------------------------------------------------------------------------

    async def start(self, kind: int, reason: str, *, target: str = "", forced: bool = False):
        """Begin a failover or switchover, once its target is known to be promotable, and
        carry it out; its final record. FailoverRefused (nothing fenced) otherwise."""
        if self._busy.locked():
            running = self.current.failover_id if self.current else "another"
            raise FailoverRefused(f"failover {running} is in progress")
        if not self.write_region:
            raise FailoverRefused("no write region is known yet")
        if target and target not in self._registry.regions:
            raise FailoverRefused(f"unknown region {target!r}")
        if target == self.write_region:
            raise FailoverRefused(f"{target} already holds the primary")
        if kind == admin_pb2.FAILOVER_KIND_SWITCHOVER and (
            self._registry.regions[self.write_region].session is None
        ):
            # A switchover begins with FENCE on the primary's own stream; without it, it
            # would only start and abort. A new leader hears each agent within an interval.
            raise FailoverRefused(
                f"{self.write_region}'s agent is not connected to this leader, and a "
                "switchover fences the primary through it first (try again once it reports; "
                "Failover moves the primary away from a region whose agent is gone)"
            )
        if kind != admin_pb2.FAILOVER_KIND_AUTOMATIC:
            # An operator's request is checked against what the candidates say now, not a
            # report up to an interval old (a former primary rejoined a moment ago, say).
            names = [n for n in self._registry.regions if n != self.write_region]
            await asyncio.gather(*(self._report_now(n) for n in names), return_exceptions=True)
        self._check_before_fencing(kind, target, forced)
        record = admin_pb2.FailoverStatus(
            failover_id=uuid.uuid4().hex[:8],
            kind=kind,
            phase=admin_pb2.FAILOVER_PHASE_FENCING,
            from_region=self.write_region,
            to_region=target,
            reason=reason,
            forced=forced,
        )
        self._stamp(record.started_at)
        self._stamp(record.steps["detected"])
        log.warning("failover %s: %s", record.failover_id, reason)
        self._leader.events.record(
            admin_pb2.EVENT_KIND_FAILOVER_STARTED,
            _CRITICAL if kind == admin_pb2.FAILOVER_KIND_AUTOMATIC else _WARNING,
            region=record.from_region,
            failover_id=record.failover_id,
            message=f"{_kind(kind)} {record.failover_id} started from {record.from_region}"
            f"{' to ' + target if target else ''}: {reason}",
            attributes={
                "kind": _kind(kind),
                "from": record.from_region,
                "to": target,
                "forced": forced,
                "reason": reason,
            },
        )
        await self._carry_out(record)
        if record.phase == admin_pb2.FAILOVER_PHASE_ABORTED:
            self._retry.failed(self._clock.monotonic())
        return record

    def _check_before_fencing(self, kind: int, target: str, forced: bool) -> None:
        """Nothing is fenced for a failover that could not promote anyone: the target (or,
        without one, some candidate) must be promotable now."""
        old = self._registry.regions[self.write_region].report
        db = old.database if old is not None else common_pb2.DatabaseStatus()
        switchover = kind == admin_pb2.FAILOVER_KIND_SWITCHOVER
        choice = check_target(
            self.candidates(),
            target=target,
            primary_lsn=db.current_lsn,
            primary_heartbeat_ns=db.heartbeat_at.ToNanoseconds()
            if db.HasField("heartbeat_at")
            else 0,
            budget=self._budget(),
            forced=forced,
            switchover=switchover,
        )
        if choice.region is None:
            raise FailoverRefused(choice.reason)

    def _budget(self) -> Budget:
        return Budget(self._config.lag_budget_bytes, self._config.lag_budget_seconds)

    # -- carrying out ----------------------------------------------------------------------

    async def _carry_out(self, record: admin_pb2.FailoverStatus) -> None:
        async with self._busy:
            await self._carry_out_locked(record)

    async def _carry_out_locked(self, record: admin_pb2.FailoverStatus) -> None:
        self.current = record
        old = self._registry.regions[record.from_region]
        old.monitor.in_failover = True
        self._registry.dirty.add(old.name)
        try:
            await self._phases(record)
        except CommandFailed as err:
            record.error = str(err)
            await self._abort(record)
        except OutcomeUnknown as err:
            # Not finished and not aborted: the record in etcd says where it stands, and this
            # leader (or the next) resumes it from there.
            log.error("failover %s: %s; it will be resumed from etcd", record.failover_id, err)
            self.resumed = False
            asyncio.get_running_loop().call_later(1.0, self._resume_later)
        finally:
            old.monitor.in_failover = False
            self._registry.dirty.add(old.name)
            self.current = None

    def _resume_later(self) -> None:
        task = asyncio.ensure_future(self._resume_from_store())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _resume_from_store(self) -> None:
        try:
            raw = await self._leader.writes.read(keys.FAILOVER)
        except LatitudeError:
            asyncio.get_running_loop().call_later(1.0, self._resume_later)
            return
        self.resumed = True
        record = admin_pb2.FailoverStatus.FromString(raw) if raw else None
        if record is not None and record.phase not in _DONE and not self._busy.locked():
            await self._carry_out(record)

    async def _phases(self, record: admin_pb2.FailoverStatus) -> None:
        if record.phase == admin_pb2.FAILOVER_PHASE_FENCING:
            await self._save(record)
            self._stamp(record.steps["drained"])
            await self._fence(record)
            record.phase = admin_pb2.FAILOVER_PHASE_SELECTING
            await self._save(record)
        if record.phase == admin_pb2.FAILOVER_PHASE_SELECTING:
            if not await self._select(record):
                raise CommandFailed(record.error or "no standby could be promoted")
            record.phase = admin_pb2.FAILOVER_PHASE_PROMOTING
            await self._save(record)
        if record.phase == admin_pb2.FAILOVER_PHASE_PROMOTING:
            await self._promote(record)
            record.phase = admin_pb2.FAILOVER_PHASE_REPOINTING
            await self._save(record)
        if record.phase == admin_pb2.FAILOVER_PHASE_REPOINTING:
            await self._set_write_region(record.to_region)
            self._stamp(record.steps["redirected"])
            await self._repoint(record)
            await self._finish(record, admin_pb2.FAILOVER_PHASE_COMPLETED)

    async def _abort(self, record: admin_pb2.FailoverStatus) -> None:
        """Nothing was promoted: lift the fence this failover made, so the old primary takes
        writes again at once (the guards would lift it too, a moment later)."""
        promoted = "promoted" in record.steps
        if record.fenced_by_command and not promoted:
            try:
                why = f"failover {record.failover_id} aborted"
                await unfence(self._leader, record.from_region, why, record.failover_id)
            except CommandFailed as err:
                log.warning(
                    "lifting the fence on %s after the abort failed: %s; the guards try again",
                    record.from_region,
                    err,
                )
        await self._finish(record, admin_pb2.FAILOVER_PHASE_ABORTED)

    def _sole_primary(self):
        """A new cluster whose primary came back fenced before any write region was chosen:
        every region reports, and one alone is a primary."""
        regions = list(self._registry.regions.values())
        if any(r.report is None or r.session is None for r in regions):
            return None
        primary, standby = common_pb2.DATABASE_ROLE_PRIMARY, common_pb2.DATABASE_ROLE_STANDBY
        primaries = [r for r in regions if r.report.database.role == primary]
        standbys = [r for r in regions if r.report.database.role == standby]
        return primaries[0] if len(primaries) == 1 and len(standbys) == len(regions) - 1 else None

    async def _await_agents(self, record: admin_pb2.FailoverStatus, timeout: float = 5.0):
        """A new leader resuming a failover first lets the agents find it (they reconnect
        within a second or two); the commands it resends need their streams."""
        wanted = [r for n, r in self._registry.regions.items() if n != record.from_region]
        for _ in range(int(timeout / 0.05)):
            if all(region.session is not None for region in wanted):
                return
            await asyncio.sleep(0.05)

    async def _fence(self, record: admin_pb2.FailoverStatus) -> None:
        old = self._registry.regions[record.from_region]
        why = f"{_kind(record.kind)} {record.failover_id}"
        if record.kind == admin_pb2.FAILOVER_KIND_SWITCHOVER:
            # Planned: the old primary must be fenced by command, and its final position read,
            # so the target can be made to replay every acknowledged write before promotion.
            result = await self._command_fence(old.name, why, _FENCE_TIMEOUT)
            if not result.ok:
                raise CommandFailed(f"fencing {old.name} failed: {result.error}")
            self._fenced(record, old, result)
            if not record.old_primary_lsn_final:
                # Stopped at once: what it committed last is not known, so no target can be
                # made to hold all of it. Not a switchover, then: the abort lifts the fence.
                raise CommandFailed(
                    f"{old.name} had to be stopped at once: its final WAL position is unknown, "
                    "so a switchover cannot promise to lose nothing"
                )
            return
        now = self._clock.monotonic()
        if old.session is not None and not old.monitor.arrivals.overdue(now):
            try:
                result = await self._command_fence(old.name, why, _FENCE_TIMEOUT)
                if result.ok:
                    self._fenced(record, old, result)  # its final position is known, mostly
                    return
            except CommandFailed as err:
                log.warning("fencing %s by command failed: %s", old.name, err)
        # Unreachable: it fences itself fence_after after the later of the last report any
        # leader acknowledged and the last failsafe round every other region confirmed. The
        # candidates stop confirming first, and say when they last did.
        confirmations = await self._stop_confirmations(record)
        deadline = fence_deadline(
            last_ack=old.acked_at,
            leadership_began=self._leader.began,
            confirmations=confirmations.values(),
            fence_after=self._config.fence_after,
            margin=FENCE_MARGIN,
        )
        for region, moment in confirmations.items():
            self._stamp(record.failsafe_confirmations[region], self._leader.wall_of(moment))
        if record.HasField("fence_deadline"):  # a predecessor's, for the same old primary
            earlier = self._leader.monotonic_of(record.fence_deadline.ToNanoseconds() / 1e9)
            deadline = max(deadline, earlier)
        self._stamp(record.fence_deadline, self._leader.wall_of(deadline))
        await self._save(record)
        await asyncio.sleep(max(0.0, deadline - self._clock.monotonic()))
        self._stamp(record.steps["fenced"])

    async def _command_fence(self, region: str, why: str, timeout: float):
        command = agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_FENCE)
        return await self._leader.agents.command(region, command, timeout=timeout, reason=why)

    def _fenced(self, record, old, result: agent_pb2.CommandResult) -> None:
        record.fenced_by_command = True
        # The position from which it commits nothing. A server stopped at once, or found down,
        # has none: its last reported position stands, and the bound in bytes is not exact.
        if result.fence_lsn:
            record.old_primary_lsn, record.old_primary_lsn_final = result.fence_lsn, True
        elif old.report is not None and old.report.database.current_lsn:
            record.old_primary_lsn = old.report.database.current_lsn
        if old.report is not None and result.observed.role == common_pb2.DATABASE_ROLE_PRIMARY:
            old.report.database.CopyFrom(result.observed)
        self._stamp(record.steps["fenced"])
        record_fenced(self._leader, old.name, result, record.failover_id)

    async def _stop_confirmations(self, record: admin_pb2.FailoverStatus) -> dict[str, float]:
        """STOP_CONFIRMING to every other region's agent: the moment (monotonic, an upper
        bound) each last confirmed the old primary; those that never did are left out. With
        no answer at all the old primary's failsafe cannot be bounded, so no promotion."""
        names = [n for n in self._registry.regions if n != record.from_region]
        command = agent_pb2.Command(
            kind=agent_pb2.COMMAND_KIND_STOP_CONFIRMING,
            stop_confirming=agent_pb2.StopConfirmingArgs(
                primary_region=record.from_region, failover_id=record.failover_id
            ),
        )

        async def ask(name: str):
            copy = agent_pb2.Command()
            copy.CopyFrom(command)
            result = await self._leader.agents.command(
                name, copy, timeout=2.0, reason=f"failover {record.failover_id}"
            )
            return name, result, self._clock.monotonic()

        answers = await asyncio.gather(*(ask(n) for n in names), return_exceptions=True)
        confirmations: dict[str, float] = {}
        answered = 0
        for answer in answers:
            if isinstance(answer, BaseException):
                if not isinstance(answer, CommandFailed):
                    raise answer
                log.warning("failover %s: %s", record.failover_id, answer)
                continue
            name, result, received = answer
            if not result.ok:
                # An agent without the failsafe (an older version) never confirmed anything.
                if "unknown command kind" in result.error:
                    answered += 1
                    continue
                log.warning(
                    "failover %s: %s did not stop confirming: %s",
                    record.failover_id,
                    name,
                    result.error,
                )
                continue
            answered += 1
            if result.HasField("last_confirmed_seconds_ago"):
                confirmations[name] = received - max(0.0, result.last_confirmed_seconds_ago)
        if not answered:
            raise CommandFailed(
                "no other region's agent answered STOP_CONFIRMING: the old primary's failsafe "
                "cannot be bounded, so nothing can be promoted safely"
            )
        return confirmations

    async def _select(self, record: admin_pb2.FailoverStatus) -> bool:
        # Ask every candidate for its position now rather than trusting the last report.
        names = [n for n in self._registry.regions if n != record.from_region]
        await asyncio.gather(*(self._report_now(n) for n in names), return_exceptions=True)
        old = self._registry.regions[record.from_region].report
        old_db = old.database if old is not None else common_pb2.DatabaseStatus()
        switchover = record.kind == admin_pb2.FAILOVER_KIND_SWITCHOVER
        choice = choose(
            self.candidates(),
            primary_lsn=record.old_primary_lsn or old_db.current_lsn,
            primary_heartbeat_ns=old_db.heartbeat_at.ToNanoseconds()
            if old_db.HasField("heartbeat_at")
            else 0,
            budget=self._budget(),
            # A switchover waits for the target to catch up: lag costs time, not data.
            forced=record.forced or switchover,
            target=record.to_region,
        )
        exact = record.old_primary_lsn_final
        if not record.old_primary_lsn:
            record.old_primary_lsn = old_db.current_lsn
        if switchover:
            record.data_loss_bound_bytes = 0
            record.data_loss_bound_seconds = 0.0
        else:
            if exact:
                record.data_loss_bound_bytes = choice.loss_bytes
            if choice.region is not None:
                # Fenced by command, its writes ended by the "fenced" step; else by its fence
                # deadline. What it wrote after its last report is unknown in bytes then.
                if record.HasField("fence_deadline"):
                    ended = record.fence_deadline
                else:
                    ended = record.steps["fenced"]
                chosen_db = self._registry.regions[choice.region].report.database
                seconds = seconds_at_risk(
                    kept_until_ns=chosen_db.heartbeat_at.ToNanoseconds()
                    if chosen_db.HasField("heartbeat_at")
                    else 0,
                    writes_ended_ns=ended.ToNanoseconds(),
                    loss_bytes=choice.loss_bytes if exact else None,
                )
                if seconds is not None:
                    record.data_loss_bound_seconds = seconds
        record.selection_reason = choice.reason
        if choice.region is None:
            record.error = choice.reason
            if choice.loss_bytes or choice.loss_seconds:  # refused past the lag budget
                self._leader.events.record(
                    admin_pb2.EVENT_KIND_ALERT,
                    _CRITICAL,
                    region=record.from_region,
                    failover_id=record.failover_id,
                    message=f"not promoting: {choice.reason}",
                    attributes={
                        "alert": "lag_budget",
                        "loss_bytes": choice.loss_bytes,
                        "loss_seconds": f"{choice.loss_seconds:.3f}",
                    },
                )
            return False
        record.to_region = choice.region
        chosen = self._registry.regions[choice.region].report
        record.promoted_lsn = max(chosen.database.replayed_lsn, record.old_primary_lsn * switchover)
        self._stamp(record.steps["selected"])
        return True

    async def _report_now(self, region: str) -> None:
        result = await self._leader.agents.command(
            region, agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_REPORT_NOW), timeout=1.0
        )
        if result.ok:
            self._believe(region, result.observed)

    def _believe(self, region: str, observed: common_pb2.DatabaseStatus) -> None:
        """What an agent just saw of its database, newer than its last report."""
        report = self._registry.regions[region].report
        if report is not None:
            report.database.CopyFrom(observed)

    async def _promoted_already(self, record: admin_pb2.FailoverStatus) -> bool:
        """The target is a primary already: promoted by a predecessor, and perhaps fenced by
        itself since, while no leader acknowledged it. It is the new primary (the target was
        chosen among standbys), so its fence is lifted."""
        target = self._registry.regions[record.to_region].report
        if target is None or target.database.role != common_pb2.DATABASE_ROLE_PRIMARY:
            return False
        if target.database.fenced:
            await unfence(
                self._leader,
                record.to_region,
                f"failover {record.failover_id}",
                record.failover_id,
            )
        self._stamp(record.steps["promoted"])
        return True

    async def _promote(self, record: admin_pb2.FailoverStatus) -> None:
        if await self._promoted_already(record):
            return
        followers = [n for n in self._registry.regions if n != record.to_region]
        # In effect from the promotion on: in synchronous mode the new primary's first commit
        # waits for one of the standbys (once repointed), never for none.
        names = any_one(followers) if self._config.synchronous else ""
        command = agent_pb2.Command(
            kind=agent_pb2.COMMAND_KIND_PROMOTE,
            promote=agent_pb2.PromoteArgs(
                create_slots=[slot_name(n) for n in followers], synchronous_standby_names=names
            ),
        )
        if record.kind == admin_pb2.FAILOVER_KIND_SWITCHOVER:
            # Zero loss: promote only once everything the fenced primary wrote is replayed.
            command.promote.min_replayed_lsn = record.old_primary_lsn
        result = await self._leader.agents.command(
            record.to_region, command, timeout=15.0, reason=f"failover {record.failover_id}"
        )
        if not result.ok:
            # The registry's report can predate a predecessor's promotion (a new leader
            # resumes at once): what the agent saw when it refused says.
            if result.observed.role == common_pb2.DATABASE_ROLE_PRIMARY:
                self._believe(record.to_region, result.observed)
                if await self._promoted_already(record):
                    return
            raise CommandFailed(f"promoting {record.to_region} failed: {result.error}")
        self._stamp(record.steps["promoted"])
        timeline = result.observed.timeline_id
        self._leader.events.record(
            admin_pb2.EVENT_KIND_PROMOTED,
            _WARNING,
            region=record.to_region,
            failover_id=record.failover_id,
            message=f"promoted {record.to_region} (timeline {timeline})",
            attributes={"timeline": timeline, "lsn": format_lsn(record.promoted_lsn)},
        )

    async def _repoint(self, record: admin_pb2.FailoverStatus) -> None:
        """Point every other standby at the new primary, all at once: one behind a half-open
        stream costs its command's timeout, not that times the standbys. The former primary
        rejoins in the background, like every rejoin: it is dead, cut off or about to be
        rewound, and the failover is complete without it (the write region is committed and
        the standbys follow); were it awaited, a stream still open to a dead or cut-off agent
        would hold the failover's completion for the rejoin's whole minute."""
        others = [
            n for n in self._registry.regions if n not in (record.to_region, record.from_region)
        ]
        await asyncio.gather(*(self._follow(record, name) for name in others))
        self._stamp(record.steps["repointed"])
        self._rejoins.in_background(
            record.from_region, self._rejoins.rejoin(record.from_region, record.to_region)
        )

    async def _follow(self, record: admin_pb2.FailoverStatus, name: str) -> None:
        follow = self._rejoins.follow_args(name, record.to_region)
        try:
            result = await self._leader.agents.command(
                name,
                agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_FOLLOW, follow=follow),
                timeout=5.0,
                reason=f"failover {record.failover_id}",
            )
            if not result.ok:
                log.warning("repointing %s failed: %s", name, result.error)
        except CommandFailed as err:
            log.warning("repointing %s failed: %s", name, err)
        self._rejoins.in_background(name, self._rejoins.follow_or_rejoin(name, record.to_region))

    async def _set_write_region(self, region: str) -> None:
        """Known to be committed when it returns (Deposed or OutcomeUnknown otherwise)."""
        await self._leader.writes.commit({keys.WRITE_REGION: region.encode()})
        if region != self.write_region:
            self._guards.new_write_region()
        self.write_region = region

    async def _save(self, record: admin_pb2.FailoverStatus) -> None:
        self._stamp(record.updated_at)
        try:
            await self._leader.writes.commit({keys.FAILOVER: record.SerializeToString()})
        except Deposed as err:
            raise CommandFailed(
                f"deposed: the failover record could not be written ({err})"
            ) from err

    async def _finish(self, record: admin_pb2.FailoverStatus, phase: int) -> None:
        record.phase = phase
        self._stamp(record.finished_at)
        total = (record.finished_at.ToNanoseconds() - record.started_at.ToNanoseconds()) / 1e9
        log.warning(
            "failover %s %s in %.2f s: %s -> %s (%s)",
            record.failover_id,
            Phase.Name(phase),
            total,
            record.from_region,
            record.to_region or "-",
            record.error or record.selection_reason,
        )
        metrics.failover_finished(record)
        completed = phase == admin_pb2.FAILOVER_PHASE_COMPLETED
        attributes = {
            "from": record.from_region,
            "to": record.to_region,
            "duration_seconds": f"{total:.3f}",
        }
        if record.HasField("data_loss_bound_bytes"):
            attributes["data_loss_bound_bytes"] = record.data_loss_bound_bytes
        if record.HasField("data_loss_bound_seconds"):
            attributes["data_loss_bound_seconds"] = f"{record.data_loss_bound_seconds:.3f}"
        if not completed:
            attributes["error"] = record.error
        if completed:
            message = f"completed in {total:.2f} s: {record.from_region} -> {record.to_region}"
        else:
            message = f"aborted after {total:.2f} s: {record.error}"
        self._leader.events.record(
            admin_pb2.EVENT_KIND_FAILOVER_COMPLETED
            if completed
            else admin_pb2.EVENT_KIND_FAILOVER_ABORTED,
            admin_pb2.SEVERITY_INFO if completed else _CRITICAL,
            region=record.from_region,
            failover_id=record.failover_id,
            message=f"failover {record.failover_id} {message}",
            attributes=attributes,
        )
        value = record.SerializeToString()
        history = f"{keys.FAILOVER_HISTORY}/{record.failover_id}"
        try:
            await self._leader.writes.commit({keys.FAILOVER: value, history: value})
        except (Deposed, OutcomeUnknown) as err:
            # The write region is committed already (a completed one); a successor resumes an
            # unfinished record and finds every step done.
            log.warning(
                "failover %s: its final record is not known to be written: %s",
                record.failover_id,
                err,
            )

    def _stamp(self, timestamp, wall: float | None = None) -> None:
        timestamp.FromNanoseconds(int((self._clock.wall() if wall is None else wall) * 1e9))


# The name the rest of the coordinator knew it by.
Orchestrator = FailoverMachine
__all__ = ["FENCE_MARGIN", "FailoverMachine", "FailoverRefused", "Orchestrator", "postgres_address"]

"""The leader's failover state machine: when to fail over, then fence, select, promote, repoint.

Each tick the Orchestrator runs the guards (``coordinator.guards``: one writable primary, kept
protected) and asks ``coordinator.failover`` whether the primary's region has failed; a
confirmed failure, or an operator's failover or switchover, starts the phases below. Only one
failover runs at a time, and the guards stand aside until it ends.

The failover record lives in etcd (``failover/current``) and is rewritten, guarded by the
leader key, at every phase, so a new leader resumes a failover where the old one stopped:
each step is an idempotent command. Promotion waits for the old primary's fence deadline
unless the old primary was fenced by command. The write region (``write_region``) changes
only in the REPOINTING phase, after the new primary has been promoted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from coordinator.commands import CommandFailed
from coordinator.failover import (
    Budget,
    StandbyView,
    assess_primary,
    choose,
    format_lsn,
    seconds_at_risk,
)
from coordinator.guards import Guards, any_one, record_fenced, unfence
from coordinator.registry import Registry
from coordinator.rejoin import Rejoins
from coordinator.views import postgres_address, primary_view, standby_views
from latitude.errors import LatitudeError
from latitude.replication import slot_name
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

log = logging.getLogger(__name__)

FENCE_MARGIN = 0.5
KEY = "failover/current"
WRITE_REGION = "write_region"
Phase = admin_pb2.FailoverPhase
_DONE = (admin_pb2.FAILOVER_PHASE_COMPLETED, admin_pb2.FAILOVER_PHASE_ABORTED)
_WARNING, _CRITICAL = admin_pb2.SEVERITY_WARNING, admin_pb2.SEVERITY_CRITICAL


class FailoverRefused(LatitudeError):
    """A failover or switchover cannot start now (the message says why)."""


def _stamp(timestamp, wall: float | None = None) -> None:
    timestamp.FromNanoseconds(int((time.time() if wall is None else wall) * 1e9))


class Orchestrator:
    def __init__(self, node, registry: Registry, elected_wall: float) -> None:
        self._node = node
        self._registry = registry
        self._config = node.config
        self._elected_wall = elected_wall
        self.current: admin_pb2.FailoverStatus | None = None
        self.write_region = ""
        self._noted: set[str] = set()
        self._busy = asyncio.Lock()
        self._rejoins = Rejoins(node, registry)
        self._guards = Guards(node, registry, self, self._rejoins)

    async def run(self) -> None:
        store = self._node.store
        raw = await store.read(KEY)
        self.write_region = (await store.read(WRITE_REGION) or b"").decode()
        if raw:
            record = admin_pb2.FailoverStatus.FromString(raw)
            if record.phase not in _DONE:
                log.info("resuming failover %s in phase %s", record.failover_id,
                         Phase.Name(record.phase))  # fmt: skip
                await self._await_agents(record)
                await self._carry_out(record)
        try:
            while True:
                await asyncio.sleep(0.1)
                await self._watch()
        finally:
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
        if self._config.synchronous:
            await self._guards.keep_synchronous()
        verdict = assess_primary(
            primary_view(self._registry, self.write_region),
            standby_views(self._registry, self.write_region),
            fail_after=self._config.fail_after,
        )
        if verdict.confirmed:
            try:
                await self.start(admin_pb2.FAILOVER_KIND_AUTOMATIC, verdict.reason)
            except FailoverRefused as err:  # one began meanwhile, from the AdminService
                log.info("not starting a failover: %s", err)
        elif verdict.failed and verdict.reason not in self._noted:
            self._noted.add(verdict.reason)
            log.warning("not failing over: %s", verdict.reason)
            self._node.events.record(
                admin_pb2.EVENT_KIND_ALERT, _WARNING, region=self.write_region,
                message=f"not failing over: {verdict.reason}",
                attributes={"alert": "agent_silent_database_alive"},
            )  # fmt: skip
        elif not verdict.failed:
            self._noted.clear()

    async def start(self, kind: int, reason: str, *, target: str = "", forced: bool = False):
        """Begin a failover or switchover and carry it out; its final record."""
        if self._busy.locked():
            running = self.current.failover_id if self.current else "another"
            raise FailoverRefused(f"failover {running} is in progress")
        if not self.write_region:
            raise FailoverRefused("no write region is known yet")
        if target and target not in self._registry.regions:
            raise FailoverRefused(f"unknown region {target!r}")
        if target == self.write_region:
            raise FailoverRefused(f"{target} already holds the primary")
        record = admin_pb2.FailoverStatus(
            failover_id=uuid.uuid4().hex[:8],
            kind=kind,
            phase=admin_pb2.FAILOVER_PHASE_FENCING,
            from_region=self.write_region,
            to_region=target,
            reason=reason,
            forced=forced,
        )
        _stamp(record.started_at)
        _stamp(record.steps["detected"])
        log.warning("failover %s: %s", record.failover_id, reason)
        kind_name = admin_pb2.FailoverKind.Name(kind).removeprefix("FAILOVER_KIND_").lower()
        self._node.events.record(
            admin_pb2.EVENT_KIND_FAILOVER_STARTED,
            _CRITICAL if kind == admin_pb2.FAILOVER_KIND_AUTOMATIC else _WARNING,
            region=record.from_region, failover_id=record.failover_id,
            message=f"{kind_name} {record.failover_id} started from {record.from_region}"
                    f"{' to ' + target if target else ''}: {reason}",
            attributes={"kind": kind_name, "from": record.from_region, "to": target,
                        "forced": forced, "reason": reason},
        )  # fmt: skip
        await self._carry_out(record)
        return record

    async def _carry_out(self, record: admin_pb2.FailoverStatus) -> None:
        async with self._busy:
            await self._carry_out_locked(record)

    async def _carry_out_locked(self, record: admin_pb2.FailoverStatus) -> None:
        self.current = record
        old = self._registry.regions[record.from_region]
        old.monitor.in_failover = True
        self._registry.dirty.add(old.name)
        try:
            if record.phase == admin_pb2.FAILOVER_PHASE_FENCING:
                await self._save(record)
                _stamp(record.steps["drained"])
                await self._fence(record)
                record.phase = admin_pb2.FAILOVER_PHASE_SELECTING
                await self._save(record)
            if record.phase == admin_pb2.FAILOVER_PHASE_SELECTING:
                if not await self._select(record):
                    return await self._finish(record, admin_pb2.FAILOVER_PHASE_ABORTED)
                record.phase = admin_pb2.FAILOVER_PHASE_PROMOTING
                await self._save(record)
            if record.phase == admin_pb2.FAILOVER_PHASE_PROMOTING:
                await self._promote(record)
                record.phase = admin_pb2.FAILOVER_PHASE_REPOINTING
                await self._save(record)
            if record.phase == admin_pb2.FAILOVER_PHASE_REPOINTING:
                await self._set_write_region(record.to_region)
                _stamp(record.steps["redirected"])
                await self._repoint(record)
                await self._finish(record, admin_pb2.FAILOVER_PHASE_COMPLETED)
        except CommandFailed as err:
            record.error = str(err)
            await self._finish(record, admin_pb2.FAILOVER_PHASE_ABORTED)
        finally:
            old.monitor.in_failover = False
            self._registry.dirty.add(old.name)
            self.current = None

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
        wanted = [self._registry.regions[n] for n in self._registry.regions
                  if n != record.from_region]  # fmt: skip
        for _ in range(int(timeout / 0.05)):
            if all(region.session is not None for region in wanted):
                return
            await asyncio.sleep(0.05)

    async def _fence(self, record: admin_pb2.FailoverStatus) -> None:
        old = self._registry.regions[record.from_region]
        if record.kind == admin_pb2.FAILOVER_KIND_SWITCHOVER:
            # Planned: the old primary must be fenced by command, and its final position read,
            # so the target can be made to replay every acknowledged write before promotion.
            result = await self._node.command(
                old.name, agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_FENCE),
                timeout=2.0, reason=f"switchover {record.failover_id}",
            )  # fmt: skip
            if not result.ok:
                raise CommandFailed(f"fencing {old.name} failed: {result.error}")
            record.old_primary_lsn = result.observed.current_lsn
            if old.report is not None:
                old.report.database.CopyFrom(result.observed)
            _stamp(record.steps["fenced"])
            record_fenced(self._node, old.name, result, record.failover_id)
            return
        if old.session is not None and not old.monitor.arrivals.overdue(time.monotonic()):
            try:
                result = await self._node.command(
                    old.name, agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_FENCE),
                    timeout=1.0, reason=f"failover {record.failover_id}",
                )  # fmt: skip
                if result.ok:
                    # Fenced and answering: its final position is known exactly.
                    record.old_primary_lsn = result.observed.current_lsn
                    if old.report is not None:
                        old.report.database.CopyFrom(result.observed)
                    _stamp(record.steps["fenced"])
                    record_fenced(self._node, old.name, result, record.failover_id)
                    return
            except CommandFailed as err:
                log.warning("fencing %s by command failed: %s", old.name, err)
        # Unreachable: it fences itself fence_after after the last report anyone acknowledged.
        # A new leader cannot know its predecessor's acks, only that they came before its term.
        last_ack = max(old.acked_wall, self._elected_wall if not old.acked_wall else 0.0)
        deadline = last_ack + self._config.fence_after + FENCE_MARGIN
        if record.HasField("fence_deadline"):
            deadline = max(deadline, record.fence_deadline.ToNanoseconds() / 1e9)
        _stamp(record.fence_deadline, deadline)
        await self._save(record)
        await asyncio.sleep(max(0.0, deadline - time.time()))
        _stamp(record.steps["fenced"])

    async def _select(self, record: admin_pb2.FailoverStatus) -> bool:
        # Ask every candidate for its position now rather than trusting the last report.
        names = [n for n in self._registry.regions if n != record.from_region]
        await asyncio.gather(*(self._report_now(n) for n in names), return_exceptions=True)
        old = self._registry.regions[record.from_region].report
        old_db = old.database if old is not None else common_pb2.DatabaseStatus()
        choice = choose(
            standby_views(self._registry, self.write_region),
            primary_lsn=old_db.current_lsn,
            primary_heartbeat_ns=old_db.heartbeat_at.ToNanoseconds()
            if old_db.HasField("heartbeat_at")
            else 0,
            budget=Budget(self._config.lag_budget_bytes, self._config.lag_budget_seconds),
            # A switchover waits for the target to catch up: lag costs time, not data.
            forced=record.forced or record.kind == admin_pb2.FAILOVER_KIND_SWITCHOVER,
            target=record.to_region,
        )
        switchover = record.kind == admin_pb2.FAILOVER_KIND_SWITCHOVER
        exact = switchover or ("fenced" in record.steps and not record.HasField("fence_deadline"))
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
                self._node.events.record(
                    admin_pb2.EVENT_KIND_ALERT, _CRITICAL, region=record.from_region,
                    failover_id=record.failover_id, message=f"not promoting: {choice.reason}",
                    attributes={"alert": "lag_budget", "loss_bytes": choice.loss_bytes,
                                "loss_seconds": f"{choice.loss_seconds:.3f}"},
                )  # fmt: skip
            return False
        record.to_region = choice.region
        chosen = self._registry.regions[choice.region].report
        record.promoted_lsn = max(chosen.database.replayed_lsn, record.old_primary_lsn * switchover)
        _stamp(record.steps["selected"])
        return True

    async def _report_now(self, region: str) -> None:
        result = await self._node.command(
            region, agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_REPORT_NOW), timeout=1.0
        )
        record = self._registry.regions[region]
        if result.ok and record.report is not None:
            record.report.database.CopyFrom(result.observed)

    async def _promote(self, record: admin_pb2.FailoverStatus) -> None:
        target = self._registry.regions[record.to_region].report
        if target is not None and target.database.role == common_pb2.DATABASE_ROLE_PRIMARY:
            # Promoted already (by a predecessor) and fenced itself while no leader
            # acknowledged it: it is the new primary, so lift its fence.
            if target.database.fenced:
                await unfence(
                    self._node,
                    record.to_region,
                    f"failover {record.failover_id}",
                    record.failover_id,
                )
            _stamp(record.steps["promoted"])
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
        result = await self._node.command(
            record.to_region, command, timeout=15.0, reason=f"failover {record.failover_id}"
        )
        if not result.ok:
            raise CommandFailed(f"promoting {record.to_region} failed: {result.error}")
        _stamp(record.steps["promoted"])
        timeline = result.observed.timeline_id
        self._node.events.record(
            admin_pb2.EVENT_KIND_PROMOTED, _WARNING, region=record.to_region,
            failover_id=record.failover_id,
            message=f"promoted {record.to_region} (timeline {timeline})",
            attributes={"timeline": timeline, "lsn": format_lsn(record.promoted_lsn)},
        )  # fmt: skip

    async def _repoint(self, record: admin_pb2.FailoverStatus) -> None:
        host, _, port = postgres_address(self._registry, record.to_region).rpartition(":")
        for name in self._registry.regions:
            if name in (record.to_region, record.from_region):
                continue
            follow = agent_pb2.FollowArgs(
                primary_region=record.to_region, primary_host=host, primary_port=int(port),
                slot_name=slot_name(name),
            )  # fmt: skip
            try:
                result = await self._node.command(
                    name, agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_FOLLOW, follow=follow),
                    timeout=5.0, reason=f"failover {record.failover_id}",
                )  # fmt: skip
                if not result.ok:
                    log.warning("repointing %s failed: %s", name, result.error)
            except CommandFailed as err:
                log.warning("repointing %s failed: %s", name, err)
            self._rejoins.in_background(
                name, self._rejoins.follow_or_rejoin(name, record.to_region)
            )
        _stamp(record.steps["repointed"])
        await self._rejoins.rejoin(record.from_region, record.to_region)

    def candidates(self) -> list[StandbyView]:
        """Every region but the primary's, and whether (and why not) it could be promoted."""
        return standby_views(self._registry, self.write_region)

    def primary_failed(self) -> tuple[bool, str]:
        """Whether the primary's region is declared failed, and why (for a manual failover)."""
        verdict = assess_primary(
            primary_view(self._registry, self.write_region),
            standby_views(self._registry, self.write_region),
            fail_after=self._config.fail_after,
        )
        return verdict.failed, verdict.reason

    async def _set_write_region(self, region: str) -> None:
        if await self._node.write({WRITE_REGION: region.encode()}):
            if region != self.write_region:
                self._guards.new_write_region()
            self.write_region = region

    async def _save(self, record: admin_pb2.FailoverStatus) -> None:
        _stamp(record.updated_at)
        if not await self._node.write({KEY: record.SerializeToString()}):
            raise CommandFailed("deposed: the failover record could not be written")

    async def _finish(self, record: admin_pb2.FailoverStatus, phase: int) -> None:
        record.phase = phase
        _stamp(record.finished_at)
        total = (record.finished_at.ToNanoseconds() - record.started_at.ToNanoseconds()) / 1e9
        log.warning("failover %s %s in %.2f s: %s -> %s (%s)", record.failover_id,
                    Phase.Name(phase), total, record.from_region, record.to_region or "-",
                    record.error or record.selection_reason)  # fmt: skip
        completed = phase == admin_pb2.FAILOVER_PHASE_COMPLETED
        attributes = {"from": record.from_region, "to": record.to_region,
                      "duration_seconds": f"{total:.3f}"}  # fmt: skip
        if record.HasField("data_loss_bound_bytes"):
            attributes["data_loss_bound_bytes"] = record.data_loss_bound_bytes
        if record.HasField("data_loss_bound_seconds"):
            attributes["data_loss_bound_seconds"] = f"{record.data_loss_bound_seconds:.3f}"
        if not completed:
            attributes["error"] = record.error
        self._node.events.record(
            admin_pb2.EVENT_KIND_FAILOVER_COMPLETED if completed
            else admin_pb2.EVENT_KIND_FAILOVER_ABORTED,
            admin_pb2.SEVERITY_INFO if completed else _CRITICAL,
            region=record.from_region, failover_id=record.failover_id,
            message=f"failover {record.failover_id} "
                    + (f"completed in {total:.2f} s: {record.from_region} -> {record.to_region}"
                       if completed else f"aborted after {total:.2f} s: {record.error}"),
            attributes=attributes,
        )  # fmt: skip
        await self._node.write(
            {KEY: record.SerializeToString(), f"failover/history/{record.failover_id}":
             record.SerializeToString()}
        )  # fmt: skip

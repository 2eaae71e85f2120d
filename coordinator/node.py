"""One coordinator replica: election, and the duties it takes on while it leads.

Every replica campaigns and serves reads. The leader also owns the registry: it accepts agent
streams, evaluates region health every tick, and publishes it to etcd, each write guarded by
its leader key. When leadership is lost it drops all of that at once and closes every agent
stream with NotLeader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from coordinator import keys, maintenance, metrics
from coordinator.commands import CommandDispatcher, CommandFailed
from coordinator.config import CoordinatorConfig
from coordinator.detector import DetectorSettings, RegionState
from coordinator.election import Election
from coordinator.etcd import EtcdError
from coordinator.events import EventLog
from coordinator.failover.machine import FailoverMachine
from coordinator.history import HealthHistory
from coordinator.incidents.keeper import IncidentKeeper
from coordinator.incidents.webhooks import DeliveryStats
from coordinator.leader import Deposed, Leader, OutcomeUnknown, SystemClock
from coordinator.registry import HealthPolicy, Registry
from coordinator.routing.cache import TableCache
from coordinator.routing.publisher import TablePublisher
from coordinator.sessions import Sessions
from coordinator.store import MAX_WRITE_KEYS, Candidate, Store
from latitude.enums import short_name
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

log = logging.getLogger(__name__)

TICK = 0.1
_INFO = admin_pb2.SEVERITY_INFO
_STATE_SEVERITY = {
    RegionState.UNHEALTHY.value: admin_pb2.SEVERITY_CRITICAL,
    RegionState.DEGRADED.value: admin_pb2.SEVERITY_WARNING,
    RegionState.FAILOVER.value: admin_pb2.SEVERITY_WARNING,
}


# Fences that no command made: seen only in the fenced region's reports.
_UNCOMMANDED = {
    common_pb2.FENCE_CAUSE_SELF: "fenced itself: no leader acknowledged its reports, and no "
    "failsafe round was confirmed, for fence_after",
    common_pb2.FENCE_CAUSE_KEEPER: "was fenced by its keeper: its agent was gone past the fence "
    "deadline",
}


def _fenced_itself(database: common_pb2.DatabaseStatus) -> bool:
    return database.fenced and database.fence_cause in _UNCOMMANDED


class CoordinatorNode:
    def __init__(self, config: CoordinatorConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.id = config.node_id
        self.election = Election(store, Candidate(self.id, config.advertised), ttl=config.lease_ttl)
        self.sessions = Sessions()
        self.commands = CommandDispatcher()
        self.registry: Registry | None = None
        self.orchestrator: FailoverMachine | None = None
        # Every replica serves routing from its cache; the leader also publishes the table.
        self.routing = TableCache(store)
        self.publisher: TablePublisher | None = None
        # The event history; ``events.record(...)`` is a no-op except while leading.
        self.events = EventLog(store, self.write)
        # Each region's health over time: recorded while leading, read by every replica.
        self.history = HealthHistory(store, config.regions)
        # Incidents and their webhook deliveries (leader only); the counters outlive terms.
        self.incident_stats = DeliveryStats()
        self._self_fenced: dict[str, bool] = {}  # as last reported, per region
        self._publish_now = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @property
    def is_leader(self) -> bool:
        return self.election.is_leader and self.registry is not None

    def not_leader(self) -> agent_pb2.CoordinatorMessage:
        leader = self.election.leader
        return agent_pb2.CoordinatorMessage(
            not_leader=agent_pb2.NotLeader(
                leader_id=leader.id if leader and leader.id != self.id else "",
                leader_address=leader.address if leader and leader.id != self.id else "",
            )
        )

    def word(self) -> agent_pb2.ClusterWord:
        """The leader's word on the cluster for agents; "failover under way" until known."""
        machine = self.orchestrator
        if machine is None:
            return agent_pb2.ClusterWord(failover_in_progress=True)
        return machine.word()

    def welcome(self) -> agent_pb2.CoordinatorMessage:
        message = agent_pb2.CoordinatorMessage(
            welcome=agent_pb2.Welcome(leader_id=self.id, epoch=self.epoch, word=self.word())
        )
        message.welcome.report_interval.FromNanoseconds(int(self.config.report_interval * 1e9))
        message.welcome.fence_after.FromNanoseconds(int(self.config.fence_after * 1e9))
        message.welcome.peer_probe_interval.FromSeconds(5)
        message.welcome.ack_every = self.config.ack_every
        return message

    async def command(
        self, region: str, command: agent_pb2.Command, *, timeout: float, reason: str = ""
    ) -> agent_pb2.CommandResult:
        """Send ``command`` to the region's agent, as leader; the agent's result."""
        registry = self.registry
        if registry is None or not self.is_leader:
            raise CommandFailed("not the leader")
        session = registry.regions[region].session
        kind = command_name(command.kind)
        try:
            result = await self.commands.send(
                session, command, epoch=self.epoch, timeout=timeout, reason=reason
            )
        except CommandFailed as err:
            metrics.command_result(region, command.kind, None)
            self._command_failed(region, kind, str(err), reason)
            raise
        metrics.command_result(region, command.kind, result)
        if not result.ok:
            self._command_failed(region, kind, result.error, reason)
        return result

    def _command_failed(self, region: str, kind: str, error: str, reason: str) -> None:
        self.events.record(
            admin_pb2.EVENT_KIND_COMMAND_FAILED,
            admin_pb2.SEVERITY_WARNING,
            region=region,
            message=f"{kind} to {region} failed: {error}",
            attributes={"command": kind, "error": error, "reason": reason},
        )

    @property
    def epoch(self) -> int:
        leadership = self.election.leadership
        return leadership.epoch if leadership else 0

    async def run(self) -> None:
        """Campaign and, whenever elected, lead; until cancelled. A core task that ends (it
        crashed: none ends otherwise) ends this too, with its exception, rather than leave a
        replica that answers without an election or a table to follow."""
        self._tasks.append(asyncio.create_task(self.election.run(), name="election"))
        self._tasks.append(asyncio.create_task(self.routing.follow(), name="routing table"))
        try:
            while True:
                elected = asyncio.create_task(self.election.elected.wait())
                await asyncio.wait([elected, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
                _raise_if_ended(self._tasks)
                if not elected.done():
                    elected.cancel()
                    continue
                await self._lead()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _lead(self) -> None:
        policy = HealthPolicy(
            detector=DetectorSettings(
                suspect_after=self.config.suspect_after, fail_after=self.config.fail_after
            ),
            lag_budget_bytes=self.config.lag_budget_bytes,
            lag_budget_seconds=self.config.lag_budget_seconds,
            max_error_rate=self.config.max_error_rate,
        )
        registry = Registry(self.config.regions, policy)
        await self._resume(registry)
        if not await maintenance.restore(self.store, registry):
            log.warning("maintenance flags unknown: stepping down rather than lead without them")
            self.election.step_down()
            return
        self.events.begin(self.epoch)
        self.events.record(
            admin_pb2.EVENT_KIND_LEADER_ELECTED,
            message=f"{self.id} elected leader (epoch {self.epoch})",
            attributes={"leader_id": self.id, "address": self.config.advertised},
        )
        self.registry = registry
        leader = Leader(
            config=self.config,
            clock=SystemClock(),
            agents=self,
            writes=self,
            events=self.events,
            epoch=self.epoch,
            began=time.monotonic(),
            began_wall=time.time(),
        )
        self.orchestrator = FailoverMachine(leader, registry)
        self.publisher = TablePublisher(self, registry, self.orchestrator, self.routing)
        duties = [
            asyncio.create_task(self.publisher.run(), name="routing publisher"),
            asyncio.create_task(self.events.run(), name="events"),
            asyncio.create_task(self._tick(registry), name="tick"),
            asyncio.create_task(self._publish(registry), name="publish"),
            asyncio.create_task(self.orchestrator.run(), name="orchestrator"),
            asyncio.create_task(
                self.history.run_term(
                    lambda: {name: registry.status(name) for name in registry.regions},
                    self._weights,
                    self.write,
                ),
                name="history",
            ),
            asyncio.create_task(
                IncidentKeeper(self.config, self.store, self, self.incident_stats).run(),
                name="incidents",
            ),
        ]
        deposed = asyncio.create_task(self.election.deposed.wait())
        try:
            await asyncio.wait(
                [deposed, *duties, *self._tasks], return_when=asyncio.FIRST_COMPLETED
            )
            # A duty that ended crashed (none ends otherwise): not a hollow leader, a crash.
            _raise_if_ended([*duties, *self._tasks])
        finally:
            self.registry = None
            self.orchestrator = None
            self.publisher = None
            self.sessions.close_all(self.not_leader())
            for task in (deposed, *duties):
                task.cancel()
            await asyncio.gather(deposed, *duties, return_exceptions=True)
            log.info("no longer leader")

    async def _resume(self, registry: Registry) -> None:
        """Start from what the previous leader published, so regions do not flap to PENDING."""
        try:
            published = await self.store.read_prefix(keys.REGIONS)
        except EtcdError as err:
            log.warning("could not read published region health: %s", err)
            return
        now = time.monotonic()
        self._self_fenced.clear()
        for name, value in published.items():
            if name in registry.regions:
                status = admin_pb2.RegionStatus.FromString(value)
                self._self_fenced[name] = _fenced_itself(status.database)
                state = RegionState(short_name(common_pb2.RegionState, status.state))
                record = registry.regions[name]
                record.monitor.resume(now, state, status.state_reason)
                # Until its agent says hello again, what the previous leader knew of it.
                record.hello = agent_pb2.Hello(
                    region=name,
                    agent_id=status.agent_id,
                    location=status.location,
                    capacity=status.capacity,
                    priority=status.priority,
                    endpoints=status.endpoints,
                )

    async def _tick(self, registry: Registry) -> None:
        while True:
            for change in registry.evaluate():
                self._log_change(change)
                self._publish_now.set()
            config = self.config
            self.sessions.end_silent(time.monotonic(), config.fail_after, config.report_interval)
            await asyncio.sleep(TICK)

    def reported(self, region: str, database: common_pb2.DatabaseStatus) -> None:
        """Called by the agent service with every report: a database that fenced itself is
        seen only in its reports."""
        fenced = _fenced_itself(database)
        if fenced and not self._self_fenced.get(region, False):
            cause = short_name(common_pb2.FenceCause, database.fence_cause, lower=True)
            self.events.record(
                admin_pb2.EVENT_KIND_FENCED,
                admin_pb2.SEVERITY_CRITICAL,
                region=region,
                message=f"{region} {_UNCOMMANDED[database.fence_cause]}",
                attributes={"cause": cause},
            )
        self._self_fenced[region] = fenced

    def region_changed(self, change) -> None:
        """Called by the agent service when a report changes a region's state."""
        self._log_change(change)
        self._publish_now.set()

    def _log_change(self, change) -> None:
        if self.publisher is not None:
            self.publisher.changed()
        same = change.before.state == change.after.state
        (log.debug if same else log.info)(
            "region %s: %s -> %s (%s)",
            change.region,
            change.before.state.value,
            change.after.state.value,
            change.after.reason,
        )
        if not same:
            before, after = change.before.state.value, change.after.state.value
            self.events.record(
                admin_pb2.EVENT_KIND_REGION_STATE_CHANGED,
                _STATE_SEVERITY.get(after, _INFO),
                region=change.region,
                message=f"{change.region}: {before} -> {after} ({change.after.reason})",
                attributes={"from": before, "to": after, "reason": change.after.reason},
            )

    async def _publish(self, registry: Registry) -> None:
        """Write changed region health to etcd: at most every TICK, at least every interval."""
        while True:
            try:
                async with asyncio.timeout(self.config.publish_interval):
                    await self._publish_now.wait()
            except TimeoutError:
                pass
            self._publish_now.clear()
            if registry.dirty:
                names, registry.dirty = sorted(registry.dirty), set()
                await self._write_statuses(registry, names)
            await asyncio.sleep(TICK)

    def _weights(self) -> dict[str, float]:
        table = self.routing.table
        return {} if table is None else {r.region: r.weight for r in table.regions}

    async def read(self, name: str) -> bytes | None:
        return await self.store.read(name)

    async def commit(
        self, puts: dict[str, bytes], deletes: Sequence[str] = (), *, within: float = 10.0
    ) -> None:
        """A guarded write whose outcome is known: applied when it returns; Deposed when the
        leader key is not ours (stepping down); OutcomeUnknown when for ``within`` seconds
        etcd neither answered nor, re-read, showed the values written."""
        give_up = time.monotonic() + within
        delay = 0.05
        while True:
            leadership = self.election.leadership
            if leadership is None:
                raise Deposed("no longer the leader")
            try:
                applied = await self.store.write(
                    leadership, puts, deletes, timeout=self.config.lease_ttl / 3
                )
            except EtcdError as err:
                if await self._holds(puts, deletes):
                    return  # the write was applied; only its answer was lost
                if time.monotonic() + delay >= give_up:
                    raise OutcomeUnknown(f"write of {', '.join(puts)} unknown: {err}") from err
                log.warning("write of %s: %s; read back and tried again", ", ".join(puts), err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if not applied:
                log.warning("leader key no longer ours: stepping down")
                self.election.step_down()
                raise Deposed("the leader key is no longer ours")
            return

    async def _holds(self, puts: dict[str, bytes], deletes: Sequence[str]) -> bool:
        """Whether etcd shows every value of a write (False when it cannot be read)."""
        try:
            for name, value in puts.items():
                if await self.store.read(name) != value:
                    return False
            for name in deletes:
                if await self.store.read(name) is not None:
                    return False
        except EtcdError:
            return False
        return True

    async def write(self, puts: dict[str, bytes], deletes: Sequence[str] = ()) -> bool:
        """A guarded write as leader; False (and stepping down) when no longer leader."""
        leadership = self.election.leadership
        if leadership is None:
            return False
        try:
            applied = await self.store.write(
                leadership, puts, deletes, timeout=self.config.lease_ttl / 3
            )
        except EtcdError as err:
            log.warning("write to etcd failed: %s", err)
            return False
        if not applied:
            log.warning("leader key no longer ours: stepping down")
            self.election.step_down()
        return applied

    async def _write_statuses(self, registry: Registry, names: list[str]) -> None:
        for start in range(0, len(names), MAX_WRITE_KEYS):
            chunk = names[start : start + MAX_WRITE_KEYS]
            puts = {f"{keys.REGIONS}/{n}": registry.status(n).SerializeToString() for n in chunk}
            if not await self.write(puts):
                registry.dirty.update(chunk)  # tried again at the next publish, if still leader
                return


def command_name(kind: int) -> str:
    return short_name(agent_pb2.CommandKind, kind)


def _raise_if_ended(tasks) -> None:
    for task in tasks:
        if task.done() and not task.cancelled():
            error = task.exception()
            raise RuntimeError(f"{task.get_name()} ended unexpectedly") from error

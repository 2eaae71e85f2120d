"""The failover state machine without servers: scripted agents, an in-memory store, a fake
clock. Every phase a leader can die in is resumed by a successor reading the record."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from coordinator import keys
from coordinator.commands import CommandFailed
from coordinator.config import CoordinatorConfig
from coordinator.detector import DetectorSettings
from coordinator.failover.machine import FailoverMachine, FailoverRefused
from coordinator.leader import Leader, OutcomeUnknown
from coordinator.registry import HealthPolicy, Registry
from latitude.enums import short_name
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
K = agent_pb2.CommandKind
PRIMARY, STANDBY = common_pb2.DATABASE_ROLE_PRIMARY, common_pb2.DATABASE_ROLE_STANDBY
SWITCHOVER = admin_pb2.FAILOVER_KIND_SWITCHOVER
AUTOMATIC = admin_pb2.FAILOVER_KIND_AUTOMATIC
P = admin_pb2.FailoverPhase


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


@dataclass
class Store:
    """In-memory etcd for the leader's writes; ``unknown`` answers that many commits with an
    unknown outcome (applied or not, as ``applied_anyway`` says)."""

    data: dict[str, bytes] = field(default_factory=dict)
    unknown: int = 0
    applied_anyway: bool = True

    async def write(self, puts, deletes=()) -> bool:
        self.data.update(puts)
        for name in deletes:
            self.data.pop(name, None)
        return True

    async def commit(self, puts, deletes=(), *, within: float = 10.0) -> None:
        if self.unknown:
            self.unknown -= 1
            if self.applied_anyway:
                self.data.update(puts)
            raise OutcomeUnknown("etcd did not answer")
        await self.write(puts, deletes)

    async def read(self, name: str) -> bytes | None:
        return self.data.get(name)


class Events:
    def __init__(self) -> None:
        self.recorded: list[admin_pb2.Event] = []

    def record(
        self,
        kind,
        severity=admin_pb2.SEVERITY_INFO,
        *,
        region="",
        message="",
        attributes=None,
        failover_id="",
    ) -> None:
        self.recorded.append(admin_pb2.Event(kind=kind, region=region, message=message))

    def kinds(self) -> list[str]:
        return [short_name(admin_pb2.EventKind, e.kind) for e in self.recorded]


class Agents:
    """Every region's agent, scripted: commands change what the registry's reports say, as
    the agents' next reports would."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.sent: list[tuple[str, str]] = []
        self.unreachable: set[str] = set()
        self.failing: dict[int, str] = {}  # command kind -> error
        self.confirmed_ago: dict[str, float] = {}
        self.stopped_at_once = False  # FENCE had to stop the server at once: no final position
        # (region, kind): sent on a stream that stays open, and never answered (the agent is
        # dead or cut off, its connection half-open): the command times out.
        self.unanswered: set[tuple[str, str]] = set()
        # What an agent sees when it differs from its last report (the registry's view).
        self.seen: dict[str, common_pb2.DatabaseStatus] = {}

    def db(self, region: str) -> common_pb2.DatabaseStatus:
        return self.registry.regions[region].report.database

    async def command(self, region, command, *, timeout, reason=""):
        kind = short_name(K, command.kind)
        self.sent.append((region, kind))
        if region in self.unreachable:
            raise CommandFailed(f"{region}: no answer")
        if (region, kind) in self.unanswered:
            await asyncio.sleep(timeout)
            raise CommandFailed(f"{kind} to {region}: no answer within {timeout:.1f} s")
        result = agent_pb2.CommandResult(command_id=command.command_id, ok=True)
        if command.kind in self.failing:
            result.ok, result.error = False, self.failing[command.kind]
        else:
            self._act(region, command, result)
        result.observed.CopyFrom(self.seen.pop(region, None) or self.db(region))
        return result

    def _act(self, region, command, result) -> None:
        db = self.db(region)
        if command.kind == K.COMMAND_KIND_FENCE:
            db.fenced, db.fence_cause = True, common_pb2.FENCE_CAUSE_COMMAND
            result.fence_lsn = 0 if self.stopped_at_once else db.current_lsn
        elif command.kind == K.COMMAND_KIND_UNFENCE:
            db.fenced, db.fence_cause = False, common_pb2.FENCE_CAUSE_UNSPECIFIED
        elif command.kind == K.COMMAND_KIND_PROMOTE:
            assert db.replayed_lsn >= command.promote.min_replayed_lsn
            db.role, db.current_lsn, db.timeline_id = PRIMARY, db.replayed_lsn, 2
            db.wal_receiver_streaming = False
        elif command.kind == K.COMMAND_KIND_STOP_CONFIRMING:
            if region in self.confirmed_ago:
                result.last_confirmed_seconds_ago = self.confirmed_ago[region]
        elif command.kind in (K.COMMAND_KIND_FOLLOW, K.COMMAND_KIND_REJOIN):
            db.role, db.fenced = STANDBY, False

    def kinds_to(self, region: str) -> list[str]:
        return [kind for r, kind in self.sent if r == region]


class Cluster:
    """A registry with us-east-1 primary and two streaming standbys, and a leader over it."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.store = Store({keys.WRITE_REGION: b"us-east-1"})
        self.events = Events()
        policy = HealthPolicy(detector=DetectorSettings(suspect_after=1.5, fail_after=3.0))
        self.registry = Registry(REGIONS, policy, clock=self.clock.monotonic, wall=self.clock.wall)
        self.agents = Agents(self.registry)
        self.config = CoordinatorConfig(fence_after=0.02, fail_after=3.0)
        for name in REGIONS:
            self.attach(name)
            self.report(name)

    def attach(self, name: str) -> None:
        hello = agent_pb2.Hello(
            region=name,
            agent_id=f"{name}/1",
            capacity=100,
            priority=100,
            endpoints=[
                common_pb2.Endpoint(
                    name="postgres",
                    kind=common_pb2.ENDPOINT_KIND_POSTGRES,
                    address=f"{name}.db:5432",
                )
            ],
        )
        self.registry.attach(hello, object())

    def report(self, name: str, **database) -> None:
        record = self.registry.regions[name]
        if record.report is not None and not database:
            db = record.report.database
        elif name == "us-east-1":
            db = common_pb2.DatabaseStatus(role=PRIMARY, current_lsn=5000, timeline_id=1)
        else:
            db = common_pb2.DatabaseStatus(
                role=STANDBY,
                replayed_lsn=5000,
                received_lsn=5000,
                timeline_id=1,
                wal_receiver_streaming=True,
                upstream_address="us-east-1.db:5432",
            )
        for key, value in database.items():
            setattr(db, key, value)
        self.registry.report(record, agent_pb2.Report(sequence=record.sequence + 1, database=db))

    def leader(self) -> FailoverMachine:
        leader = Leader(
            config=self.config,
            clock=self.clock,
            agents=self.agents,
            writes=self.store,
            events=self.events,
            epoch=7,
            began=self.clock.now,
            began_wall=self.clock.wall(),
        )
        return FailoverMachine(leader, self.registry)

    def record(self) -> admin_pb2.FailoverStatus:
        return admin_pb2.FailoverStatus.FromString(self.store.data[keys.FAILOVER])


async def run_until(machine: FailoverMachine, done, timeout: float = 5.0) -> None:
    """Run the leader's loop until ``done()``; then stop it."""
    task = asyncio.create_task(machine.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():
                assert not task.done(), task.exception()
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_switchover_fences_promotes_past_the_fence_position_and_repoints():
    cluster = Cluster()
    machine = cluster.leader()
    machine.write_region, machine.resumed = "us-east-1", True
    record = await machine.start(SWITCHOVER, "planned", target="eu-west-1")
    assert record.phase == P.Value("FAILOVER_PHASE_COMPLETED"), record.error
    assert cluster.store.data[keys.WRITE_REGION] == b"eu-west-1"
    assert record.fenced_by_command and record.old_primary_lsn == 5000
    assert record.data_loss_bound_bytes == 0
    # The former primary rejoins in the background.
    await run_until(machine, lambda: cluster.agents.kinds_to("us-east-1") == ["FENCE", "REJOIN"])
    # Asked afresh before the checks, and again before the choice.
    assert cluster.agents.kinds_to("eu-west-1") == ["REPORT_NOW", "REPORT_NOW", "PROMOTE"]
    assert "FOLLOW" in cluster.agents.kinds_to("ap-southeast-1")
    assert cluster.events.kinds()[0] == "FAILOVER_STARTED"


async def test_a_failover_completes_while_the_former_primarys_rejoin_goes_unanswered():
    """A dead or cut-off agent's stream can stay open (half-open TCP) for a while: a command
    sent on it waits its whole timeout. The failover must not wait for the former primary's
    rejoin, nor for one standby's FOLLOW after another."""
    cluster = Cluster()
    cluster.agents.unanswered |= {("us-east-1", "REJOIN"), ("ap-southeast-1", "FOLLOW")}
    machine = cluster.leader()
    machine.write_region, machine.resumed = "us-east-1", True
    try:
        async with asyncio.timeout(7.0):  # FOLLOW's own 5 s, and no more
            record = await machine.start(SWITCHOVER, "planned", target="eu-west-1")
        assert record.phase == P.Value("FAILOVER_PHASE_COMPLETED"), record.error
        assert cluster.store.data[keys.WRITE_REGION] == b"eu-west-1"
        await run_until(machine, lambda: ("us-east-1", "REJOIN") in cluster.agents.sent)
    finally:
        await machine.cancel_rejoins()


async def test_a_switchover_to_a_region_in_maintenance_is_refused_before_any_fence():
    cluster = Cluster()
    cluster.registry.regions["eu-west-1"].monitor.maintenance = True
    machine = cluster.leader()
    machine.write_region = "us-east-1"
    with pytest.raises(FailoverRefused, match="eu-west-1 cannot be promoted: in maintenance"):
        await machine.start(SWITCHOVER, "planned", target="eu-west-1")
    # Nothing fenced, nothing changed: the candidates were only asked where they stand.
    assert {kind for _, kind in cluster.agents.sent} == {"REPORT_NOW"}
    assert cluster.agents.kinds_to("us-east-1") == []
    assert keys.FAILOVER not in cluster.store.data


async def test_a_switchover_is_refused_while_the_primarys_agent_is_not_connected():
    """A leader elected a moment ago may not have heard the primary's agent yet: a switchover
    is refused before anything is recorded, not started only to abort on its FENCE."""
    cluster = Cluster()
    cluster.registry.detach("us-east-1", cluster.registry.regions["us-east-1"].session)
    machine = cluster.leader()
    machine.write_region, machine.resumed = "us-east-1", True
    with pytest.raises(FailoverRefused, match="us-east-1's agent is not connected to this leader"):
        await machine.start(SWITCHOVER, "planned", target="eu-west-1")
    assert cluster.agents.sent == [] and keys.FAILOVER not in cluster.store.data
    assert cluster.events.kinds() == []


async def test_an_abort_after_the_fence_lifts_it():
    cluster = Cluster()
    cluster.agents.failing[K.COMMAND_KIND_PROMOTE] = "promotion did not finish"
    machine = cluster.leader()
    machine.write_region = "us-east-1"
    record = await machine.start(SWITCHOVER, "planned", target="eu-west-1")
    assert record.phase == P.Value("FAILOVER_PHASE_ABORTED")
    assert "promotion did not finish" in record.error
    assert cluster.agents.kinds_to("us-east-1") == ["FENCE", "UNFENCE"]
    assert not cluster.agents.db("us-east-1").fenced
    assert cluster.store.data[keys.WRITE_REGION] == b"us-east-1"


@pytest.mark.parametrize(
    "phase",
    [
        "FAILOVER_PHASE_FENCING",
        "FAILOVER_PHASE_SELECTING",
        "FAILOVER_PHASE_PROMOTING",
        "FAILOVER_PHASE_REPOINTING",
    ],
)
async def test_a_new_leader_resumes_a_switchover_in_every_phase(phase):
    cluster = Cluster()
    record = admin_pb2.FailoverStatus(
        failover_id="f1",
        kind=SWITCHOVER,
        phase=P.Value(phase),
        from_region="us-east-1",
        to_region="eu-west-1",
        reason="planned",
    )
    if phase != "FAILOVER_PHASE_FENCING":  # the predecessor fenced before it died
        cluster.agents.db("us-east-1").fenced = True
        record.fenced_by_command, record.old_primary_lsn = True, 5000
        record.steps["fenced"].FromSeconds(1)
    if phase == "FAILOVER_PHASE_REPOINTING":  # and promoted
        cluster.report("eu-west-1", role=PRIMARY, current_lsn=5000, wal_receiver_streaming=False)
        record.steps["promoted"].FromSeconds(2)
    cluster.store.data[keys.FAILOVER] = record.SerializeToString()
    machine = cluster.leader()
    await run_until(machine, lambda: cluster.record().phase == P.Value("FAILOVER_PHASE_COMPLETED"))
    assert cluster.store.data[keys.WRITE_REGION] == b"eu-west-1"
    assert cluster.agents.kinds_to("eu-west-1").count("PROMOTE") == (
        0 if phase == "FAILOVER_PHASE_REPOINTING" else 1
    )
    assert cluster.agents.kinds_to("us-east-1").count("FENCE") == (
        1 if phase == "FAILOVER_PHASE_FENCING" else 0
    )
    assert machine.write_region == "eu-west-1" and machine.word().write_region == "eu-west-1"


async def test_a_resumed_promotion_finds_the_target_promoted_and_fenced_and_unfences_it():
    """The leader died once PROMOTE was carried out; unacknowledged, the new primary fenced
    itself, and the successor resumes at once, its registry still holding the target's last
    report as a standby. The PROMOTE it sends is refused; what the agent saw says the target
    is the new primary, so its fence is lifted and the failover completes."""
    cluster = Cluster()
    record = admin_pb2.FailoverStatus(
        failover_id="f1",
        kind=AUTOMATIC,
        phase=P.Value("FAILOVER_PHASE_PROMOTING"),
        from_region="us-east-1",
        to_region="eu-west-1",
        reason="us-east-1 failed",
    )
    record.steps["fenced"].FromSeconds(1)
    cluster.store.data[keys.FAILOVER] = record.SerializeToString()
    cluster.agents.failing[K.COMMAND_KIND_PROMOTE] = (
        "this is a fenced primary: PROMOTE never unfences"
    )
    cluster.agents.seen["eu-west-1"] = common_pb2.DatabaseStatus(
        role=PRIMARY, fenced=True, current_lsn=5000, timeline_id=2
    )
    machine = cluster.leader()
    done = (P.Value("FAILOVER_PHASE_COMPLETED"), P.Value("FAILOVER_PHASE_ABORTED"))
    await run_until(machine, lambda: cluster.record().phase in done)
    assert cluster.record().phase == P.Value("FAILOVER_PHASE_COMPLETED"), cluster.record().error
    assert cluster.agents.kinds_to("eu-west-1")[:2] == ["PROMOTE", "UNFENCE"]
    assert cluster.store.data[keys.WRITE_REGION] == b"eu-west-1"


async def test_a_new_leader_does_not_fail_over_a_primary_it_has_not_heard_yet():
    cluster = Cluster()
    for name in REGIONS:  # no agent has reconnected to this leader yet
        cluster.registry.detach(name, cluster.registry.regions[name].session)
    cluster.clock.now += 10  # long silence, but this leader began just now
    machine = cluster.leader()
    cluster.clock.now += 4  # past fail_after: its silence counts, but no standby reports
    await run_until(machine, lambda: cluster.events.recorded, timeout=2.0)
    assert keys.FAILOVER not in cluster.store.data
    assert "no standby reports now" in cluster.events.recorded[0].message
    assert cluster.agents.sent == []


async def test_an_unreachable_primary_is_waited_out_counting_failsafe_confirmations():
    cluster = Cluster()
    machine = cluster.leader()
    machine.write_region = "us-east-1"
    cluster.agents.unreachable.add("us-east-1")
    cluster.agents.confirmed_ago = {"eu-west-1": 0.5}  # it confirmed the old primary lately
    cluster.registry.regions["us-east-1"].acked_at = cluster.clock.now - 1.0
    record = await machine.start(AUTOMATIC, "us-east-1 failed")
    assert record.phase == P.Value("FAILOVER_PHASE_COMPLETED"), record.error
    assert set(record.failsafe_confirmations) == {"eu-west-1"}
    # Acknowledged at now-1, confirmed at now-0.5 (an upper bound): the later one counts.
    confirmed = record.failsafe_confirmations["eu-west-1"].ToNanoseconds() / 1e9
    deadline = record.fence_deadline.ToNanoseconds() / 1e9
    assert deadline == pytest.approx(confirmed + cluster.config.fence_after + 0.5)
    assert not record.fenced_by_command and not record.HasField("data_loss_bound_bytes")
    assert cluster.agents.kinds_to("eu-west-1")[0] == "STOP_CONFIRMING"


async def test_a_write_region_whose_commit_outcome_is_unknown_is_resumed_not_completed():
    cluster = Cluster()
    machine = cluster.leader()
    machine.write_region, machine.resumed = "us-east-1", True
    cluster.store.applied_anyway = False
    record = admin_pb2.FailoverStatus(
        failover_id="f2",
        kind=SWITCHOVER,
        phase=P.Value("FAILOVER_PHASE_REPOINTING"),
        from_region="us-east-1",
        to_region="eu-west-1",
    )
    cluster.report("eu-west-1", role=PRIMARY, current_lsn=5000, wal_receiver_streaming=False)
    cluster.store.data[keys.FAILOVER] = record.SerializeToString()
    cluster.store.unknown = 1  # the write region's commit: unknown, and not applied
    await machine._carry_out(record)
    assert cluster.store.data[keys.WRITE_REGION] == b"us-east-1"
    assert cluster.record().phase == P.Value("FAILOVER_PHASE_REPOINTING")  # not COMPLETED
    assert not machine.resumed  # agents hear "failover under way" until it is resumed
    # Then it is resumed from the record and completes.
    await run_until(machine, lambda: cluster.record().phase == P.Value("FAILOVER_PHASE_COMPLETED"))
    assert cluster.store.data[keys.WRITE_REGION] == b"eu-west-1"


async def test_a_new_leaders_silence_counts_from_its_election_not_from_never():
    cluster = Cluster()
    # The primary's agent has not reconnected to this leader yet; the standbys have, and
    # their WAL receivers happen to be between attempts.
    cluster.registry.detach("us-east-1", cluster.registry.regions["us-east-1"].session)
    cluster.registry.regions["us-east-1"].monitor.arrivals.reset()
    for name in ("eu-west-1", "ap-southeast-1"):
        cluster.report(name, wal_receiver_streaming=False)
    machine = cluster.leader()
    machine.write_region, machine.resumed = "us-east-1", True
    cluster.clock.now += 1.0  # well within fail_after of this leadership's start
    await machine._watch()
    assert keys.FAILOVER not in cluster.store.data and cluster.agents.sent == []
    cluster.clock.now += 2.5  # now silent for fail_after, with standbys saying so
    for name in ("eu-west-1", "ap-southeast-1"):
        cluster.report(name, wal_receiver_streaming=False)
    assert machine.primary_failed()[0]


async def test_a_switchover_whose_fence_has_no_final_position_aborts_and_lifts_it():
    cluster = Cluster()
    cluster.agents.stopped_at_once = True
    machine = cluster.leader()
    machine.write_region = "us-east-1"
    record = await machine.start(SWITCHOVER, "planned", target="eu-west-1")
    assert record.phase == P.Value("FAILOVER_PHASE_ABORTED")
    assert "final WAL position is unknown" in record.error
    assert cluster.agents.kinds_to("us-east-1") == ["FENCE", "UNFENCE"]
    assert "PROMOTE" not in cluster.agents.kinds_to("eu-west-1")


async def test_a_failover_fenced_without_a_final_position_claims_no_exact_bound():
    cluster = Cluster()
    cluster.agents.stopped_at_once = True
    cluster.report("eu-west-1", replayed_lsn=4000, received_lsn=4000)
    machine = cluster.leader()
    machine.write_region = "us-east-1"
    record = await machine.start(AUTOMATIC, "us-east-1's database is down")
    assert record.phase == P.Value("FAILOVER_PHASE_COMPLETED"), record.error
    assert record.fenced_by_command and not record.old_primary_lsn_final
    assert not record.HasField("data_loss_bound_bytes")  # not "0 lost"
    assert record.old_primary_lsn == 5000  # its last reported position stands


async def test_a_failover_that_cannot_be_confirmed_is_alerted_once_not_every_tick():
    cluster = Cluster()
    cluster.registry.detach("us-east-1", cluster.registry.regions["us-east-1"].session)
    machine = cluster.leader()
    machine.write_region, machine.resumed = "us-east-1", True
    for _ in range(20):  # two seconds of ticks, the silence growing all along
        cluster.clock.now += 0.1 if cluster.clock.now > 1003 else 3.5
        for name in ("eu-west-1", "ap-southeast-1"):  # still streaming from it
            cluster.report(name)
        await machine._watch()
    alerts = [e for e in cluster.events.recorded if e.kind == admin_pb2.EVENT_KIND_ALERT]
    assert len(alerts) == 1, [e.message for e in alerts]
    assert "still stream WAL from it" in alerts[0].message


async def test_a_leader_that_knows_no_write_region_says_so_rather_than_assess_no_region():
    """Found by fuzzing Failover on a fresh leader: a KeyError answered UNKNOWN."""
    machine = Cluster().leader()
    assert machine.primary_failed() == (False, "no write region is known yet")
    with pytest.raises(FailoverRefused, match="no write region is known yet"):
        await machine.start(admin_pb2.FAILOVER_KIND_MANUAL, "operator", forced=True)

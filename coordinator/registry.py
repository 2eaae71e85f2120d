"""The leader's knowledge of every region: its agent, its latest report, its health.

No I/O here. The agent service feeds it Hellos and Reports; the leader's tick calls
``evaluate``; the publisher turns ``status`` into what etcd (and so every replica) shows.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from coordinator.detector import Assessment, DetectorSettings, RegionMonitor, RegionState
from coordinator.lag import PrimaryHistory
from latitude.errors import LatitudeError
from latitude.table import human_bytes
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

_PROTO_STATE = {
    state: common_pb2.RegionState.Value(f"REGION_STATE_{state.value}") for state in RegionState
}


def _is_writable_primary(report: agent_pb2.Report) -> bool:
    db = report.database
    return db.role == common_pb2.DATABASE_ROLE_PRIMARY and not db.fenced


class RegionHeld(LatitudeError):
    """Another agent already speaks for the region."""


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    lag_budget_bytes: int = 64 * 1024 * 1024
    lag_budget_seconds: float = 300.0
    max_error_rate: float = 0.05


@dataclass
class RegionRecord:
    name: str
    monitor: RegionMonitor
    agent_id: str = ""
    session: object | None = None  # the open stream that speaks for the region
    hello: agent_pb2.Hello | None = None
    report: agent_pb2.Report | None = None
    report_wall: float = 0.0  # when the last report arrived (leader's wall clock)
    sequence: int = 0
    # When this leader last acknowledged one of the region's reports (leader's wall clock):
    # the agent of a primary fences itself fence_after after the report it acknowledges.
    acked_wall: float = 0.0
    # The same moment on the leader's monotonic clock (None: nothing acknowledged yet).
    acked_at: float | None = None
    # Since when (monotonic) its reports have said the database is DOWN, without a break.
    down_since: float | None = None
    # How far its agent's clock is behind the leader's (ns), as the smallest gap between a
    # report's sent_at and its arrival over the last reports: transit only ever adds to it.
    gaps_ns: deque[int] = field(default_factory=lambda: deque(maxlen=20))

    @property
    def clock_offset_ns(self) -> int:
        return min(self.gaps_ns) if self.gaps_ns else 0


@dataclass(frozen=True, slots=True)
class StateChange:
    region: str
    before: Assessment
    after: Assessment


class Registry:
    def __init__(
        self,
        regions: Iterable[str],
        policy: HealthPolicy = HealthPolicy(),
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._wall = wall
        now = clock()
        self.regions = {
            name: RegionRecord(name, RegionMonitor(policy.detector, now))
            for name in sorted(regions)
        }
        # Regions whose status changed since the last publish.
        self.dirty: set[str] = set(self.regions)
        self._primary: RegionRecord | None = None
        self._history = PrimaryHistory()

    def attach(self, hello: agent_pb2.Hello, session: object) -> RegionRecord:
        """A validated Hello opens a session for its region; RegionHeld while another stream
        holds it.

        A held stream that still reports is never swapped, whatever the new Hello says: agent
        ids are public (GetStatus shows them), so the same agent_id proves nothing, and the
        certificate (checked before this) is the same for every stream of the region. Once the
        held stream has gone quiet past the detector's suspect deadline, a new stream takes the
        region over, from the same agent (back from a network blip; its old stream died
        half-open) or another (restarted). The real agent is so locked out for at most that
        deadline after its old stream's last report.
        """
        record = self.regions[hello.region]
        now = self._clock()
        if (
            record.session is not None
            and record.session is not session
            and not record.monitor.arrivals.overdue(now)
        ):
            raise RegionHeld(
                f"region {hello.region} is already reported by agent {record.agent_id!r} on "
                f"a stream that is still reporting (a new stream may take over once it has "
                f"been silent for {record.monitor.arrivals.deadline():.1f} s)"
            )
        if record.agent_id != hello.agent_id:
            record.monitor.arrivals.reset()
            record.gaps_ns.clear()  # another process, perhaps on another host's clock
        record.agent_id = hello.agent_id
        record.session = session
        record.hello = hello
        record.sequence = 0
        self.dirty.add(record.name)
        return record

    def detach(self, region: str, session: object) -> None:
        record = self.regions[region]
        if record.session is session:
            record.session = None
            self.dirty.add(region)

    def report(self, record: RegionRecord, report: agent_pb2.Report) -> StateChange | None:
        record.report = report
        arrived = self._wall()
        if report.HasField("sent_at"):
            record.gaps_ns.append(int(arrived * 1e9) - report.sent_at.ToNanoseconds())
        if _is_writable_primary(report):
            if self._primary is not record:
                self._history.clear()
            self._primary = record
            self._history.record(report.database, record.clock_offset_ns)
        elif self._primary is record:
            self._primary = None
            self._history.clear()
        record.report_wall = arrived
        record.sequence = report.sequence
        now = self._clock()
        if report.database.role == common_pb2.DATABASE_ROLE_DOWN:
            record.down_since = now if record.down_since is None else record.down_since
        else:
            record.down_since = None
        before = record.monitor.current
        after = record.monitor.report(now, self._problems(record))
        self.dirty.add(record.name)
        return None if after is before else StateChange(record.name, before, after)

    def evaluate(self) -> list[StateChange]:
        """Re-assess every region at the current time: silence turns into UNHEALTHY here (or
        DEGRADED, when standbys that report now still stream WAL from its database)."""
        now = self._clock()
        # Who streams WAL from whom is read only for a region whose reports are overdue (the
        # detector's silence branch; one that never reported is PENDING before that), so it
        # is worked out only when one is: not ten times a second over every region while all
        # of them report.
        alive: dict[str, str] | None = None
        changes = []
        for record in self.regions.values():
            monitor = record.monitor
            arrivals = monitor.arrivals
            if arrivals.last_arrival is not None and arrivals.overdue(now):
                if alive is None:
                    alive = self._streamed_from(now)
                monitor.database_alive = alive.get(record.name, "")
            else:
                monitor.database_alive = ""
            before = record.monitor.current
            after = record.monitor.evaluate(now)
            if after is not before:
                self.dirty.add(record.name)
                changes.append(StateChange(record.name, before, after))
        return changes

    def _streamed_from(self, now: float) -> dict[str, str]:
        """Regions whose database a standby reporting now streams WAL from, with the evidence."""
        by_address = {}
        for record in self.regions.values():
            for endpoint in record.hello.endpoints if record.hello is not None else ():
                if endpoint.kind == common_pb2.ENDPOINT_KIND_POSTGRES:
                    by_address[endpoint.address] = record.name
        streams: dict[str, list[str]] = {}
        for record in self.regions.values():
            db = record.report.database if record.report is not None else None
            if (
                db is None
                or db.role != common_pb2.DATABASE_ROLE_STANDBY
                or not db.wal_receiver_streaming
                or record.monitor.arrivals.overdue(now)
            ):
                continue
            upstream = by_address.get(db.upstream_address)
            if upstream is not None and upstream != record.name:
                streams.setdefault(upstream, []).append(record.name)
        return {
            name: f"{', '.join(sorted(names))} still stream WAL from its database"
            for name, names in streams.items()
        }

    def primary(self) -> RegionRecord | None:
        """The region whose database last reported itself a writable primary."""
        return self._primary

    def lag(self, record: RegionRecord) -> tuple[int, float]:
        """(bytes, seconds) a standby region is behind the primary; (0, 0) for the others."""
        report = record.report
        if report is None or report.database.role != common_pb2.DATABASE_ROLE_STANDBY:
            return 0, 0.0
        return self._history.lag(report.database, record.clock_offset_ns)

    def _problems(self, record: RegionRecord) -> list[str]:
        report = record.report
        db = report.database
        problems = []
        if db.role == common_pb2.DATABASE_ROLE_DOWN:
            problems.append(f"database down: {db.probe_error or 'no answer'}")
        elif db.role == common_pb2.DATABASE_ROLE_UNKNOWN:
            problems.append(f"database not answering: {db.probe_error or 'unknown role'}")
        elif db.role == common_pb2.DATABASE_ROLE_STANDBY:
            if not db.wal_receiver_streaming:
                problems.append("standby not streaming WAL")
            lag, seconds = self.lag(record)
            if lag > self._policy.lag_budget_bytes:
                problems.append(f"replica lag {human_bytes(lag)} over budget")
            if seconds > self._policy.lag_budget_seconds:
                problems.append(f"replica lag {seconds:.0f} s over budget")
        problems += [f"check {c.name} failing: {c.error}" for c in report.checks if not c.ok]
        if report.error_rate > self._policy.max_error_rate:
            problems.append(f"error rate {report.error_rate:.0%}")
        return problems

    def status(self, name: str) -> admin_pb2.RegionStatus:
        record = self.regions[name]
        assessment = record.monitor.current
        status = admin_pb2.RegionStatus(
            region=name,
            state=_PROTO_STATE[assessment.state],
            state_reason=assessment.reason,
            agent_id=record.agent_id,
            agent_connected=record.session is not None,
        )
        if record.hello is not None:
            status.capacity = record.hello.capacity
            status.priority = record.hello.priority
            status.location.CopyFrom(record.hello.location)
            status.endpoints.extend(record.hello.endpoints)
            status.agent_address = record.hello.agent_address
        report = record.report
        if report is not None:
            status.last_report_at.FromNanoseconds(int(record.report_wall * 1e9))
            status.database.CopyFrom(report.database)
            status.checks.extend(report.checks)
            status.replay_lag_bytes, status.replay_lag_seconds = self.lag(record)
            status.capacity_utilization = report.capacity_utilization
            status.response_time_seconds = report.response_time_seconds
            status.error_rate = report.error_rate
            status.peers.extend(report.peers)
        return status

    def states(self) -> dict[str, RegionState]:
        return {name: r.monitor.current.state for name, r in self.regions.items()}

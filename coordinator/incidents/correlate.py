"""Events in, incident changes out: the correlation, pure and driven by the events' own times.

One incident per cause. An event joins the incident it belongs to, found in this order:

1. its failover: an incident that already holds the event's ``failover_id``;
2. its region: an open incident whose regions include the event's region;
3. a cascade: an opening signal (or a fence, promotion, rejoin or election) belongs to the
   newest open incident opened less than ``group_window`` seconds ago, or whose failover runs
   or finished less than ``settle`` seconds ago: the standbys of a failed primary stop
   streaming, and standbys repointed to a new primary stumble for a moment;
4. flapping: an opening signal for a region (or a cluster-wide cause) whose incident was
   resolved less than ``reopen_window`` seconds ago reopens that incident;
5. otherwise an opening signal opens a new incident, and anything else is left out.

An incident remembers what it waits for (``awaiting``: a region healthy again, a failover
finished, a fence lifted, synchronous replication restored, elections quiet) and resolves
when nothing is left. Its severity is the highest it reached; a planned switchover's warnings
count as information, so a switchover alone pages nobody.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from latitude.v1 import admin_pb2

_INFO = admin_pb2.SEVERITY_INFO
_WARNING = admin_pb2.SEVERITY_WARNING
_CRITICAL = admin_pb2.SEVERITY_CRITICAL
_OPEN = admin_pb2.INCIDENT_STATE_OPEN
_RESOLVED = admin_pb2.INCIDENT_STATE_RESOLVED
K = admin_pb2  # EVENT_KIND_* constants

_UNWELL = ("UNHEALTHY", "DEGRADED", "FAILOVER")
_WELL = ("HEALTHY", "MAINTENANCE")
# Kinds that, in a cascade, belong to it whatever region they name.
_CASCADE = (
    K.EVENT_KIND_FENCED,
    K.EVENT_KIND_PROMOTED,
    K.EVENT_KIND_REJOINED,
    K.EVENT_KIND_LEADER_ELECTED,
)
_SYNC = "synchronous replication restored on "
_STORM = "elections quiet"
_CONSISTENT = "data consistent (latitude verify)"


@dataclass(frozen=True, slots=True)
class CorrelationSettings:
    # An incident resolved less than this long ago is reopened by its cause's return.
    reopen_window: float = 300.0
    # Signals this soon after an incident opened belong to it (a cascade)...
    group_window: float = 30.0
    # ... as do those while its failover runs, and this long after it finished.
    settle: float = 30.0
    # This many leader elections within storm_window make a leader change storm; it is over
    # once storm_window passes without one.
    storm_count: int = 3
    storm_window: float = 60.0
    # Timeline entries kept per incident: the first ``timeline_head`` and the newest.
    timeline_limit: int = 100
    timeline_head: int = 10


@dataclass(slots=True)
class Ledger:
    """What the correlation remembers besides the incidents, kept beside them in etcd."""

    # The newest event sequence already correlated.
    cursor: int = 0
    # Every region's state as the last REGION_STATE_CHANGED said.
    region_states: dict[str, str] = field(default_factory=dict)
    # Recent leader elections (event times), for storms.
    elections: list[float] = field(default_factory=list)

    def encode(self) -> bytes:
        data = {
            "cursor": self.cursor,
            "region_states": self.region_states,
            "elections": self.elections,
        }
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Ledger:
        data = json.loads(raw)
        return cls(
            int(data["cursor"]),
            {str(k): str(v) for k, v in data.get("region_states", {}).items()},
            [float(t) for t in data.get("elections", [])],
        )


@dataclass(frozen=True, slots=True)
class Signal:
    """What an event means for incidents: the cause it would open (empty: it opens nothing),
    how much it matters, and what it adds to or removes from an incident's ``awaiting``."""

    cause: str = ""
    severity: int = _INFO
    awaits: tuple[str, ...] = ()
    satisfies: tuple[str, ...] = ()


def healthy(region: str) -> str:
    return f"{region} healthy"


def finished(failover_id: str) -> str:
    return f"failover {failover_id} finished"


def unfenced(region: str) -> str:
    return f"{region} unfenced"


def synchronous(region: str) -> str:
    return _SYNC + region


def interpret(event: admin_pb2.Event) -> Signal:
    """The signal an event carries."""
    kind, region, attributes = event.kind, event.region, event.attributes
    if kind == K.EVENT_KIND_REGION_STATE_CHANGED:
        to = attributes.get("to", "")
        if to in _WELL:
            return Signal(satisfies=(healthy(region), unfenced(region)))
        if to == "UNHEALTHY":
            return Signal("region_unhealthy", _CRITICAL, (healthy(region),))
        if to == "DEGRADED":
            reason = attributes.get("reason", "")
            cause = "replica_lag" if "lag" in reason and "budget" in reason else "region_degraded"
            return Signal(cause, _WARNING, (healthy(region),))
        if to == "FAILOVER":
            return Signal("failover", _WARNING, (healthy(region),))
        return Signal()
    if kind == K.EVENT_KIND_FAILOVER_STARTED:
        severity = _INFO if attributes.get("kind") == "switchover" else event.severity
        return Signal("failover", severity, (finished(event.failover_id),))
    if kind in (K.EVENT_KIND_FAILOVER_COMPLETED, K.EVENT_KIND_FAILOVER_ABORTED):
        return Signal(severity=event.severity, satisfies=(finished(event.failover_id),))
    if kind == K.EVENT_KIND_FENCED:
        return Signal("fence", event.severity, (unfenced(region),))
    if kind in (K.EVENT_KIND_UNFENCED, K.EVENT_KIND_REJOINED):
        return Signal(satisfies=(unfenced(region),))
    if kind == K.EVENT_KIND_ALERT:
        return _alert(event)
    if kind in (K.EVENT_KIND_PROMOTED, K.EVENT_KIND_COMMAND_FAILED):
        return Signal(severity=event.severity)
    if kind == K.EVENT_KIND_CONSISTENCY_CHECKED and attributes.get("check") == "data":
        return _data_check(event)
    # Connections, elections (storms are counted apart), strategy, maintenance, checks:
    # entries of an incident they fall into, never an opening.
    return Signal(severity=_INFO)


def _data_check(event: admin_pb2.Event) -> Signal:
    """A data-level check (latitude verify): rows unlike across regions open a divergence that
    only a later clean check closes; a check that agreed closes it."""
    if event.attributes.get("consistent") == "true":
        return Signal(satisfies=(_CONSISTENT,))
    if event.attributes.get("tables_unlike"):
        return Signal("data_divergence", _CRITICAL, (_CONSISTENT,))
    return Signal(severity=event.severity)  # unsettled ranges only: nothing found unlike


def _alert(event: admin_pb2.Event) -> Signal:
    alert, region = event.attributes.get("alert", ""), event.region
    if alert == "agent_silent_database_alive":
        return Signal("agent_silent", _WARNING, (healthy(region),))
    if alert == "synchronous_degraded":
        return Signal("synchronous_fallback", _WARNING, (synchronous(region),))
    if alert == "lag_budget":
        return Signal("replica_lag", _CRITICAL)
    if alert == "failover_impossible":
        return Signal("region_unhealthy", _CRITICAL, (healthy(region),))
    return Signal("alert", max(event.severity, _WARNING))


class Correlator:
    """Holds the incidents (open, and resolved ones still within the reopen window or kept
    for listing) and the ledger; ``observe`` and ``tick`` answer the ids they changed."""

    def __init__(
        self,
        settings: CorrelationSettings = CorrelationSettings(),
        incidents: Iterable[admin_pb2.Incident] = (),
        ledger: Ledger | None = None,
    ) -> None:
        self.settings = settings
        self.incidents: dict[str, admin_pb2.Incident] = {i.id: i for i in incidents}
        self.ledger = ledger or Ledger()

    # -- the two ways in -------------------------------------------------------------------

    def observe(self, event: admin_pb2.Event) -> set[str]:
        """Correlate one event (events come in sequence order; one already seen is ignored)."""
        if event.sequence and event.sequence <= self.ledger.cursor:
            return set()
        self.ledger.cursor = max(self.ledger.cursor, event.sequence)
        now = event.time.ToNanoseconds() / 1e9
        signal = interpret(event)
        if event.kind == K.EVENT_KIND_REGION_STATE_CHANGED and event.region:
            self.ledger.region_states[event.region] = event.attributes.get("to", "")
        if event.kind == K.EVENT_KIND_LEADER_ELECTED:
            signal = self._election(now, signal)
        satisfied = set(signal.satisfies)
        if event.kind == K.EVENT_KIND_REGION_STATE_CHANGED and healthy(event.region) in satisfied:
            # A standby back in good health streams again: synchronous replication resumes on
            # any other region's primary.
            satisfied |= {
                a
                for i in self._open_incidents()
                for a in i.awaiting
                if a.startswith(_SYNC) and a != synchronous(event.region)
            }
        incident = self._home(event, signal, now)
        changed = set()
        if incident is None and signal.cause:
            incident = self._open(event, signal, now)
        if incident is not None:
            self._join(incident, event, signal, now)
            self._satisfy(incident, satisfied, now)
            changed.add(incident.id)
        # What an event satisfies holds for every open incident, not only its own: a region
        # healthy again is healthy for all of them.
        for other in self._open_incidents():
            if other is not incident and self._satisfy(other, satisfied, now):
                changed.add(other.id)
        for name in changed:
            self._touch(self.incidents[name], now)
        return changed

    def tick(self, now: float) -> set[str]:
        """What time alone changes: a leader change storm ends after a quiet window."""
        self.ledger.elections = [
            t for t in self.ledger.elections if now - t < self.settings.storm_window
        ]
        changed = set()
        if not self.ledger.elections:
            for incident in self._open_incidents():
                if _STORM in incident.awaiting and self._satisfy(incident, (_STORM,), now):
                    self._touch(incident, now)
                    changed.add(incident.id)
        return changed

    def forget(self, keep: int) -> list[str]:
        """Drop the oldest resolved incidents beyond the newest ``keep`` resolved ones."""
        resolved = sorted(
            (i for i in self.incidents.values() if i.state == _RESOLVED),
            key=lambda i: (i.resolved_at.ToNanoseconds(), i.id),
        )
        doomed = [i.id for i in resolved[: max(0, len(resolved) - keep)]]
        for name in doomed:
            del self.incidents[name]
        return doomed

    # -- finding an event's incident -------------------------------------------------------

    def _home(
        self, event: admin_pb2.Event, signal: Signal, now: float
    ) -> admin_pb2.Incident | None:
        if event.failover_id:
            for incident in self.incidents.values():
                # A resolved one is reopened only by a signal that would open one.
                if event.failover_id in incident.failover_ids and (
                    incident.state == _OPEN or signal.cause
                ):
                    return incident
        open_ = self._open_incidents()
        if signal.cause == "leader_storm" or any(i.cause == "leader_storm" for i in open_):
            # A storm is the cluster's own incident: a region's must not wait for it to end.
            if event.kind == K.EVENT_KIND_LEADER_ELECTED:
                storms = [i for i in open_ if i.cause == "leader_storm"]
                if storms:
                    return storms[-1]
                if signal.cause:
                    return self._flapped(event, signal, now)
        if event.region:
            mine = [i for i in open_ if event.region in i.regions]
            if mine:
                return mine[-1]
        if signal.cause or event.kind in _CASCADE:
            cascading = [i for i in open_ if i.cause != "leader_storm" and self._cascading(i, now)]
            if cascading:
                return cascading[-1]
        if signal.cause:
            return self._flapped(event, signal, now)
        return None

    def _cascading(self, incident: admin_pb2.Incident, now: float) -> bool:
        if now - incident.opened_at.ToNanoseconds() / 1e9 <= self.settings.group_window:
            return True
        if any(a.startswith("failover ") for a in incident.awaiting):
            return True
        if incident.HasField("failover_finished_at"):
            done = incident.failover_finished_at.ToNanoseconds() / 1e9
            return now - done <= self.settings.settle
        return False

    def _flapped(
        self, event: admin_pb2.Event, signal: Signal, now: float
    ) -> admin_pb2.Incident | None:
        window = self.settings.reopen_window
        for incident in sorted(self.incidents.values(), key=_resolved_time, reverse=True):
            if incident.state != _RESOLVED or now - _resolved_time(incident) > window:
                continue
            if event.region and event.region in incident.regions:
                return incident
            if not event.region and not incident.regions and incident.cause == signal.cause:
                return incident
        return None

    def _open_incidents(self) -> list[admin_pb2.Incident]:
        found = [i for i in self.incidents.values() if i.state == _OPEN]
        return sorted(found, key=lambda i: (i.opened_at.ToNanoseconds(), i.id))

    # -- changing an incident --------------------------------------------------------------

    def _open(self, event: admin_pb2.Event, signal: Signal, now: float) -> admin_pb2.Incident:
        incident = admin_pb2.Incident(
            id=f"inc-{event.sequence}", cause=signal.cause, severity=signal.severity, state=_OPEN
        )
        incident.opened_at.CopyFrom(event.time)
        self.incidents[incident.id] = incident
        return incident

    def _join(
        self, incident: admin_pb2.Incident, event: admin_pb2.Event, signal: Signal, now: float
    ) -> None:
        if incident.state == _RESOLVED:
            incident.state = _OPEN
            incident.reopened += 1
            incident.ClearField("resolved_at")
        severity = signal.severity
        if severity == _WARNING and self._planned(incident, event):
            severity = _INFO
        if event.kind == K.EVENT_KIND_FAILOVER_STARTED and event.failover_id:
            if event.failover_id not in incident.failover_ids:
                incident.failover_ids.append(event.failover_id)
            if event.attributes.get("kind") == "switchover":
                incident.planned_failover_ids.append(event.failover_id)
        if event.kind in (K.EVENT_KIND_FAILOVER_COMPLETED, K.EVENT_KIND_FAILOVER_ABORTED):
            incident.failover_finished_at.CopyFrom(event.time)
        if severity > incident.severity and signal.cause:
            incident.cause = signal.cause
        incident.severity = max(incident.severity, severity)
        if event.region and event.region not in incident.regions:
            incident.regions.append(event.region)
            incident.regions.sort()
        for condition in signal.awaits:
            if condition not in incident.awaiting:
                incident.awaiting.append(condition)
        self._entry(incident, event)
        if event.severity >= _WARNING or not incident.summary:
            incident.summary = event.message

    def _planned(self, incident: admin_pb2.Incident, event: admin_pb2.Event) -> bool:
        if event.failover_id:
            return event.failover_id in incident.planned_failover_ids or (
                event.kind == K.EVENT_KIND_FAILOVER_STARTED
                and event.attributes.get("kind") == "switchover"
            )
        running = [a.removeprefix("failover ").removesuffix(" finished") for a in incident.awaiting]
        return any(f in incident.planned_failover_ids for f in running)

    def _entry(self, incident: admin_pb2.Incident, event: admin_pb2.Event) -> None:
        entry = incident.timeline.add(
            sequence=event.sequence,
            kind=event.kind,
            severity=event.severity,
            region=event.region,
            message=event.message,
            failover_id=event.failover_id,
        )
        entry.time.CopyFrom(event.time)
        entry.attributes.update(event.attributes)
        limit, head = self.settings.timeline_limit, self.settings.timeline_head
        if len(incident.timeline) > limit:
            del incident.timeline[head]
            incident.timeline_dropped += 1

    def _satisfy(self, incident: admin_pb2.Incident, conditions, now: float) -> bool:
        """Remove what ``conditions`` satisfy; resolve the incident when nothing is left.
        True when it changed."""
        met = [a for a in incident.awaiting if a in conditions]
        if not met:
            return False
        for condition in met:
            incident.awaiting.remove(condition)
        if not incident.awaiting and incident.state == _OPEN:
            incident.state = _RESOLVED
            incident.resolved_at.FromNanoseconds(int(now * 1e9))
        return True

    def _touch(self, incident: admin_pb2.Incident, now: float) -> None:
        """One change, whatever an event did to it: one revision."""
        incident.revision += 1
        incident.updated_at.FromNanoseconds(
            max(incident.updated_at.ToNanoseconds(), int(now * 1e9))
        )

    def _election(self, now: float, signal: Signal) -> Signal:
        window = self.settings.storm_window
        self.ledger.elections = [t for t in self.ledger.elections if now - t < window] + [now]
        if len(self.ledger.elections) >= self.settings.storm_count:
            return Signal("leader_storm", _WARNING, (_STORM,))
        return signal


def _resolved_time(incident: admin_pb2.Incident) -> float:
    return incident.resolved_at.ToNanoseconds() / 1e9

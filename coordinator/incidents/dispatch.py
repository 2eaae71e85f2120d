"""Which notification an alert target is owed for an incident, and what it says: pure.

A target is told of an incident once it is severe enough for it: "opened" (or, for an
escalation target, "escalated" once the incident has stayed open ``escalate_after`` seconds;
one resolved before that never reaches it). Below critical, an incident is held ``hold``
seconds first: a blip that resolves sooner (a standby that starts streaming a moment late) is
never sent. Then then "updated" at most every
``update_interval`` while it changes (several changes in between go as one, the newest),
"reopened" at once when it flaps back, and "resolved" at once. What was delivered is the
incident's ``deliveries`` entry for the target, kept in etcd with it, so a new leader owes
exactly what the old one had not delivered.

Every notification carries an idempotency key (in the payload and the ``Idempotency-Key``
header): the incident, its revision and what it says. A notification sent again — a retry,
or a new leader sending what its predecessor sent but had not recorded — carries the same
key, so a receiver can drop the copy.
"""

from __future__ import annotations

import datetime

from coordinator.config import AlertTarget
from latitude.enums import short_name
from latitude.v1 import admin_pb2

_OPEN = admin_pb2.INCIDENT_STATE_OPEN
_RESOLVED = admin_pb2.INCIDENT_STATE_RESOLVED
# Newest timeline entries a notification carries (ListIncidents has them all).
TIMELINE_SENT = 20
FIRST_RETRY = 1.0
LAST_RETRY = 60.0


def owed(
    incident: admin_pb2.Incident,
    target: AlertTarget,
    delivered: admin_pb2.IncidentDelivery | None,
    now: float,
    update_interval: float,
    hold: float = 0.0,
) -> str:
    """What ``target`` is owed for ``incident`` now: "opened", "escalated", "updated",
    "reopened", "resolved", or "" (nothing, for now)."""
    if incident.severity < target.severity:
        return ""
    if delivered is None or not delivered.delivered_revision:
        opened = incident.opened_at.ToNanoseconds() / 1e9
        if target.escalate_after:
            if incident.state != _OPEN or now - opened < target.escalate_after:
                return ""
            return "escalated"
        if incident.severity < admin_pb2.SEVERITY_CRITICAL:
            ended = (
                incident.resolved_at.ToNanoseconds() / 1e9 if incident.state == _RESOLVED else now
            )
            if ended - opened < hold:
                return ""
        return "resolved" if incident.state == _RESOLVED else "opened"
    if delivered.delivered_revision >= incident.revision:
        return ""
    if incident.state == _RESOLVED:
        return "" if delivered.delivered_state == _RESOLVED else "resolved"
    if delivered.delivered_state == _RESOLVED:
        return "reopened"
    last = delivered.delivered_at.ToNanoseconds() / 1e9
    return "updated" if now - last >= update_interval else ""


def retry_after(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed ones in a row."""
    return min(LAST_RETRY, FIRST_RETRY * 2 ** max(0, failures - 1))


def idempotency_key(incident: admin_pb2.Incident, kind: str) -> str:
    return f"{incident.id}/{incident.revision}/{kind}"


def delivery_for(incident: admin_pb2.Incident, label: str) -> admin_pb2.IncidentDelivery | None:
    return next((d for d in incident.deliveries if d.target == label), None)


def delivered(incident: admin_pb2.Incident, label: str, kind: str, revision: int, now: float):
    """Record in ``incident`` that ``label`` got the notification of ``revision``."""
    entry = delivery_for(incident, label) or incident.deliveries.add(target=label)
    entry.delivered_revision = revision
    entry.delivered_kind = kind
    entry.delivered_state = _RESOLVED if kind == "resolved" else _OPEN
    entry.delivered_at.FromNanoseconds(int(now * 1e9))
    entry.delivered += 1
    entry.failed_attempts = 0
    entry.last_error = ""


def failed(incident: admin_pb2.Incident, label: str, error: str) -> int:
    """Record a failed attempt; how many there have been in a row."""
    entry = delivery_for(incident, label) or incident.deliveries.add(target=label)
    entry.failed_attempts += 1
    entry.last_error = error[:300]
    return entry.failed_attempts


def payload(incident: admin_pb2.Incident, kind: str, now: float) -> dict:
    """The JSON body of a notification."""
    return {
        "idempotency_key": idempotency_key(incident, kind),
        "notification": kind,
        "sent_at": _iso(now),
        "incident": {
            "id": incident.id,
            "cause": incident.cause,
            "severity": short_name(admin_pb2.Severity, incident.severity, lower=True),
            "state": short_name(admin_pb2.IncidentState, incident.state, lower=True),
            "regions": list(incident.regions),
            "summary": incident.summary,
            "revision": incident.revision,
            "reopened": incident.reopened,
            "opened_at": _iso(incident.opened_at.ToNanoseconds() / 1e9),
            "updated_at": _iso(incident.updated_at.ToNanoseconds() / 1e9),
            "resolved_at": (
                _iso(incident.resolved_at.ToNanoseconds() / 1e9)
                if incident.HasField("resolved_at")
                else None
            ),
            "awaiting": list(incident.awaiting),
            "failover_ids": list(incident.failover_ids),
            "timeline_entries": len(incident.timeline) + incident.timeline_dropped,
            "timeline": [_entry(e) for e in incident.timeline[-TIMELINE_SENT:]],
        },
    }


def summary(deliveries) -> str:
    """One line for people: per target, what it was last told or why it is failing."""
    parts = []
    for d in deliveries:
        if d.failed_attempts:
            parts.append(f"{d.target}: failing x{d.failed_attempts} ({d.last_error})")
        elif d.delivered:
            parts.append(f"{d.target}: {d.delivered_kind} (r{d.delivered_revision})")
    return "; ".join(parts) or "-"


def _entry(entry: admin_pb2.IncidentEntry) -> dict:
    return {
        "sequence": entry.sequence,
        "time": _iso(entry.time.ToNanoseconds() / 1e9),
        "kind": short_name(admin_pb2.EventKind, entry.kind, lower=True),
        "severity": short_name(admin_pb2.Severity, entry.severity, lower=True),
        "region": entry.region,
        "message": entry.message,
        "failover_id": entry.failover_id,
    }


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

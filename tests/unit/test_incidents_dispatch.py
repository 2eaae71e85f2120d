"""What a target is owed for an incident, and what the notification says: pure."""

from __future__ import annotations

import pytest

from coordinator.config import AlertTarget
from coordinator.incidents import dispatch
from latitude.v1 import admin_pb2 as pb

HOOK = AlertTarget(url="http://hooks.example/x")
PAGER = AlertTarget(url="http://pager.example/x", escalate_after=600, min_severity="critical")


def incident(severity=pb.SEVERITY_CRITICAL, state=pb.INCIDENT_STATE_OPEN, revision=1, opened=0.0):
    i = pb.Incident(
        id="inc-7", cause="region_unhealthy", severity=severity, state=state, revision=revision
    )
    i.opened_at.FromNanoseconds(int(opened * 1e9))
    i.updated_at.FromNanoseconds(int(opened * 1e9))
    i.regions.append("us-east-1")
    i.timeline.add(sequence=7, kind=pb.EVENT_KIND_REGION_STATE_CHANGED, message="us-east-1 down")
    if state == pb.INCIDENT_STATE_RESOLVED:
        i.resolved_at.FromNanoseconds(int((opened + 60) * 1e9))
    return i


def owed(i, target=HOOK, now=10.0, interval=5.0):
    label = target.label
    return dispatch.owed(i, target, dispatch.delivery_for(i, label), now, interval)


def test_a_new_incident_is_owed_its_opening():
    assert owed(incident()) == "opened"


def test_an_incident_below_the_targets_severity_is_owed_nothing_until_it_rises():
    target = AlertTarget(url="http://x/", min_severity="critical")
    i = incident(severity=pb.SEVERITY_WARNING)
    assert owed(i, target) == ""
    i.severity = pb.SEVERITY_CRITICAL
    assert owed(i, target) == "opened"


def test_updates_go_at_most_every_interval_and_as_one():
    i = incident()
    dispatch.delivered(i, HOOK.label, "opened", 1, now=10.0)
    assert owed(i, now=11.0) == ""  # nothing new
    i.revision = 4  # three changes
    assert owed(i, now=12.0) == ""  # within the interval
    assert owed(i, now=15.0) == "updated"
    dispatch.delivered(i, HOOK.label, "updated", 4, now=15.0)
    assert owed(i, now=30.0) == ""


def test_a_resolution_goes_at_once_and_once():
    i = incident()
    dispatch.delivered(i, HOOK.label, "opened", 1, now=10.0)
    i.state, i.revision = pb.INCIDENT_STATE_RESOLVED, 2
    assert owed(i, now=10.5) == "resolved"
    dispatch.delivered(i, HOOK.label, "resolved", 2, now=10.5)
    i.revision = 3  # a late entry changes nothing worth telling
    assert owed(i, now=60.0) == ""


def test_a_reopened_incident_goes_at_once():
    i = incident()
    dispatch.delivered(i, HOOK.label, "resolved", 2, now=10.0)
    i.revision = 3
    assert owed(i, now=10.1) == "reopened"


def test_an_incident_resolved_before_it_was_told_is_told_once_resolved():
    assert owed(incident(state=pb.INCIDENT_STATE_RESOLVED, revision=5)) == "resolved"


def test_an_escalation_target_hears_only_of_incidents_open_past_its_threshold():
    i = incident(opened=0.0)
    assert owed(i, PAGER, now=599.0) == ""
    assert owed(i, PAGER, now=600.0) == "escalated"
    dispatch.delivered(i, PAGER.label, "escalated", 1, now=600.0)
    i.state, i.revision = pb.INCIDENT_STATE_RESOLVED, 2
    assert owed(i, PAGER, now=700.0) == "resolved"
    # One resolved in time never reaches it.
    assert owed(incident(state=pb.INCIDENT_STATE_RESOLVED), PAGER, now=900.0) == ""


def test_deliveries_are_kept_per_target():
    i = incident()
    dispatch.delivered(i, HOOK.label, "opened", 1, now=10.0)
    assert owed(i, AlertTarget(url="http://other/")) == "opened"


def test_failures_count_until_a_delivery_and_back_off_doubles_to_a_cap():
    i = incident()
    assert dispatch.failed(i, HOOK.label, "HTTP 500") == 1
    assert dispatch.failed(i, HOOK.label, "HTTP 500") == 2
    assert owed(i) == "opened"  # still owed
    assert "failing x2 (HTTP 500)" in dispatch.summary(i.deliveries)
    dispatch.delivered(i, HOOK.label, "opened", 1, now=10.0)
    assert i.deliveries[0].failed_attempts == 0 and i.deliveries[0].delivered == 1
    assert dispatch.summary(i.deliveries) == "http://hooks.example/x: opened (r1)"
    assert [dispatch.retry_after(n) for n in (1, 2, 3, 7, 20)] == [1, 2, 4, 60, 60]


def test_the_payload_carries_its_idempotency_key_and_the_incident():
    i = incident(revision=3, opened=1_700_000_000.0)
    body = dispatch.payload(i, "updated", now=1_700_000_005.0)
    assert body["idempotency_key"] == "inc-7/3/updated"
    assert body["notification"] == "updated"
    assert body["incident"]["severity"] == "critical"
    assert body["incident"]["state"] == "open"
    assert body["incident"]["regions"] == ["us-east-1"]
    assert body["incident"]["opened_at"] == "2023-11-14T22:13:20.000Z"
    assert body["incident"]["resolved_at"] is None
    assert body["incident"]["timeline"][0]["kind"] == "region_state_changed"
    # The same notification again (a retry, another leader): the same key.
    assert (
        dispatch.payload(i, "updated", now=1_700_000_099.0)["idempotency_key"]
        == (body["idempotency_key"])
    )


@pytest.mark.parametrize("kind", ["opened", "updated", "resolved"])
def test_keys_differ_between_notifications(kind):
    i = incident(revision=2)
    assert dispatch.idempotency_key(i, kind) != dispatch.idempotency_key(incident(revision=3), kind)


def test_below_critical_an_incident_is_held_and_a_blip_never_sent():
    warning = incident(severity=pb.SEVERITY_WARNING, opened=0.0)
    assert dispatch.owed(warning, HOOK, None, 9.0, 5.0, hold=10.0) == ""
    assert dispatch.owed(warning, HOOK, None, 10.0, 5.0, hold=10.0) == "opened"
    # Critical goes at once.
    assert dispatch.owed(incident(opened=0.0), HOOK, None, 0.1, 5.0, hold=10.0) == "opened"
    # Resolved within the hold: never sent; after it: sent resolved.
    blip = incident(severity=pb.SEVERITY_WARNING, state=pb.INCIDENT_STATE_RESOLVED)
    assert dispatch.owed(blip, HOOK, None, 500.0, 5.0, hold=120.0) == ""
    assert dispatch.owed(blip, HOOK, None, 500.0, 5.0, hold=30.0) == "resolved"

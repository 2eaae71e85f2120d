"""``latitude incidents`` and ``latitude events --follow``: their pure parts."""

from __future__ import annotations

import pytest

from latitude.incidents_view import (
    Follower,
    event_line,
    format_deliveries,
    format_incidents,
)
from latitude.table import human_duration
from latitude.v1 import admin_pb2 as pb


def incident(id_, opened, state=pb.INCIDENT_STATE_OPEN, resolved=0.0, reopened=0):
    i = pb.Incident(
        id=id_,
        cause="region_unhealthy",
        severity=pb.SEVERITY_CRITICAL,
        state=state,
        regions=["eu-west-1", "us-east-1"],
        revision=7,
        reopened=reopened,
        awaiting=["us-east-1 healthy"],
    )
    i.opened_at.FromSeconds(int(opened))
    if resolved:
        i.resolved_at.FromSeconds(int(resolved))
    return i


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.9, "59 s"), (65, "1 min 05 s"), (7260, "2 h 01 min"), (90000, "1 d 1 h")],
)
def test_durations_read_at_a_glance(seconds, text):
    assert human_duration(seconds) == text


def test_the_incidents_table():
    table = format_incidents(
        [
            incident("inc-9", 1_000, reopened=1),
            incident("inc-2", 100, pb.INCIDENT_STATE_RESOLVED, resolved=400),
        ],
        now=1_065,
    )
    header, _, first, second = table.splitlines()
    assert header.split() == [
        "ID", "STATE", "SEVERITY", "CAUSE", "REGIONS", "OPENED", "DURATION", "UPDATES",
        "WAITING", "FOR",
    ]  # fmt: skip
    assert first.startswith("inc-9  open (x2)  critical  region_unhealthy  eu-west-1,us-east-1")
    assert "1 min 05 s" in first and first.endswith("us-east-1 healthy")
    assert "resolved" in second and "5 min 00 s" in second and second.endswith("-")
    assert format_incidents([], now=0) == "no incidents"


def test_the_deliveries_table_says_what_each_target_was_told_or_why_it_fails():
    i = incident("inc-9", 0)
    i.deliveries.add(target="ops", delivered_kind="updated", delivered_revision=6, delivered=3)
    i.deliveries.add(target="pager", failed_attempts=4, last_error="HTTP 500")
    lines = format_deliveries([i]).splitlines()
    assert lines[2].split() == ["inc-9", "ops", "updated", "(r6)", "3", "-"]
    assert lines[3].split() == ["inc-9", "pager", "-", "0", "x4:", "HTTP", "500"]
    assert format_deliveries([incident("inc-1", 0)]) == ""


def event(sequence, seconds, kind=pb.EVENT_KIND_ALERT):
    e = pb.Event(sequence=sequence, kind=kind, region="us-east-1", message=f"m{sequence}")
    e.severity = pb.SEVERITY_INFO
    e.time.FromSeconds(seconds)
    return e


def test_a_follower_prints_each_event_once_and_asks_from_the_newest_seen():
    follower = Follower(pb.ListEventsRequest(region="us-east-1", limit=10))
    first = follower.next_request()
    assert first.limit == 10 and not first.HasField("since")  # the newest ten, as a start
    assert [e.sequence for e in follower.fresh([event(4, 100), event(5, 101)])] == [4, 5]
    again = follower.next_request()
    assert again.region == "us-east-1" and again.limit == 1000
    assert again.since.seconds == 101 - 30  # a margin for leaders' clocks
    # The same events again, and one recorded by a leader whose clock is behind.
    assert [e.sequence for e in follower.fresh([event(5, 101), event(6, 95)])] == [6]
    assert follower.fresh([]) == []
    assert follower.last_sequence == 6 and follower.last_time == 101


def test_an_event_line_has_fixed_columns():
    e = event(3, 0, pb.EVENT_KIND_FAILOVER_STARTED)
    e.severity = pb.SEVERITY_CRITICAL
    fields = event_line(e).split()
    assert fields[2:] == ["critical", "us-east-1", "failover_started", "m3"]
    assert event_line(e).index("us-east-1") == event_line(event(4, 0)).index("us-east-1")

"""Consistency verdicts from database readings, and the timeline history they rely on."""

from __future__ import annotations

from agent.postgres_probe import parse_timeline_history
from coordinator.consistency import (
    CONFLICTING,
    DIVERGED,
    IN_SYNC,
    LAGGING,
    UNKNOWN,
    Reading,
    assess,
)
from latitude.operations_view import format_consistency
from latitude.v1 import common_pb2

NOW = 1_000.0
SYSTEM = 7_300_000_000_000_000_001
PRIMARY, STANDBY = common_pb2.DATABASE_ROLE_PRIMARY, common_pb2.DATABASE_ROLE_STANDBY
US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-1"


def db(
    role=STANDBY,
    *,
    timeline=1,
    lsn=1000,
    at=NOW - 0.2,
    fenced=False,
    system=SYSTEM,
    history=(),
    upstream=US,
    streaming=True,
):
    status = common_pb2.DatabaseStatus(
        role=role, timeline_id=timeline, fenced=fenced, system_identifier=system
    )
    if role == PRIMARY:
        status.current_lsn = lsn
        status.timeline_history.extend(
            common_pb2.TimelineSwitch(timeline_id=t, end_lsn=end) for t, end in history
        )
    else:
        status.replayed_lsn = status.received_lsn = lsn
        status.upstream_region = upstream
        status.wal_receiver_streaming = streaming
    status.observed_at.FromNanoseconds(int(at * 1e9))
    return status


def check(*readings, write_region=US):
    report = assess(list(readings), write_region, now=NOW)
    return report, {r.region: r for r in report.regions}


def test_a_healthy_cluster_is_consistent():
    report, regions = check(
        Reading(US, db(PRIMARY, lsn=5000)),
        Reading(EU, db(lsn=5000, at=NOW - 0.1)),
        Reading(AP, db(lsn=4000, at=NOW - 0.1)),
    )
    assert report.consistent
    assert (report.primary_region, report.primary_timeline_id, report.primary_lsn) == (US, 1, 5000)
    assert [r.region for r in report.regions] == [AP, EU, US]
    assert regions[US].verdict == IN_SYNC and regions[US].lsn == 5000
    assert regions[EU].verdict == IN_SYNC and regions[EU].behind_bytes == 0
    assert regions[AP].verdict == LAGGING and regions[AP].behind_bytes == 1000
    assert regions[AP].detail == "1000 B behind the primary"
    assert regions[AP].system_identifier == SYSTEM and regions[AP].timeline_id == 1


def test_a_standby_read_before_the_primary_is_judged_by_the_leaders_aligned_lag():
    _, regions = check(
        Reading(US, db(PRIMARY, lsn=5000, at=NOW - 0.1)),
        Reading(EU, db(lsn=4900, at=NOW - 0.4), lag_bytes=0),
        Reading(AP, db(lsn=4900, at=NOW - 0.4), lag_bytes=60),
    )
    assert regions[EU].verdict == IN_SYNC
    assert (regions[AP].verdict, regions[AP].behind_bytes) == (LAGGING, 60)


def test_an_earlier_timeline_is_fine_up_to_its_fork_point_and_diverged_past_it():
    primary = db(PRIMARY, timeline=3, lsn=9000, history=[(1, 3000), (2, 5000)])
    report, regions = check(
        Reading(US, primary),
        Reading(EU, db(timeline=2, lsn=4800)),
        Reading(AP, db(timeline=2, lsn=5200)),
    )
    assert regions[EU].verdict == LAGGING
    assert regions[EU].detail == "on timeline 2, which the primary left at 0/1388; 4.1 KiB behind"
    assert regions[AP].verdict == DIVERGED
    assert "forked from the primary's history at 0/1388" in regions[AP].detail
    assert not report.consistent


def test_timelines_the_primary_did_not_go_through_have_diverged():
    primary = db(PRIMARY, timeline=3, lsn=9000, history=[(1, 3000), (2, 5000)])
    _, regions = check(Reading(US, primary), Reading(EU, db(timeline=4, lsn=100)))
    assert regions[EU].verdict == DIVERGED and "past the primary's (3)" in regions[EU].detail
    primary = db(PRIMARY, timeline=4, lsn=9000, history=[(1, 3000), (3, 5000)])
    _, regions = check(Reading(US, primary), Reading(EU, db(timeline=2, lsn=100)))
    assert regions[EU].verdict == DIVERGED
    detail = "timeline 2 is not in the primary's history (timelines 1, 3, then 4)"
    assert regions[EU].detail == detail


def test_without_the_primarys_history_only_a_streaming_standby_counts_as_lagging():
    primary = db(PRIMARY, timeline=2, lsn=9000)  # history unreadable
    _, regions = check(
        Reading(US, primary),
        Reading(EU, db(timeline=1, lsn=100)),
        Reading(AP, db(timeline=1, lsn=100, streaming=False)),
    )
    assert regions[EU].verdict == LAGGING
    assert regions[AP].verdict == UNKNOWN


def test_another_system_identifier_has_diverged():
    _, regions = check(Reading(US, db(PRIMARY)), Reading(EU, db(system=SYSTEM + 1)))
    assert regions[EU].verdict == DIVERGED and "another cluster" in regions[EU].detail


def test_a_second_writable_primary_is_a_conflict_and_a_fenced_one_has_diverged():
    report, regions = check(
        Reading(US, db(PRIMARY, timeline=2, lsn=9000, history=[(1, 5000)])),
        Reading(EU, db(PRIMARY, timeline=1, lsn=6000)),
        Reading(AP, db(PRIMARY, timeline=1, lsn=6000, fenced=True)),
    )
    assert regions[EU].verdict == CONFLICTING and "split brain" in regions[EU].detail
    assert regions[AP].verdict == DIVERGED and "needs REJOIN" in regions[AP].detail
    assert not report.consistent


def test_no_usable_reading_is_unknown_and_not_consistent():
    report, regions = check(
        Reading(US, db(PRIMARY)),
        Reading(EU, db(at=NOW - 9)),
        Reading(AP, None, "no fresh reading: REPORT_NOW: no agent connected"),
    )
    assert regions[EU].verdict == UNKNOWN
    assert regions[EU].detail == "last reading 9.0 s old: its agent is silent"
    assert regions[AP].verdict == UNKNOWN and regions[AP].detail.startswith("no fresh reading")
    assert not report.consistent
    down = common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_DOWN, probe_error="refused")
    _, regions = check(Reading(US, db(PRIMARY)), Reading(EU, down))
    assert regions[EU].detail == "database down: refused"


def test_a_fenced_write_region_leaves_no_writable_primary():
    report, regions = check(Reading(US, db(PRIMARY, fenced=True)), Reading(EU, db()))
    assert regions[US].verdict == IN_SYNC and "fenced" in regions[US].detail
    assert regions[EU].verdict == IN_SYNC
    assert not report.consistent


def test_without_a_primary_reading_nothing_is_compared_but_strays_are_named():
    report, regions = check(
        Reading(US, db(PRIMARY, at=NOW - 30)),
        Reading(EU, db(PRIMARY, timeline=2)),
        Reading(AP, db()),
    )
    assert report.primary_region == "" and not report.consistent
    assert regions[EU].verdict == CONFLICTING
    assert regions[AP].verdict == UNKNOWN
    assert "the write region us-east-1 has no usable reading" in regions[AP].detail
    # Before a write region is known, the one writable primary is the reference.
    report, _ = check(Reading(US, db(PRIMARY)), Reading(EU, db()), write_region="")
    assert report.consistent and report.primary_region == US


def test_a_note_is_added_to_every_detail_and_the_view_shows_the_verdicts():
    report = assess(
        [Reading(US, db(PRIMARY, lsn=5000)), Reading(EU, db(lsn=5000))],
        US,
        now=NOW,
        note="last published reading",
    )
    assert all(r.detail.endswith("(last published reading)") for r in report.regions)
    text = format_consistency(report)
    assert text.startswith("consistent: primary us-east-1 on timeline 1 at 0/1388")
    assert "IN_SYNC" in text.splitlines()[4]


def test_timeline_history_files_are_parsed():
    text = "1\t0/3000060\tno recovery target specified\n\n2\t1/A0\tbefore 2000-01-01\n# x\n"
    assert [(s.timeline_id, s.end_lsn) for s in parse_timeline_history(text)] == [
        (1, 0x3000060),
        (2, (1 << 32) | 0xA0),
    ]
    assert parse_timeline_history("") == []

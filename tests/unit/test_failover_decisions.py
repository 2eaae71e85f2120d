from __future__ import annotations

import math

from coordinator.failover.decisions import (
    Budget,
    PrimaryView,
    RetryPolicy,
    StandbyView,
    any_one,
    assess_primary,
    check_target,
    choose,
    fence_deadline,
    format_lsn,
    seconds_at_risk,
    synchronous_names,
)

BUDGET = Budget(max_bytes=1000, max_seconds=60)


def primary(silent=0.2, down=0.0):
    return PrimaryView("us-east-1", silent, down, "10.0.0.1:5432")


def standby(
    region, lsn, *, streaming="", priority=100, eligible=True, beat=0, why="", reporting=True
):
    return StandbyView(region, lsn, streaming, beat, priority, eligible, why, reporting)


def test_a_reporting_primary_is_not_failed():
    assert not assess_primary(primary(), [], fail_after=3.0).failed


def test_silence_with_standbys_streaming_is_a_lost_agent_not_a_failure():
    verdict = assess_primary(
        primary(silent=5.0), [standby("eu-west-1", 1, streaming="10.0.0.1:5432")], fail_after=3.0
    )
    assert verdict.failed and not verdict.confirmed
    assert "eu-west-1 still stream WAL from it" in verdict.reason


def test_silence_confirmed_by_standbys_that_lost_the_stream():
    verdict = assess_primary(
        primary(silent=math.inf), [standby("eu-west-1", 1), standby("ap", 1)], fail_after=3.0
    )
    assert verdict.confirmed
    assert verdict.reason == (
        "us-east-1 failed: no report for inf s; eu-west-1, ap report no WAL streaming from it"
    )


def test_silence_with_no_standby_reporting_is_no_evidence():
    # A new leader, or one cut from the standbys too: their silence says nothing of the stream.
    silent = [standby("eu-west-1", 1, reporting=False), standby("ap", 1, reporting=False)]
    verdict = assess_primary(primary(silent=10.0), silent, fail_after=3.0)
    assert verdict.failed and not verdict.confirmed
    assert "no standby reports now" in verdict.reason


def test_only_standbys_that_report_now_count_as_evidence():
    # One reports and has lost the stream; the silent one's last word (streaming) is stale.
    standbys = [
        standby("eu-west-1", 1),
        standby("ap", 1, streaming="10.0.0.1:5432", reporting=False),
    ]
    verdict = assess_primary(primary(silent=5.0), standbys, fail_after=3.0)
    assert verdict.confirmed and "eu-west-1 report no WAL streaming" in verdict.reason


def test_a_database_down_behind_a_live_agent_fails_only_once_down_long_enough():
    standbys = [standby("eu-west-1", 1)]
    # A restart (a demotion, a crash restarted by PostgreSQL) is no failure yet.
    assert not assess_primary(primary(down=1.0), standbys, fail_after=3.0).failed
    verdict = assess_primary(primary(down=3.5), standbys, fail_after=3.0)
    assert verdict.confirmed and "reported the database down for 3.5 s" in verdict.reason


def test_the_most_replayed_standby_wins_and_priority_breaks_ties():
    standbys = [
        standby("eu-west-1", 900, priority=50),
        standby("ap-southeast-1", 900, priority=100),
        standby("sa-east-1", 800, priority=200),
    ]
    choice = choose(standbys, primary_lsn=950, primary_heartbeat_ns=0, budget=BUDGET)
    assert choice.region == "ap-southeast-1"
    assert choice.loss_bytes == 50
    assert choice.reason == "most WAL replayed (0/384), priority 100"


def test_past_the_lag_budget_needs_force():
    standbys = [standby("eu-west-1", 100, beat=5_000_000_000)]
    refused = choose(standbys, primary_lsn=5000, primary_heartbeat_ns=95_000_000_000, budget=BUDGET)
    assert refused.region is None and "past the lag budget" in refused.reason
    assert (refused.loss_bytes, refused.loss_seconds) == (4900, 90.0)
    forced = choose(
        standbys,
        primary_lsn=5000,
        primary_heartbeat_ns=95_000_000_000,
        budget=BUDGET,
        forced=True,
    )
    assert forced.region == "eu-west-1" and "forced" in forced.reason


def test_ineligible_standbys_are_skipped_and_explained():
    standbys = [
        standby("eu-west-1", 999, eligible=False, why="UNHEALTHY"),
        standby("ap-southeast-1", 10),
    ]
    assert choose(standbys, primary_lsn=10, primary_heartbeat_ns=0, budget=BUDGET).region == (
        "ap-southeast-1"
    )
    none = choose(standbys[:1], primary_lsn=10, primary_heartbeat_ns=0, budget=BUDGET)
    assert none.region is None and "eu-west-1: UNHEALTHY" in none.reason


def test_an_operator_can_name_the_target():
    standbys = [standby("eu-west-1", 999), standby("ap-southeast-1", 500)]
    chosen = choose(
        standbys, primary_lsn=999, primary_heartbeat_ns=0, budget=BUDGET, target="ap-southeast-1"
    )
    assert chosen.region == "ap-southeast-1" and chosen.loss_bytes == 499
    missing = choose(standbys, primary_lsn=1, primary_heartbeat_ns=0, budget=BUDGET, target="x")
    assert missing.region is None and "x cannot be promoted" in missing.reason


def test_the_time_at_risk_runs_from_the_promoted_heartbeat_to_the_end_of_writes():
    # Replayed up to a heartbeat at t=100.25 s; the old primary fenced by t=104.5 s.
    beat, ended = 100_250_000_000, 104_500_000_000
    assert seconds_at_risk(kept_until_ns=beat, writes_ended_ns=ended, loss_bytes=None) == 4.25
    assert seconds_at_risk(kept_until_ns=beat, writes_ended_ns=ended, loss_bytes=4096) == 4.25
    # The final position is known and the standby has all of it: nothing was lost.
    assert seconds_at_risk(kept_until_ns=beat, writes_ended_ns=ended, loss_bytes=0) == 0.0
    # Without a replayed heartbeat nothing can be said.
    assert seconds_at_risk(kept_until_ns=0, writes_ended_ns=ended, loss_bytes=None) is None
    # Clocks a little apart never make it negative.
    assert seconds_at_risk(kept_until_ns=ended + 1, writes_ended_ns=ended, loss_bytes=None) == 0


def test_lsns_read_like_postgres_writes_them():
    assert format_lsn((0x16 << 32) | 0xB374D848) == "16/B374D848"


def test_a_switchover_target_is_checked_before_anything_is_fenced():
    standbys = [
        standby("eu-west-1", 900, eligible=False, why="in maintenance"),
        standby("ap-southeast-1", 900, streaming="10.0.0.1:5432"),
        standby("sa-east-1", 900),
    ]
    check = dict(primary_lsn=950, primary_heartbeat_ns=0, budget=BUDGET, forced=False)
    refused = check_target(standbys, target="eu-west-1", switchover=True, **check)
    assert (
        refused.region is None and refused.reason == "eu-west-1 cannot be promoted: in maintenance"
    )
    # A switchover's target must stream now: it is to catch up with the fenced primary.
    idle = check_target(standbys, target="sa-east-1", switchover=True, **check)
    assert idle.region is None and "does not stream WAL now" in idle.reason
    assert check_target(standbys, target="sa-east-1", switchover=False, **check).region
    assert check_target(standbys, target="ap-southeast-1", switchover=True, **check).region
    # No target: the best candidate.
    assert check_target(standbys, target="", switchover=True, **check).region == "ap-southeast-1"


def test_the_fence_deadline_counts_the_failsafe_confirmations():
    # Acknowledged at 100; a candidate confirmed the old primary until 103: 103 + 4 + 0.5.
    kwargs = dict(leadership_began=50.0, fence_after=4.0, margin=0.5)
    assert fence_deadline(last_ack=100.0, confirmations=[101.0, 103.0], **kwargs) == 107.5
    assert fence_deadline(last_ack=100.0, confirmations=[], **kwargs) == 104.5
    # A leader that acknowledged nothing counts from the start of its leadership.
    assert fence_deadline(last_ack=None, confirmations=[], **kwargs) == 54.5


def test_synchronous_names_wait_for_standbys_before_falling_back():
    assert synchronous_names(["b", "a"], none_since=0, now=0, fail_after=3, fallback=True) == (
        'ANY 1 ("a","b")'
    )
    assert synchronous_names([], none_since=10, now=12, fail_after=3, fallback=True) is None
    assert synchronous_names([], none_since=10, now=13, fail_after=3, fallback=True) == ""
    assert synchronous_names([], none_since=10, now=99, fail_after=3, fallback=False) is None
    assert any_one(["eu-west-1"]) == 'ANY 1 ("eu-west-1")'


def test_failed_attempts_back_off_and_are_recorded_once():
    retry = RetryPolicy(first=1.0, cap=4.0)
    assert retry.ready(0.0)
    assert [retry.failed(t) for t in (0.0, 1.0, 3.0, 7.0)] == [1.0, 2.0, 4.0, 4.0]
    assert not retry.ready(10.9) and retry.ready(11.0)
    assert retry.should_record("no standby") and not retry.should_record("no standby")
    assert retry.should_record("another reason")
    # Figures move while the cause stays the same: still recorded once.
    assert retry.should_record("no report for 3.1 s") and not retry.should_record(
        "no report for 4.7 s"
    )
    retry.reset()
    assert retry.ready(11.0) and retry.should_record("no standby")

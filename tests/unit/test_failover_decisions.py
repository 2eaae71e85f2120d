from __future__ import annotations

import math

from coordinator.failover import (
    Budget,
    PrimaryView,
    StandbyView,
    assess_primary,
    choose,
    format_lsn,
    seconds_at_risk,
)

BUDGET = Budget(max_bytes=1000, max_seconds=60)


def primary(silent=0.2, down=False):
    return PrimaryView("us-east-1", silent, down, "10.0.0.1:5432")


def standby(region, lsn, *, streaming="", priority=100, eligible=True, beat=0, why=""):
    return StandbyView(region, lsn, streaming, beat, priority, eligible, why)


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
    assert verdict.reason == "us-east-1 failed: no report for inf s, no standby streams from it"


def test_a_database_down_behind_a_live_agent_is_a_failure_too():
    assert assess_primary(primary(down=True), [standby("eu-west-1", 1)], fail_after=3.0).confirmed


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

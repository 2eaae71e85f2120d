"""The health endpoints' decisions (agent.health) on snapshots taken at fake times, with the
exact reason of every answer; and the marks a FENCE leaves before the probe can show it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from agent import health
from agent.failsafe import Failsafe, Word
from agent.health import Marks, Snapshot
from agent.health_lag import BadLag, parse_lag
from latitude.v1 import agent_pb2, common_pb2

REGION = "us-east-1"
K = agent_pb2.CommandKind


def primary_db(**fields) -> common_pb2.DatabaseStatus:
    return common_pb2.DatabaseStatus(
        role=common_pb2.DATABASE_ROLE_PRIMARY,
        timeline_id=2,
        current_lsn=(1 << 32) + 0x60,
        **fields,
    )


def standby_db(**fields) -> common_pb2.DatabaseStatus:
    values = dict(
        role=common_pb2.DATABASE_ROLE_STANDBY,
        timeline_id=2,
        received_lsn=0x3000060,
        replayed_lsn=0x3000000,
        replay_lag_bytes=0x60,
        replay_lag_seconds=0.4,
        wal_receiver_streaming=True,
        upstream_region="eu-west-1",
    )
    values.update(fields)
    return common_pb2.DatabaseStatus(**values)


def snap(database=None, **fields) -> Snapshot:
    """A healthy primary of the write region, unless ``fields`` say otherwise."""
    values = dict(
        region=REGION,
        database=database or primary_db(),
        observed_age=0.2,
        fresh_for=1.5,
        word=Word(REGION, False, 7),
        lease_remaining=3.5,
        lease_margin=2.0,
        loop_ages={"probe": 0.2, "report": 0.1, "fence timer": 0.0},
        stall_after=10.0,
    )
    values.update(fields)
    return Snapshot(**values)


def test_the_unfenced_primary_of_the_write_region_is_the_primary():
    assert health.primary(snap()) == health.Answer(
        200, "the writable primary of the write region (epoch 7)"
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"database": standby_db()}, "the database is a standby"),
        (
            {"database": primary_db(fenced=True, fence_cause=common_pb2.FENCE_CAUSE_SELF)},
            "the database is fenced (self)",
        ),
        (
            {"draining": "FENCE f1 from the leader (epoch 7): switchover s1"},
            "draining: FENCE f1 from the leader (epoch 7): switchover s1",
        ),
        ({"word": None}, "no word from a leader yet: the write region is not known"),
        (
            {"word": Word("eu-west-1", False, 8)},
            "the leader (epoch 8) names eu-west-1 as the write region",
        ),
        ({"word": Word("", True, 9)}, "the leader (epoch 9) names no region as the write region"),
        ({"word": Word(REGION, True, 8)}, "the leader (epoch 8) says a failover is under way"),
        ({"lease_remaining": 1.9}, "the fence lease runs out in 1.9 s (draining 2.0 s before it)"),
        ({"observed_age": 1.6}, "the newest observation of the database is 1.6 s old"),
        ({"observed_age": math.inf}, "the database has not been observed yet"),
        (
            {
                "database": common_pb2.DatabaseStatus(
                    role=common_pb2.DATABASE_ROLE_DOWN, probe_error="connection refused"
                )
            },
            "the database is DOWN: connection refused",
        ),
    ],
)
def test_the_primary_answers_503_and_says_why(change, reason):
    assert health.primary(snap(**change)) == health.Answer(503, reason)


def test_the_primary_drains_a_margin_before_its_lease_runs_out():
    """Fake clock: the lease acknowledged at t=0 runs out at t=4; the answer turns at t=2."""
    deadline, margin = 4.0, 2.0
    answers = {
        now: health.primary(snap(lease_remaining=deadline - now, lease_margin=margin)).status
        for now in (0.0, 1.0, 1.99, 2.0, 2.01, 3.9, 4.0)
    }
    assert answers == {0.0: 200, 1.0: 200, 1.99: 200, 2.0: 200, 2.01: 503, 3.9: 503, 4.0: 503}


@pytest.mark.parametrize(
    ("fence_after", "ack_period", "interval", "margin"),
    [
        (4.0, 1.0, 0.5, 2.0),  # the defaults: half the lease
        (4.0, 1.5, 0.5, 1.0),  # ack_every 3: two missed acknowledgements before it drains
        (4.0, 2.0, 0.5, 0.5),  # ack_every 4: a report interval, still before the fence
        (10.0, 1.0, 0.5, 5.0),
    ],
)
def test_the_drain_margin_leaves_room_for_the_acknowledgements(
    fence_after, ack_period, interval, margin
):
    assert health.drain_margin(
        fence_after=fence_after, ack_period=ack_period, interval=interval
    ) == pytest.approx(margin)


def test_a_region_promoted_in_the_failover_under_way_is_the_primary_already():
    """The word says "failover in progress" while the leader repoints the others: that is no
    failover away from the region it just promoted."""
    word = Word(REGION, True, 8)
    assert health.primary(snap(word=word, promoted=True)).ok
    assert not health.primary(snap(word=word, promoted=False)).ok


def test_marks_drain_from_the_fence_until_the_primary_is_lifted_or_replaced():
    marks = Marks(clock=lambda: 0.0)
    marks.fence_coming("FENCE f1")
    assert marks.draining == "FENCE f1"
    marks.command_done(K.COMMAND_KIND_CHECKPOINT, ok=True)
    marks.command_done(K.COMMAND_KIND_FENCE, ok=True)
    marks.command_done(K.COMMAND_KIND_UNFENCE, ok=False)
    assert marks.draining == "FENCE f1"  # fenced, and still so
    marks.command_done(K.COMMAND_KIND_UNFENCE, ok=True)
    assert marks.draining == ""
    for kind in (K.COMMAND_KIND_PROMOTE, K.COMMAND_KIND_REJOIN):
        marks.fence_coming("FENCE f2")
        marks.command_done(kind, ok=True)
        assert marks.draining == ""


def test_a_fence_that_failed_leaves_the_drain_to_the_lease_and_the_word():
    marks = Marks()
    marks.fence_coming("the fence lease ran out: fencing itself")
    marks.command_done(K.COMMAND_KIND_FENCE, ok=False)
    assert marks.draining == ""


def test_promoted_lasts_until_a_word_says_no_failover_is_under_way():
    marks = Marks()
    marks.command_done(K.COMMAND_KIND_PROMOTE, ok=False)
    assert not marks.promoted
    marks.command_done(K.COMMAND_KIND_PROMOTE, ok=True)
    marks.word_seen(Word(REGION, True, 8))
    assert marks.promoted
    marks.word_seen(Word(REGION, False, 8))
    assert not marks.promoted


def test_a_streaming_standby_is_a_replica_within_its_lag_bound():
    s = snap(standby_db())
    assert health.replica(s) == health.Answer(200, "a streaming standby of eu-west-1")
    assert health.replica(s, parse_lag("96")).ok
    assert health.replica(s, parse_lag("95")) == health.Answer(
        503, "replay lag 96 bytes exceeds lag=95"
    )
    assert health.replica(s, parse_lag("400ms")).ok
    assert health.replica(s, parse_lag("399ms")) == health.Answer(
        503, "replay lag 0.400 s exceeds lag=399ms"
    )


@pytest.mark.parametrize(
    ("database", "reason"),
    [
        (primary_db(), "the database is a primary, not a standby"),
        (standby_db(fenced=True), "the standby is fenced"),
        (standby_db(wal_receiver_streaming=False), "the standby is not streaming"),
        (
            common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_UNKNOWN),
            "the database is UNKNOWN",
        ),
    ],
)
def test_what_is_not_a_replica(database, reason):
    assert health.replica(snap(database)) == health.Answer(503, reason)


IN_MAINTENANCE = Word("us-east-1", False, 8, maintenance=True)


def test_a_standby_in_maintenance_is_no_replica_however_close_it_follows():
    s = snap(standby_db(), word=IN_MAINTENANCE)
    expected = health.Answer(503, "region in maintenance (the leader, epoch 8)")
    assert health.replica(s) == expected
    assert health.replica(s, parse_lag("1GB")) == expected
    assert health.read_only(s, parse_lag("1GB")) == health.Answer(
        503,
        "not the primary (the database is a standby), nor a replica (region in maintenance "
        "(the leader, epoch 8))",
    )
    body = health.body(s, health.replica(s))
    assert (body["maintenance"], body["reason"]) == (True, expected.reason)


def test_maintenance_comes_and_goes_with_the_leaders_words():
    """The agent keeps the newest word (Failsafe.word_seen, given every Welcome and ReportAck
    by the link): /replica turns with the word that sets the flag, stays so while a deposed
    leader says otherwise, and is 200 again with the next word that clears it."""
    failsafe = Failsafe(REGION, clock=lambda: 0.0)
    seen = []
    for word, epoch in [
        (agent_pb2.ClusterWord(write_region="eu-west-1"), 8),
        (agent_pb2.ClusterWord(write_region="eu-west-1", maintenance=True), 8),
        (agent_pb2.ClusterWord(write_region="eu-west-1"), 7),  # a deposed leader's: ignored
        (agent_pb2.ClusterWord(write_region="eu-west-1", maintenance=True), 9),
        (agent_pb2.ClusterWord(write_region="eu-west-1"), 9),
    ]:
        failsafe.word_seen(word, epoch)
        answer = health.replica(snap(standby_db(), word=failsafe.word))
        seen.append((answer.status, answer.reason))
    assert seen == [
        (200, "a streaming standby of eu-west-1"),
        (503, "region in maintenance (the leader, epoch 8)"),
        (503, "region in maintenance (the leader, epoch 8)"),
        (503, "region in maintenance (the leader, epoch 9)"),
        (200, "a streaming standby of eu-west-1"),
    ]


@pytest.mark.parametrize(("maintenance", "status"), [(True, 503), (False, 200)])
def test_a_word_from_a_leader_long_gone_still_decides_maintenance(maintenance, status):
    """No leader for well past the fence lease (an etcd outage): the newest word stands, as
    for every other answer. The flag lives in etcd and only a leader clears it; a word
    without it keeps reads flowing while the control plane is away."""
    word = Word("us-east-1", False, 8, maintenance=maintenance)
    s = snap(standby_db(), word=word, lease_remaining=-60.0)
    assert health.replica(s).status == status


def test_maintenance_leaves_the_process_healthy_live_and_ready():
    s = snap(standby_db(), word=IN_MAINTENANCE)
    assert health.health(s) == health.Answer(200, "the database runs as a standby")
    assert health.liveness(s) == health.Answer(200, "the agent's loops are going round")
    assert health.readiness(s) == health.Answer(
        200, "the agent knows the cluster and its database runs"
    )


def test_maintenance_of_the_primary_region_answers_no_on_primary_only_through_the_drain():
    """The leader puts the write region in maintenance only after a switchover drained it:
    the FENCE's mark turns /primary first, then the region is a standby of another write
    region. The flag itself adds no rule to /primary (a write region in maintenance would
    be the leader's error, and saying no would take writes down with nowhere else to go)."""
    drained = snap(
        draining="FENCE f1 from the leader (epoch 8): draining us-east-1 for maintenance"
    )
    assert health.primary(drained) == health.Answer(
        503, "draining: FENCE f1 from the leader (epoch 8): draining us-east-1 for maintenance"
    )
    after = snap(standby_db(), word=Word("eu-west-1", False, 8, maintenance=True))
    assert health.primary(after) == health.Answer(503, "the database is a standby")
    assert health.replica(after).reason == "region in maintenance (the leader, epoch 8)"
    assert health.primary(snap(word=Word(REGION, False, 8, maintenance=True))).ok


def test_read_only_is_the_primary_or_a_replica_in_bounds():
    assert health.read_only(snap()).ok
    assert health.read_only(snap(standby_db()), parse_lag("1MB")).ok
    fenced = snap(primary_db(fenced=True, fence_cause=common_pb2.FENCE_CAUSE_COMMAND))
    assert health.read_only(fenced) == health.Answer(
        503,
        "not the primary (the database is fenced (command)), nor a replica (the database is a "
        "primary, not a standby)",
    )


def test_health_is_the_database_running_whatever_its_role():
    assert health.health(snap()) == health.Answer(200, "the database runs as a primary")
    fenced = snap(primary_db(fenced=True))
    assert health.health(fenced).ok
    assert health.health(snap(standby_db())) == health.Answer(200, "the database runs as a standby")
    down = snap(common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_DOWN))
    assert health.health(down) == health.Answer(503, "the database is DOWN")


def test_liveness_names_the_stuck_loops():
    assert health.liveness(snap()) == health.Answer(200, "the agent's loops are going round")
    stuck = snap(loop_ages={"probe": 12.04, "report": 0.1, "fence timer": 10.5})
    assert health.liveness(stuck) == health.Answer(
        503, "stuck for over 10.0 s: fence timer (10.5 s), probe (12.0 s)"
    )


def test_readiness_needs_a_leader_heard_once_and_the_database_running():
    assert health.readiness(snap()) == health.Answer(
        200, "the agent knows the cluster and its database runs"
    )
    assert health.readiness(snap(word=None)) == health.Answer(
        503, "no word from a leader since the agent started"
    )
    # A word from a leader gone since (etcd down): still ready, whatever the word says.
    assert health.readiness(snap(standby_db(), word=Word("", True, 3))).ok
    assert health.readiness(snap(observed_age=5.0)).reason.startswith("the newest observation")
    assert not health.readiness(snap(loop_ages={"probe": 11.0})).ok


def test_the_body_says_what_the_answer_rests_on():
    s = snap(standby_db(), word=Word("eu-west-1", False, 7), lease_remaining=math.inf)
    s = dataclasses.replace(s, lease_remaining=3.25)
    answer = health.replica(s)
    assert health.body(s, answer) == {
        "region": REGION,
        "status": 200,
        "reason": "a streaming standby of eu-west-1",
        "role": "standby",
        "timeline": 2,
        "lsn": {"current": None, "received": "0/3000060", "replayed": "0/3000000"},
        "lag": {"bytes": 96, "seconds": 0.4},
        "streaming": True,
        "upstream": "eu-west-1",
        "fenced": False,
        "fence_cause": None,
        "draining": None,
        "maintenance": False,
        "write_region": "eu-west-1",
        "failover_in_progress": False,
        "leader_epoch": 7,
        "lease_remaining_seconds": 3.25,
        "observed_seconds_ago": 0.2,
    }
    first = snap(word=None, observed_age=math.inf, database=common_pb2.DatabaseStatus())
    empty = health.body(first, health.primary(first))
    assert empty["observed_seconds_ago"] is None and empty["leader_epoch"] is None
    assert empty["maintenance"] is None
    assert empty["lsn"] == {"current": None, "received": None, "replayed": None}
    primary = health.body(snap(), health.primary(snap()))
    assert primary["lsn"]["current"] == "1/60" and primary["lag"] is None


@pytest.mark.parametrize(
    ("text", "limit", "in_bytes"),
    [
        ("16MB", 16 << 20, True),
        ("1GB", 1 << 30, True),
        ("1048576", 1 << 20, True),
        ("512kB", 512 << 10, True),
        ("2MiB", 2 << 20, True),
        ("1.5MB", 3 << 19, True),
        ("10s", 10.0, False),
        ("500ms", 0.5, False),
        ("2min", 120.0, False),
        ("0", 0, True),
    ],
)
def test_lag_bounds_are_sizes_or_durations(text, limit, in_bytes):
    bound = parse_lag(text)
    assert (bound.limit, bound.in_bytes, bound.text) == (limit, in_bytes, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "",
            "lag='': expected a size such as 16MB, 1GB or 1048576 (bytes), or a duration "
            "such as 10s or 500ms",
        ),
        ("-1MB", "lag='-1MB': expected a size"),
        ("16XB", "lag='16XB': unknown unit 'XB'; expected a size"),
        ("10m", "lag='10m': unknown unit 'm'"),
        ("0.5", "lag='0.5': a size must come to a whole number of bytes"),
        ("1e9", "lag='1e9': expected a size"),
        ("MB", "lag='MB': expected a size"),
    ],
)
def test_a_bad_lag_bound_is_refused_naming_it(text, message):
    with pytest.raises(BadLag) as caught:
        parse_lag(text)
    assert str(caught.value).startswith(message)

"""The registry and the message checks: pure code, fake clocks, no servers."""

from __future__ import annotations

import math

import pytest

from coordinator.detector import RegionState
from coordinator.registry import HealthPolicy, RegionHeld, Registry
from coordinator.validation import InvalidMessage, check_hello, check_report
from latitude.status_view import format_cluster, peer_rtts
from latitude.v1 import admin_pb2, agent_pb2, common_pb2

REGIONS = ("us-east-1", "eu-west-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hello(region="us-east-1", agent_id="a1", **fields) -> agent_pb2.Hello:
    message = agent_pb2.Hello(
        region=region,
        agent_id=agent_id,
        location=common_pb2.Location(latitude=38.9, longitude=-77.4),
        capacity=100,
        endpoints=[
            common_pb2.Endpoint(
                name="pg", kind=common_pb2.ENDPOINT_KIND_POSTGRES, address="10.0.0.1:5432"
            )
        ],
    )
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def report(sequence=1, role=common_pb2.DATABASE_ROLE_PRIMARY, **fields) -> agent_pb2.Report:
    message = agent_pb2.Report(
        sequence=sequence, database=common_pb2.DatabaseStatus(role=role), **fields
    )
    message.sent_at.GetCurrentTime()
    return message


def registry(clock: Clock) -> Registry:
    return Registry(REGIONS, HealthPolicy(lag_budget_bytes=1000), clock=clock, wall=clock)


def test_a_second_agent_is_refused_while_the_first_reports():
    clock = Clock()
    reg = registry(clock)
    first = object()
    record = reg.attach(hello(agent_id="a1"), first)
    reg.report(record, report())
    with pytest.raises(RegionHeld) as held:
        reg.attach(hello(agent_id="a2"), object())
    assert str(held.value) == (
        "region us-east-1 is already reported by agent 'a1' on a stream that is still "
        "reporting (a new stream may take over once it has been silent for 1.5 s)"
    )
    assert record.session is first


def test_the_same_agent_id_does_not_swap_a_stream_that_still_reports():
    # Agent ids are public (GetStatus): saying the same one proves nothing.
    clock = Clock()
    reg = registry(clock)
    first = object()
    record = reg.attach(hello(agent_id="a1"), first)
    reg.report(record, report())
    clock.now += 1.5  # silent for exactly the suspect deadline: not yet past it
    with pytest.raises(RegionHeld, match="already reported by agent 'a1'"):
        reg.attach(hello(agent_id="a1"), object())
    assert record.session is first


def test_the_agent_back_from_a_blip_takes_over_its_stream_gone_quiet():
    clock = Clock()
    reg = registry(clock)
    record = reg.attach(hello(agent_id="a1"), object())
    reg.report(record, report(sequence=7))
    clock.now += 1.6  # its old stream died half-open: nothing since
    again = object()
    assert reg.attach(hello(agent_id="a1"), again) is record
    assert record.session is again and record.sequence == 0


def test_another_agent_takes_over_a_stream_gone_quiet():
    clock = Clock()
    reg = registry(clock)
    record = reg.attach(hello(agent_id="a1"), object())
    reg.report(record, report())
    clock.now += 1.6
    reg.attach(hello(agent_id="a2"), object())
    assert record.agent_id == "a2"


def test_a_stream_that_never_reported_holds_nothing():
    reg = registry(Clock())
    reg.attach(hello(agent_id="a1"), object())
    second = object()
    assert reg.attach(hello(agent_id="a1"), second).session is second


def test_a_detached_region_is_free_at_once():
    reg = registry(Clock())
    first = object()
    record = reg.attach(hello(agent_id="a1"), first)
    reg.report(record, report())
    reg.detach("us-east-1", first)
    assert reg.attach(hello(agent_id="a2"), object()) is record


def test_silence_is_detected_by_evaluate_and_published_as_dirty():
    clock = Clock()
    reg = registry(clock)
    record = reg.attach(hello(), object())
    change = reg.report(record, report())
    assert change.after.state is RegionState.HEALTHY
    reg.dirty.clear()
    clock.now += 1.0
    assert reg.evaluate() == []
    clock.now += 0.6
    (change,) = reg.evaluate()
    assert change.region == "us-east-1" and change.after.state is RegionState.UNHEALTHY
    assert reg.dirty == {"us-east-1"}


def test_a_silent_agent_whose_database_is_streamed_from_is_degraded_not_unhealthy():
    clock = Clock()
    reg = registry(clock)
    primary = reg.attach(hello(), object())
    second = hello("eu-west-1", "a2")
    second.endpoints[0].address = "10.0.0.2:5432"
    standby = reg.attach(second, object())
    reg.report(primary, report())
    streaming = dict(wal_receiver_streaming=True, upstream_address="10.0.0.1:5432")
    for step in range(1, 6):  # the standby goes on reporting; the primary's agent is silent
        clock.now += 0.5
        message = report(sequence=step, role=common_pb2.DATABASE_ROLE_STANDBY)
        message.database.MergeFrom(common_pb2.DatabaseStatus(**streaming))
        reg.report(standby, message)
        reg.evaluate()
    state = reg.regions["us-east-1"].monitor.current
    assert state.state is RegionState.DEGRADED
    assert state.reason == (
        "no report for over 1.5 s, but eu-west-1 still stream WAL from its database"
    )
    # The stream stops too: now nothing says it lives.
    clock.now += 0.5
    message = report(sequence=9, role=common_pb2.DATABASE_ROLE_STANDBY)
    reg.report(standby, message)
    reg.evaluate()
    assert reg.regions["us-east-1"].monitor.current.state is RegionState.UNHEALTHY


def test_standby_lag_is_measured_against_the_primary_and_degrades_past_budget():
    clock = Clock()
    reg = registry(clock)
    primary = reg.attach(hello("us-east-1", "p"), object())
    standby = reg.attach(hello("eu-west-1", "s"), object())
    head = report(role=common_pb2.DATABASE_ROLE_PRIMARY)
    head.database.current_lsn = 50_000
    reg.report(primary, head)
    behind = report(role=common_pb2.DATABASE_ROLE_STANDBY)
    behind.database.replayed_lsn = 40_000
    behind.database.wal_receiver_streaming = True
    change = reg.report(standby, behind)
    assert change.after.state is RegionState.DEGRADED
    assert "replica lag 9.8 KiB over budget" in change.after.reason
    status = reg.status("eu-west-1")
    assert status.replay_lag_bytes == 10_000
    assert status.state == common_pb2.REGION_STATE_DEGRADED
    assert reg.primary() is primary


def test_a_database_down_is_degraded_not_unhealthy():
    clock = Clock()
    reg = registry(clock)
    record = reg.attach(hello(), object())
    down = report(role=common_pb2.DATABASE_ROLE_DOWN)
    down.database.probe_error = "connection refused"
    change = reg.report(record, down)
    assert change.after.state is RegionState.DEGRADED
    assert change.after.reason == "database down: connection refused"


def test_failing_checks_and_errors_are_named():
    clock = Clock()
    reg = registry(clock)
    record = reg.attach(hello(), object())
    bad = report(
        checks=[common_pb2.CheckResult(name="api", ok=False, error="HTTP 503")], error_rate=0.5
    )
    assert reg.report(record, bad).after.reason == "check api failing: HTTP 503; error rate 50%"


def test_status_carries_utilization_and_peer_rtts():
    clock = Clock()
    reg = registry(clock)
    record = reg.attach(hello(), object())
    peers = [
        agent_pb2.PeerRtt(region="eu-west-1", rtt_seconds=0.08, reachable=True),
        agent_pb2.PeerRtt(region="ap-southeast-1", reachable=False),
    ]
    reg.report(record, report(capacity_utilization=0.75, peers=peers))
    status = reg.status("us-east-1")
    assert status.capacity_utilization == 0.75
    assert list(status.peers) == peers


def test_status_view_shows_peer_rtts_as_a_matrix():
    clock = Clock()
    reg = registry(clock)
    record = reg.attach(hello(), object())
    peers = [
        agent_pb2.PeerRtt(region="eu-west-1", rtt_seconds=0.0761, reachable=True),
        agent_pb2.PeerRtt(region="ap-southeast-1", reachable=False),
    ]
    reg.report(record, report(peers=peers))
    cluster = admin_pb2.ClusterStatus(regions=[reg.status(r) for r in REGIONS])
    lines = peer_rtts(cluster).splitlines()
    assert lines[0].split() == ["RTT", "FROM", "\\", "TO", "us-east-1", "eu-west-1"]
    assert lines[-1].split() == ["us-east-1", "-", "76", "ms"]
    assert "RTT FROM" in format_cluster(cluster)
    # ap-southeast-1 is not a column here (not in this cluster); a region that reports nothing
    # gets no row
    assert len(lines) == 3 and "eu-west-1" not in lines[-1]


def test_status_view_leaves_out_rtts_when_no_agent_reports_them():
    reg = registry(Clock())
    reg.report(reg.attach(hello(), object()), report())
    cluster = admin_pb2.ClusterStatus(regions=[reg.status(r) for r in REGIONS])
    assert peer_rtts(cluster) == ""
    assert "RTT FROM" not in format_cluster(cluster)


def test_status_view_flags_a_fenced_write_region_outside_a_failover():
    fenced = common_pb2.DatabaseStatus(
        role=common_pb2.DATABASE_ROLE_PRIMARY,
        fenced=True,
        fence_cause=common_pb2.FENCE_CAUSE_COMMAND,
    )
    region = admin_pb2.RegionStatus(region="us-east-1", database=fenced)
    cluster = admin_pb2.ClusterStatus(write_region="us-east-1", regions=[region])
    assert "WARNING: the write region's primary (us-east-1) is FENCED (command)" in (
        format_cluster(cluster)
    )
    # While a failover runs, its fence is expected.
    cluster.failover.failover_id = "7f3a"
    assert "WARNING" not in format_cluster(cluster)
    cluster.ClearField("failover")
    cluster.regions[0].database.fenced = False
    assert "WARNING" not in format_cluster(cluster)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (hello(region="mars-1"), "hello.region"),
        (hello(region=""), "hello.region"),
        (hello(agent_id=""), "hello.agent_id"),
        (hello(capacity=0), "hello.capacity"),
    ],
)
def test_bad_hellos_name_the_field(message, field):
    with pytest.raises(InvalidMessage) as raised:
        check_hello(message, REGIONS)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("latitude", "longitude", "field"),
    [
        (91.0, 0.0, "hello.location.latitude"),
        (math.nan, 0.0, "hello.location.latitude"),
        (0.0, -180.5, "hello.location.longitude"),
    ],
)
def test_out_of_range_locations_are_refused(latitude, longitude, field):
    message = hello()
    message.location.latitude = latitude
    message.location.longitude = longitude
    with pytest.raises(InvalidMessage, match=field):
        check_hello(message, REGIONS)


def test_a_hello_needs_exactly_one_postgres_endpoint():
    message = hello()
    message.endpoints.append(message.endpoints[0])
    with pytest.raises(InvalidMessage, match="exactly one POSTGRES endpoint, got 2"):
        check_hello(message, REGIONS)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"error_rate": math.nan}, "report.error_rate"),
        ({"error_rate": 1.5}, "report.error_rate"),
        ({"capacity_utilization": -0.1}, "report.capacity_utilization"),
        ({"response_time_seconds": math.inf}, "report.response_time_seconds"),
        (
            {"checks": [common_pb2.CheckResult(name="x", latency_seconds=-1)]},
            "report.checks[0].latency_seconds",
        ),
        ({"peers": [agent_pb2.PeerRtt(region="", rtt_seconds=0.1)]}, "report.peers[0].region"),
        (
            {
                "checks": [
                    common_pb2.CheckResult(name="api", latency_seconds=0.1),
                    common_pb2.CheckResult(name="x" * 129, latency_seconds=0.1),
                ]
            },
            "report.checks[1].name",
        ),
        (
            {
                "peers": [
                    agent_pb2.PeerRtt(region="a", rtt_seconds=0.1),
                    agent_pb2.PeerRtt(region="b", rtt_seconds=math.nan),
                ]
            },
            "report.peers[1].rtt_seconds",
        ),
    ],
)
def test_bad_reports_name_the_field(fields, field):
    with pytest.raises(InvalidMessage, match=field.replace("[", r"\[").replace("]", r"\]")):
        check_report(report(**fields), previous_sequence=0)


def test_sequence_numbers_must_increase_but_may_skip():
    check_report(report(sequence=7), previous_sequence=3)
    with pytest.raises(InvalidMessage, match="report.sequence: 3 does not follow 3"):
        check_report(report(sequence=3), previous_sequence=3)
    unsent = report()
    unsent.ClearField("sent_at")
    with pytest.raises(InvalidMessage, match="report.sent_at: required"):
        check_report(unsent, previous_sequence=0)


@pytest.mark.parametrize("skew", [-30.0, 30.0])
def test_lag_is_measured_on_the_leaders_clock_whatever_an_agents_clock_says(skew):
    """A standby agent's clock 30 s behind or ahead: its observations are placed on the
    leader's clock, so it is compared with the primary as it was, not 30 s off."""
    clock = Clock()
    reg = registry(clock)
    primary = reg.attach(hello(), object())
    standby = reg.attach(hello("eu-west-1", "a2"), object())
    for step in range(40):  # the primary writes 100 bytes every 0.5 s
        clock.now += 0.5
        lsn = 10_000 + 100 * step
        db = common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_PRIMARY, current_lsn=lsn)
        db.observed_at.FromNanoseconds(int(clock.now * 1e9))
        message = agent_pb2.Report(sequence=step + 1, database=db)
        message.sent_at.FromNanoseconds(int(clock.now * 1e9))
        reg.report(primary, message)
        # The standby, observed at the same moment, has replayed all but the last write.
        own = clock.now + skew  # what the standby agent's clock says
        db = common_pb2.DatabaseStatus(
            role=common_pb2.DATABASE_ROLE_STANDBY,
            replayed_lsn=lsn - 100,
            wal_receiver_streaming=True,
        )
        db.observed_at.FromNanoseconds(int(own * 1e9))
        message = agent_pb2.Report(sequence=step + 1, database=db)
        message.sent_at.FromNanoseconds(int(own * 1e9))
        clock.now += 0.002  # in flight
        reg.report(standby, message)
    assert reg.lag(standby)[0] == 100

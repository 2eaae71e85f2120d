"""Availability, failback ramps, weights and the table the leader builds from them."""

from __future__ import annotations

import pytest

from coordinator.routing import FailbackRamp, tables_differ
from coordinator.routing.weights import (
    base_availability,
    headroom,
    region_availability,
    region_weights,
)
from latitude.v1 import common_pb2, routing_pb2
from tests.unit.routing_tables import REGIONS, make_table, status

HEALTHY = common_pb2.REGION_STATE_HEALTHY
DEGRADED = common_pb2.REGION_STATE_DEGRADED
UNHEALTHY = common_pb2.REGION_STATE_UNHEALTHY
PENDING = common_pb2.REGION_STATE_PENDING
FAILOVER = common_pb2.REGION_STATE_FAILOVER
MAINTENANCE = common_pb2.REGION_STATE_MAINTENANCE


def table(statuses, **settings):
    return make_table(statuses, **settings)


@pytest.mark.parametrize(
    ("state", "availability"),
    [
        (HEALTHY, 1.0),
        (DEGRADED, 0.5),
        (PENDING, 0.0),
        (UNHEALTHY, 0.0),
        (FAILOVER, 0.0),
        (MAINTENANCE, 0.0),
        (common_pb2.REGION_STATE_UNSPECIFIED, 0.0),
    ],
)
def test_state_decides_availability(state, availability):
    assert base_availability(state) == availability


def test_failback_climbs_in_five_steps_over_the_ramp():
    ramp = FailbackRamp(ramp_seconds=20.0)
    assert ramp.availability("eu-west-1", 1.0, 0.0) == 1.0  # first seen: no history, no ramp
    assert ramp.availability("eu-west-1", 0.0, 1.0) == 0.0
    assert ramp.next_change_at(1.0) is None
    back = 10.0
    seen = [ramp.availability("eu-west-1", 1.0, back + t) for t in (0, 4.9, 5, 10, 15, 19.9)]
    assert seen == pytest.approx([0.1, 0.1, 0.325, 0.55, 0.775, 0.775])
    assert ramp.ramping() == {"eu-west-1": back}
    assert ramp.availability("eu-west-1", 1.0, back + 20.0) == 1.0
    assert ramp.ramping() == {}
    assert ramp.availability("eu-west-1", 1.0, back + 100.0) == 1.0


def test_the_ramp_scales_a_degraded_region_too():
    ramp = FailbackRamp()
    ramp.availability("us-east-1", 0.0, 0.0)
    assert ramp.availability("us-east-1", 0.5, 1.0) == pytest.approx(0.05)
    assert ramp.availability("us-east-1", 1.0, 6.0) == pytest.approx(0.325)


def test_next_change_at_says_when_to_rebuild():
    ramp = FailbackRamp(ramp_seconds=20.0)
    ramp.availability("a", 0.0, 0.0)
    ramp.availability("b", 0.0, 0.0)
    ramp.availability("a", 1.0, 100.0)
    ramp.availability("b", 1.0, 102.0)
    assert ramp.next_change_at(100.0) == 105.0
    assert ramp.next_change_at(105.0) == 107.0
    # Rebuilding exactly at the announced time sees the new step, so the loop advances.
    due = ramp.next_change_at(106.0)
    assert ramp.availability("b", 1.0, due) == pytest.approx(0.325)
    assert ramp.next_change_at(due) == 110.0
    ramp.availability("a", 1.0, 120.0)
    ramp.availability("b", 1.0, 122.0)
    assert ramp.next_change_at(122.0) is None


def test_dropping_during_the_ramp_restarts_it_later():
    ramp = FailbackRamp(ramp_seconds=20.0)
    ramp.availability("ap-southeast-1", 0.0, 0.0)
    ramp.availability("ap-southeast-1", 1.0, 10.0)
    assert ramp.availability("ap-southeast-1", 1.0, 22.0) == pytest.approx(0.55)
    assert ramp.availability("ap-southeast-1", 0.0, 23.0) == 0.0
    assert ramp.next_change_at(23.0) is None
    assert ramp.availability("ap-southeast-1", 1.0, 50.0) == pytest.approx(0.1)
    assert ramp.next_change_at(50.0) == 55.0


def test_no_ramp_when_ramp_seconds_is_zero():
    ramp = FailbackRamp(ramp_seconds=0.0)
    ramp.availability("a", 0.0, 0.0)
    assert ramp.availability("a", 1.0, 1.0) == 1.0
    assert ramp.next_change_at(1.0) is None


@pytest.mark.parametrize(("seconds", "steps"), [(-1.0, 5), (float("nan"), 5), (20.0, 1)])
def test_a_ramp_needs_sane_settings(seconds, steps):
    with pytest.raises(ValueError):
        FailbackRamp(ramp_seconds=seconds, steps=steps)


def test_pending_is_not_down_so_a_new_leader_does_not_ramp_every_region():
    ramp = FailbackRamp()
    assert region_availability(status("us-east-1", PENDING), ramp, 0.0) == 0.0
    assert region_availability(status("us-east-1", HEALTHY), ramp, 0.5) == 1.0
    assert region_availability(status("us-east-1", UNHEALTHY), ramp, 1.0) == 0.0
    assert region_availability(status("us-east-1", HEALTHY), ramp, 2.0) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("utilization", "room"),
    [(0.0, 1.0), (0.3, 0.7), (0.95, 0.05), (1.0, 0.05), (1.7, 0.05), (float("nan"), 0.05)],
)
def test_headroom_is_floored(utilization, room):
    assert headroom(utilization) == pytest.approx(room)


def test_weights_follow_capacity_availability_and_headroom():
    statuses = [
        status("us-east-1", capacity=200, capacity_utilization=0.5),  # 200 x 1 x 0.5 = 100
        status("eu-west-1", capacity=100, capacity_utilization=0.0),  # 100 x 0.5 x 1 = 50
        status("ap-southeast-1", capacity=100, capacity_utilization=1.2),  # 100 x 1 x 0.05 = 5
    ]
    availability = {"us-east-1": 1.0, "eu-west-1": 0.5, "ap-southeast-1": 1.0}
    weights = region_weights(statuses, availability)
    assert weights == pytest.approx(
        {"us-east-1": 100 / 155, "eu-west-1": 50 / 155, "ap-southeast-1": 5 / 155}
    )
    assert sum(weights.values()) == pytest.approx(1.0)


def test_weights_are_all_zero_when_nothing_can_take_traffic():
    statuses = [status(name) for name in REGIONS]
    assert region_weights(statuses, dict.fromkeys(REGIONS, 0.0)) == dict.fromkeys(REGIONS, 0.0)


def test_an_unknown_capacity_counts_as_one_share():
    statuses = [status("us-east-1", capacity=0), status("eu-west-1", capacity=1)]
    weights = region_weights(statuses, {"us-east-1": 1.0, "eu-west-1": 1.0})
    assert weights == {"us-east-1": 0.5, "eu-west-1": 0.5}


def test_the_table_carries_every_region_sorted_with_routing_figures():
    statuses = [
        status(
            "us-east-1",
            capacity_utilization=0.2,
            response_time_seconds=0.012,
            database=common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_PRIMARY),
        ),
        status(
            "eu-west-1", DEGRADED, replay_lag_seconds=2.5, replay_lag_bytes=4096, error_rate=0.07
        ),
        status("ap-southeast-1", UNHEALTHY),
    ]
    built = table(statuses)
    assert [r.region for r in built.regions] == ["ap-southeast-1", "eu-west-1", "us-east-1"]
    ap, eu, us = built.regions
    assert (ap.availability, ap.readable, ap.weight) == (0.0, False, 0.0)
    assert (eu.availability, eu.readable) == (0.5, True)
    assert (us.availability, us.readable) == (1.0, True)
    assert eu.weight == pytest.approx(50 / (50 + 80))
    assert us.weight == pytest.approx(80 / (50 + 80))
    assert (eu.replay_lag_seconds, eu.replay_lag_bytes, eu.error_rate) == (2.5, 4096, 0.07)
    assert (us.role, us.response_time_seconds) == (common_pb2.DATABASE_ROLE_PRIMARY, 0.012)
    assert us.location.latitude == 39.04 and us.endpoints[0].address == "us-east-1.db.internal:5432"
    assert built.write_region == "us-east-1" and built.version == 7
    assert built.generated_at.ToNanoseconds() == 1000 * 10**9
    assert built.default_strategy == routing_pb2.STRATEGY_GEOGRAPHIC
    assert built.default_max_replica_lag_seconds == 30.0
    assert (built.panic_threshold, built.overprovisioning_factor) == (0.1, 1.4)
    assert built.latency_model.seconds_per_km == 1.5e-5


def test_the_write_region_has_no_lag_and_unknown_prefix_regions_are_left_out():
    statuses = [status("us-east-1", replay_lag_seconds=3.0), status("eu-west-1")]
    measured = [
        routing_pb2.PrefixLatency(
            network_prefix="203.0.113.0/24", region="eu-west-1", latency_seconds=0.08, samples=3
        ),
        routing_pb2.PrefixLatency(
            network_prefix="203.0.113.0/24", region="mars-1", latency_seconds=0.9, samples=1
        ),
    ]
    built = table(statuses, prefix_latencies=measured)
    assert built.regions[1].replay_lag_seconds == 0.0
    assert [p.region for p in built.prefix_latencies] == ["eu-west-1"]


def test_a_recovering_region_ramps_in_successive_tables():
    ramp = FailbackRamp(ramp_seconds=20.0)
    statuses = [status(name) for name in REGIONS]
    table(statuses, ramp=ramp, now=0.0)
    statuses[1] = status("eu-west-1", UNHEALTHY)
    assert table(statuses, ramp=ramp, now=1.0).regions[1].readable is False
    statuses[1] = status("eu-west-1", HEALTHY)
    first = table(statuses, ramp=ramp, now=2.0)
    assert first.regions[1].availability == pytest.approx(0.1)
    assert first.regions[1].weight == pytest.approx(10 / 210)
    assert ramp.next_change_at(2.0) == 7.0
    assert table(statuses, ramp=ramp, now=22.0).regions[1].availability == 1.0


def test_tables_differ_ignores_version_and_build_time():
    statuses = [status(name) for name in REGIONS]
    a = table(statuses, version=1, now=10.0)
    b = table(statuses, version=2, now=11.0)
    assert not tables_differ(a, b)
    statuses[0] = status("us-east-1", DEGRADED)
    assert tables_differ(a, table(statuses, version=3, now=12.0))
    assert tables_differ(a, table([status(n) for n in REGIONS], write_region="eu-west-1"))

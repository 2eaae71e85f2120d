"""Routing decisions from tables built the way the leader builds them, for real places."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from coordinator.routing import FailbackRamp
from latitude.errors import LatitudeError
from latitude.geo import Located, great_circle_km
from latitude.routing import InvalidRequest, Resolver
from latitude.v1 import admin_pb2, common_pb2, routing_pb2
from tests.unit.routing_tables import AP, EU, REGIONS, US, make_table, status

HEALTHY = common_pb2.REGION_STATE_HEALTHY
DEGRADED = common_pb2.REGION_STATE_DEGRADED
UNHEALTHY = common_pb2.REGION_STATE_UNHEALTHY
MAINTENANCE = common_pb2.REGION_STATE_MAINTENANCE
GEOGRAPHIC = routing_pb2.STRATEGY_GEOGRAPHIC
LATENCY = routing_pb2.STRATEGY_LATENCY
WEIGHTED = routing_pb2.STRATEGY_WEIGHTED
ROUND_ROBIN = routing_pb2.STRATEGY_ROUND_ROBIN
HEALTH_BASED = routing_pb2.STRATEGY_HEALTH_BASED
READ = routing_pb2.INTENT_READ
WRITE = routing_pb2.INTENT_WRITE
EXPLICIT = routing_pb2.LOCATION_SOURCE_EXPLICIT

CLIENTS = {
    "new york": (40.71, -74.01),
    "london": (51.51, -0.13),
    "frankfurt": (50.11, 8.68),
    "singapore": (1.29, 103.85),
    "tokyo": (35.68, 139.69),
}
NEAREST = {"new york": US, "london": EU, "frankfurt": EU, "singapore": AP, "tokyo": AP}
NEXT_NEAREST = {"new york": EU, "london": US, "frankfurt": US, "singapore": EU, "tokyo": EU}
PREFIX = "203.0.113.0/24"


def client(place: str, prefix: str = PREFIX) -> Located:
    return Located(*CLIENTS[place], EXPLICIT, "explicit location", prefix)


def resolver(*changed: admin_pb2.RegionStatus, ramp=None, now=1000.0, **overrides) -> Resolver:
    statuses = {name: status(name) for name in REGIONS}
    statuses.update((s.region, s) for s in changed)
    overrides.setdefault("version", 42)
    overrides.setdefault("write_region", US)
    return Resolver(make_table(statuses.values(), ramp=ramp, now=now, **overrides))


def regions(decision: routing_pb2.RoutingDecision) -> list[str]:
    return [t.region for t in decision.targets]


def weights(decision: routing_pb2.RoutingDecision) -> list[float]:
    return [t.weight for t in decision.targets]


@pytest.mark.parametrize("place", CLIENTS)
def test_each_client_goes_to_its_nearest_region(place):
    decision = resolver().resolve(client=client(place))
    assert decision.targets[0].region == NEAREST[place]
    assert weights(decision) == [1.0, 0.0, 0.0]
    assert decision.strategy == GEOGRAPHIC
    assert not decision.no_healthy_region


@pytest.mark.parametrize("place", CLIENTS)
def test_an_unhealthy_nearest_region_sends_its_clients_to_the_next_nearest(place):
    decision = resolver(status(NEAREST[place], UNHEALTHY)).resolve(client=client(place))
    assert regions(decision)[0] == NEXT_NEAREST[place]
    assert NEAREST[place] not in regions(decision)
    assert weights(decision) == [1.0, 0.0]


def test_a_degraded_region_keeps_availability_times_overprovisioning_and_spills_the_rest():
    decision = resolver(status(US, DEGRADED)).resolve(client=client("new york"))
    assert regions(decision) == [US, EU, AP]
    assert weights(decision) == pytest.approx([0.7, 0.3, 0.0])
    assert decision.reason == (
        "nearest healthy region to 40.71,-74.01 (explicit location): us-east-1, 10.3 ms est. "
        "(70%; the rest spills over to eu-west-1)"
    )


def test_spill_over_cascades_and_the_last_region_takes_what_remains():
    decision = resolver(status(US, DEGRADED), status(EU, DEGRADED)).resolve(
        client=client("new york")
    )
    assert weights(decision) == pytest.approx([0.7, 0.21, 0.09])
    assert sum(weights(decision)) == pytest.approx(1.0)


def test_a_recovering_region_takes_its_traffic_back_in_steps():
    ramp = FailbackRamp(ramp_seconds=20.0)
    resolver(status(US, UNHEALTHY), ramp=ramp, now=0.0)
    first = []
    for now in (10.0, 15.0, 20.0, 25.0, 30.0):
        decision = resolver(ramp=ramp, now=now).resolve(client=client("new york"))
        assert regions(decision)[:2] == [US, EU]
        first.append(decision.targets[0].weight)
    # min(1, availability x 1.4) at 10 %, 32.5 %, 55 %, 77.5 %, 100 %.
    assert first == pytest.approx([0.14, 0.455, 0.77, 1.0, 1.0])


def test_the_decision_describes_the_client_and_every_target():
    decision = resolver(status(EU, replay_lag_seconds=1.5)).resolve(client=client("london"))
    assert decision.write_region == US
    assert decision.table_version == 42
    assert decision.location_source == EXPLICIT
    assert (decision.location.latitude, decision.location.longitude) == (51.51, -0.13)
    assert decision.latency_basis == "distance only"
    eu, us, _ = decision.targets
    assert (eu.region, eu.state, eu.writable, eu.replay_lag_seconds) == (EU, HEALTHY, False, 1.5)
    assert (us.writable, us.replay_lag_seconds) == (True, 0.0)
    assert eu.endpoints[0].address == "eu-west-1.db.internal:5432"
    for target in decision.targets:
        km = great_circle_km(*CLIENTS["london"], *REGIONS[target.region])
        assert target.distance_km == pytest.approx(km, rel=1e-9)
        assert target.estimated_latency_seconds == pytest.approx(0.005 + km * 1.5e-5)
    assert decision.reason.startswith("nearest healthy region to 51.51,-0.13 (explicit location)")


def test_each_decision_is_a_message_of_its_own():
    routes = resolver()
    first = routes.resolve(client=client("tokyo"))
    first.table_age_seconds = 9.0
    first.targets[0].weight = 0.0
    again = routes.resolve(client=client("tokyo"))
    assert again.table_age_seconds == 0.0 and again.targets[0].weight == 1.0


def test_latency_routing_prefers_measured_latencies_for_the_clients_prefix():
    measured = [
        routing_pb2.PrefixLatency(
            network_prefix=PREFIX, region=EU, latency_seconds=0.004, samples=6
        ),
    ]
    routes = resolver(prefix_latencies=measured)
    decision = routes.resolve(client=client("new york"), strategy=LATENCY)
    assert regions(decision) == [EU, US, AP]
    assert decision.strategy == LATENCY
    assert decision.targets[0].estimated_latency_seconds == 0.004
    assert decision.latency_basis == (
        "measured for 203.0.113.0/24 (6 samples) to eu-west-1; elsewhere distance only"
    )
    elsewhere = routes.resolve(client=client("new york", "198.51.100.0/24"), strategy=LATENCY)
    assert regions(elsewhere) == [US, EU, AP]
    assert elsewhere.latency_basis == "distance only"


def test_latency_routing_uses_the_calibrated_model_without_measurements():
    model = routing_pb2.LatencyModel(
        base_seconds=0.005, seconds_per_km=1.5e-5, region_factor={US: 5.0}
    )
    decision = resolver(latency_model=model).resolve(client=client("london"), strategy=LATENCY)
    us = next(t for t in decision.targets if t.region == US)
    assert us.estimated_latency_seconds == pytest.approx(0.005 + us.distance_km * 1.5e-5 * 5)
    assert decision.latency_basis == "distance, calibrated by agents' peer RTTs"
    # New York: us-east-1 at 350 km x 5 (0.031 s) is still nearer than eu-west-1 (0.082 s).
    decision = resolver(latency_model=model).resolve(client=client("new york"), strategy=LATENCY)
    assert regions(decision)[0] == US


def test_weighted_routing_splits_by_the_tables_weights():
    routes = resolver(
        status(US, capacity=200, capacity_utilization=0.5),
        status(EU, DEGRADED),
        status(AP, capacity_utilization=0.95),
    )
    decision = routes.resolve(client=client("tokyo"), strategy=WEIGHTED)
    assert regions(decision) == [US, EU, AP]
    assert weights(decision) == pytest.approx([100 / 155, 50 / 155, 5 / 155])
    assert decision.strategy == WEIGHTED


def test_weighted_routing_renormalises_over_the_regions_within_the_lag_budget():
    routes = resolver(status(AP, replay_lag_seconds=45.0))
    decision = routes.resolve(client=client("tokyo"), strategy=WEIGHTED)
    assert sorted(regions(decision)) == [EU, US]
    assert weights(decision) == pytest.approx([0.5, 0.5])


def test_round_robin_is_fair_over_ten_thousand_requests():
    routes = resolver()
    firsts = Counter()
    for _ in range(10_000):
        decision = routes.resolve(client=client("london"), strategy=ROUND_ROBIN)
        assert weights(decision) == [1.0, 0.0, 0.0]
        assert sorted(regions(decision)) == [AP, EU, US]
        firsts[decision.targets[0].region] += 1
    assert set(firsts) == {US, EU, AP}
    assert all(abs(count - 3333) <= 1 for count in firsts.values()), firsts


def test_round_robin_skips_regions_that_cannot_take_reads():
    routes = resolver(status(EU, UNHEALTHY))
    firsts = Counter(
        routes.resolve(client=client("london"), strategy=ROUND_ROBIN).targets[0].region
        for _ in range(100)
    )
    assert firsts == {US: 50, AP: 50}


def test_health_based_routing_puts_the_healthiest_first():
    routes = resolver(
        status(US, error_rate=0.02, response_time_seconds=0.010),
        status(EU, error_rate=0.0, response_time_seconds=0.030),
        status(AP, error_rate=0.0, response_time_seconds=0.020),
    )
    decision = routes.resolve(client=client("new york"), strategy=HEALTH_BASED)
    assert regions(decision) == [AP, EU, US]
    assert weights(decision) == [1.0, 0.0, 0.0]
    assert decision.reason.startswith("healthiest region (errors 0.0%, response 20.0 ms")


def test_the_tables_default_strategy_applies_when_the_request_names_none():
    decision = resolver(strategy=HEALTH_BASED).resolve(client=client("london"))
    assert decision.strategy == HEALTH_BASED


@pytest.mark.parametrize("strategy", [GEOGRAPHIC, LATENCY, WEIGHTED, ROUND_ROBIN, HEALTH_BASED])
def test_writes_go_only_to_the_write_region_whatever_the_strategy(strategy):
    decision = resolver(status(US, DEGRADED)).resolve(
        client=client("singapore"), strategy=strategy, intent=WRITE
    )
    (target,) = decision.targets
    assert (target.region, target.weight, target.writable) == (US, 1.0, True)
    assert target.distance_km == pytest.approx(15529, abs=1)
    assert decision.reason == "writes go to the primary in us-east-1 (region degraded)"


def test_writes_wait_while_a_failover_leaves_no_write_region():
    decision = resolver(write_region="", failover_in_progress=True).resolve(
        client=client("london"), intent=WRITE
    )
    assert list(decision.targets) == []
    assert decision.write_region == ""
    assert "writes must wait" in decision.reason
    assert not decision.no_healthy_region


def test_writes_never_panic_route():
    routes = resolver(*(status(name, UNHEALTHY) for name in REGIONS))
    decision = routes.resolve(client=client("london"), intent=WRITE)
    assert regions(decision) == [US]
    assert not decision.no_healthy_region


def test_a_replica_past_the_lag_budget_takes_no_reads():
    routes = resolver(status(AP, replay_lag_seconds=45.0))
    decision = routes.resolve(client=client("singapore"))
    assert regions(decision) == [EU, US]
    assert decision.reason.endswith("; skipped, replica lag over 30 s: ap-southeast-1")
    relaxed = routes.resolve(client=client("singapore"), max_replica_lag_seconds=60.0)
    assert regions(relaxed)[0] == AP


def test_a_zero_lag_budget_leaves_the_primary_and_caught_up_replicas():
    routes = resolver(status(US, replay_lag_seconds=5.0), status(EU, replay_lag_seconds=0.2))
    decision = routes.resolve(client=client("london"), max_replica_lag_seconds=0.0)
    assert regions(decision) == [US, AP]


def test_panic_when_nothing_can_take_reads_routes_everywhere_as_if_healthy():
    routes = resolver(*(status(name, UNHEALTHY) for name in REGIONS))
    decision = routes.resolve(client=client("frankfurt"))
    assert decision.no_healthy_region
    assert regions(decision) == [EU, US, AP]
    assert weights(decision) == [1.0, 0.0, 0.0]
    assert decision.reason.startswith(
        "no healthy region (panic): regions able to take reads "
        "hold 0% of capacity, under the 10% threshold"
    )


def test_panic_below_the_threshold_share_of_capacity_and_not_at_it():
    sliver = resolver(status(US, capacity=5), status(EU, UNHEALTHY), status(AP, UNHEALTHY))
    assert sliver.resolve(client=client("new york")).no_healthy_region
    enough = resolver(status(US, capacity=25), status(EU, UNHEALTHY), status(AP, UNHEALTHY))
    decision = enough.resolve(client=client("tokyo"))
    assert not decision.no_healthy_region
    assert regions(decision) == [US]


def test_panic_leaves_out_regions_in_maintenance_and_their_capacity():
    routes = resolver(status(US, UNHEALTHY), status(EU, UNHEALTHY), status(AP, MAINTENANCE))
    decision = routes.resolve(client=client("singapore"))
    assert decision.no_healthy_region
    assert regions(decision) == [EU, US]
    drained = resolver(status(US, MAINTENANCE), status(EU, MAINTENANCE))
    assert not drained.resolve(client=client("london")).no_healthy_region


def test_every_region_in_maintenance_leaves_no_target():
    routes = resolver(*(status(name, MAINTENANCE) for name in REGIONS))
    decision = routes.resolve(client=client("london"))
    assert decision.no_healthy_region
    assert list(decision.targets) == []


def test_panic_weighted_routing_splits_as_if_all_were_healthy():
    routes = resolver(*(status(name, UNHEALTHY) for name in REGIONS))
    decision = routes.resolve(client=client("london"), strategy=WEIGHTED)
    assert weights(decision) == pytest.approx([1 / 3] * 3)


def test_max_targets_keeps_the_best_and_renormalises():
    routes = resolver(
        status(US, capacity=200, capacity_utilization=0.5),
        status(EU, DEGRADED),
        status(AP, capacity_utilization=0.95),
    )
    decision = routes.resolve(client=client("london"), strategy=WEIGHTED, max_targets=2)
    assert regions(decision) == [US, EU]
    assert weights(decision) == pytest.approx([2 / 3, 1 / 3])
    one = routes.resolve(client=client("london"), max_targets=1)
    assert weights(one) == [1.0]
    assert len(routes.resolve(client=client("london"), max_targets=9).targets) == 3


def test_an_empty_table_answers_no_regions_known():
    decision = Resolver(routing_pb2.RoutingTable(version=3)).resolve(client=client("london"))
    assert list(decision.targets) == []
    assert decision.no_healthy_region
    assert decision.reason == "no regions known"
    assert decision.table_version == 3


def test_without_a_client_location_geographic_routing_falls_back_to_weights():
    decision = resolver().resolve(client=None)
    assert decision.strategy == WEIGHTED
    assert not decision.HasField("location")
    assert decision.location_source == routing_pb2.LOCATION_SOURCE_UNSPECIFIED
    assert weights(decision) == pytest.approx([1 / 3] * 3)
    assert decision.reason.startswith("no client location; by weight")
    assert not decision.targets[0].HasField("distance_km")


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"strategy": 9}, "strategy"),
        ({"intent": 3}, "intent"),
        ({"max_replica_lag_seconds": -1.0}, "max_replica_lag_seconds"),
        ({"max_replica_lag_seconds": math.nan}, "max_replica_lag_seconds"),
        ({"max_targets": -1}, "max_targets"),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(request_fields, field):
    with pytest.raises(InvalidRequest) as raised:
        resolver().resolve(client=client("london"), **request_fields)
    assert raised.value.field == field
    assert isinstance(raised.value, LatitudeError)


def test_round_robin_rotation_continues_across_table_versions():
    first = resolver(strategy=ROUND_ROBIN)
    starts = Counter()
    current = first
    for i in range(3000):
        if i % 100 == 99:  # a new table version every 100 calls
            current = Resolver(current.table, succeeding=current)
        starts[current.resolve(client=None).targets[0].region] += 1
    assert sorted(starts.values()) == [1000, 1000, 1000]

"""The latency model and its calibration, and client-measured latencies per prefix."""

from __future__ import annotations

import math

import pytest

from coordinator.routing.latency import (
    DEFAULT_BASE_SECONDS,
    DEFAULT_SECONDS_PER_KM,
    PrefixLatencies,
    latency_model,
)
from latitude.errors import LatitudeError
from latitude.geo import great_circle_km
from latitude.routing import InvalidRequest
from latitude.v1 import admin_pb2, agent_pb2
from tests.unit.routing_tables import REGIONS

US_EU = great_circle_km(*REGIONS["us-east-1"], *REGIONS["eu-west-1"])
US_AP = great_circle_km(*REGIONS["us-east-1"], *REGIONS["ap-southeast-1"])
PREFIX = "203.0.113.0/24"


def statuses() -> list[admin_pb2.RegionStatus]:
    out = []
    for name, (lat, lon) in REGIONS.items():
        status = admin_pb2.RegionStatus(region=name)
        status.location.latitude, status.location.longitude = lat, lon
        out.append(status)
    return out


def report(*peers: tuple[str, float, bool]) -> agent_pb2.Report:
    return agent_pb2.Report(
        peers=[agent_pb2.PeerRtt(region=r, rtt_seconds=s, reachable=ok) for r, s, ok in peers]
    )


def estimate(km: float) -> float:
    return DEFAULT_BASE_SECONDS + km * DEFAULT_SECONDS_PER_KM


def test_the_model_is_fibre_speed_round_trip_with_route_stretch():
    model = latency_model(statuses(), {})
    assert model.base_seconds == 0.005
    assert model.seconds_per_km == pytest.approx(1.5e-5)
    assert dict(model.region_factor) == {}


def test_a_region_factor_is_the_median_of_measured_over_estimated():
    reports = {
        "us-east-1": report(
            ("eu-west-1", 2.0 * estimate(US_EU), True),
            ("ap-southeast-1", 1.0 * estimate(US_AP), True),
            ("us-east-1", 0.001, True),  # itself: ignored
            ("ap-southeast-1", 0.0, False),  # unreachable: ignored
        ),
    }
    model = latency_model(statuses(), reports)
    assert dict(model.region_factor) == pytest.approx({"us-east-1": 1.5})


@pytest.mark.parametrize(("ratio", "factor"), [(12.0, 5.0), (1.2, 1.2), (0.7, 0.7)])
def test_factors_are_clamped(ratio, factor):
    reports = {"eu-west-1": report(("us-east-1", ratio * estimate(US_EU), True))}
    assert latency_model(statuses(), reports).region_factor["eu-west-1"] == pytest.approx(factor)


def test_a_round_trip_faster_than_light_says_nothing_about_distance():
    # Regions on one host (a local stack) answer in microseconds whatever their locations.
    reports = {"eu-west-1": report(("us-east-1", 0.0002, True))}
    assert dict(latency_model(statuses(), reports).region_factor) == {}


def test_regions_without_usable_probes_get_no_factor():
    reports = {
        "us-east-1": report(("eu-west-1", 0.0, False), ("mars-1", 0.3, True)),
        "eu-west-1": report(("us-east-1", float("nan"), True)),
        "ap-southeast-1": report(),
    }
    assert dict(latency_model(statuses(), reports).region_factor) == {}


def test_samples_are_averaged_exponentially():
    latencies = PrefixLatencies()
    assert latencies.add(PREFIX, "eu-west-1", 0.100, 10.0, 10.0)
    latencies.add(PREFIX, "eu-west-1", 0.200, 11.0, 11.0)
    latencies.add(PREFIX, "eu-west-1", 0.200, 12.0, 12.0)
    (entry,) = latencies.snapshot(12.0)
    # 0.1, then 0.1 + 0.25 x 0.1 = 0.125, then 0.125 + 0.25 x 0.075 = 0.14375
    assert entry.latency_seconds == pytest.approx(0.14375)
    assert (entry.network_prefix, entry.region, entry.samples) == (PREFIX, "eu-west-1", 3)
    assert entry.last_measured_at.ToSeconds() == 12


def test_the_snapshot_is_sorted_by_prefix_then_region():
    latencies = PrefixLatencies()
    latencies.add("198.51.100.0/24", "us-east-1", 0.02, 1.0, 1.0)
    latencies.add(PREFIX, "us-east-1", 0.02, 1.0, 1.0)
    latencies.add(PREFIX, "ap-southeast-1", 0.2, 1.0, 1.0)
    assert [(p.network_prefix, p.region) for p in latencies.snapshot(2.0)] == [
        ("198.51.100.0/24", "us-east-1"),
        (PREFIX, "ap-southeast-1"),
        (PREFIX, "us-east-1"),
    ]


def test_samples_age_out():
    latencies = PrefixLatencies(max_age=600.0)
    latencies.add(PREFIX, "us-east-1", 0.02, 100.0, 100.0)
    latencies.add(PREFIX, "eu-west-1", 0.08, 400.0, 400.0)
    assert len(latencies.snapshot(700.0)) == 2
    assert [p.region for p in latencies.snapshot(700.1)] == ["eu-west-1"]
    assert latencies.snapshot(1000.1) == []
    assert len(latencies) == 0


def test_a_sample_older_than_max_age_is_not_kept_and_one_from_the_future_counts_as_now():
    latencies = PrefixLatencies(max_age=600.0)
    assert not latencies.add(PREFIX, "us-east-1", 0.02, 100.0, 701.0)
    assert latencies.add(PREFIX, "us-east-1", 0.02, 5000.0, 701.0)
    (entry,) = latencies.snapshot(701.0)
    assert entry.last_measured_at.ToSeconds() == 701


def test_at_most_max_prefixes_the_least_recently_reported_go_first():
    latencies = PrefixLatencies(max_prefixes=3)
    for i in range(3):
        latencies.add(f"10.0.{i}.0/24", "us-east-1", 0.01, float(i), float(i))
    latencies.add("10.0.0.0/24", "eu-west-1", 0.09, 3.0, 3.0)  # refreshed: kept
    latencies.add("10.0.9.0/24", "us-east-1", 0.01, 4.0, 4.0)
    prefixes = {p.network_prefix for p in latencies.snapshot(5.0)}
    assert prefixes == {"10.0.0.0/24", "10.0.2.0/24", "10.0.9.0/24"}


def test_the_snapshot_reflects_each_new_sample():
    latencies = PrefixLatencies()
    latencies.add(PREFIX, "us-east-1", 0.02, 1.0, 1.0)
    first = latencies.snapshot(1.0)
    assert latencies.snapshot(1.5) == first
    latencies.add(PREFIX, "us-east-1", 0.04, 2.0, 2.0)
    assert latencies.snapshot(2.0)[0].samples == 2


@pytest.mark.parametrize("seconds", [math.nan, -0.001, 60.5, math.inf])
def test_absurd_samples_are_refused_naming_the_field(seconds):
    latencies = PrefixLatencies()
    with pytest.raises(InvalidRequest) as raised:
        latencies.add(PREFIX, "us-east-1", seconds, 1.0, 1.0, field="samples[2].latency_seconds")
    assert raised.value.field == "samples[2].latency_seconds"
    assert isinstance(raised.value, LatitudeError)
    assert latencies.snapshot(1.0) == []


def test_one_caller_is_one_voice_however_many_samples_it_sends():
    latencies = PrefixLatencies()
    latencies.add(PREFIX, "us-east-1", 0.020, 1.0, 1.0, caller="client-a")
    latencies.add(PREFIX, "us-east-1", 0.022, 1.0, 1.0, caller="client-b")
    for _ in range(1000):
        latencies.add(PREFIX, "us-east-1", 59.0, 2.0, 2.0, caller="liar")
    (entry,) = latencies.snapshot(2.0)
    # The median of three voices: the liar's 59 s is outvoted by the two that measured.
    assert entry.latency_seconds == pytest.approx(0.022)
    assert entry.samples == 1002


def test_a_caller_past_its_own_cap_replaces_only_its_own_prefixes():
    latencies = PrefixLatencies(max_prefixes=100, max_per_caller=4)
    latencies.add(PREFIX, "us-east-1", 0.02, 1.0, 1.0, caller="client")
    for i in range(10_000):
        latencies.add(f"10.{i // 256}.{i % 256}.0/24", "us-east-1", 0.5, 2.0, 2.0, caller="flood")
    assert latencies.held("flood") == 4 and latencies.held("client") == 1
    assert PREFIX in {p.network_prefix for p in latencies.snapshot(2.0)}


def test_when_full_a_newcomer_takes_from_whoever_holds_most_never_from_the_few():
    latencies = PrefixLatencies(max_prefixes=6, max_per_caller=5)
    latencies.add(PREFIX, "us-east-1", 0.02, 1.0, 1.0, caller="client")
    for i in range(5):
        latencies.add(f"10.0.{i}.0/24", "us-east-1", 0.5, 2.0, 2.0, caller="big")
    assert latencies.entries == 6
    # A newcomer takes the biggest holder's oldest entry, not the client's only one.
    assert latencies.add("192.0.2.0/24", "eu-west-1", 0.1, 3.0, 3.0, caller="new")
    assert latencies.held("big") == 4 and latencies.held("client") == 1
    prefixes = {p.network_prefix for p in latencies.snapshot(3.0)}
    assert "10.0.0.0/24" not in prefixes and PREFIX in prefixes
    # Many identities, one prefix each: they take from "big" until it holds as few as they.
    for i in range(10):
        latencies.add(f"172.16.{i}.0/24", "us-east-1", 0.5, 4.0, 4.0, caller=f"sybil-{i}")
    assert latencies.held("client") == 1 and latencies.held("new") == 1
    assert latencies.entries == 6


def test_a_caller_as_big_as_anyone_moves_its_own_oldest_when_full():
    latencies = PrefixLatencies(max_prefixes=2, max_per_caller=5)
    latencies.add("10.0.0.0/24", "us-east-1", 0.5, 1.0, 1.0, caller="a")
    latencies.add("10.0.1.0/24", "us-east-1", 0.5, 1.0, 1.0, caller="b")
    assert latencies.add("10.0.2.0/24", "us-east-1", 0.5, 2.0, 2.0, caller="a")
    assert {p.network_prefix for p in latencies.snapshot(2.0)} == {"10.0.1.0/24", "10.0.2.0/24"}
    assert not latencies.add("10.0.3.0/24", "us-east-1", 0.5, 2.0, 2.0, caller="c")


def test_no_room_at_all_keeps_nothing():
    latencies = PrefixLatencies(max_prefixes=0)
    assert not latencies.add(PREFIX, "us-east-1", 0.02, 1.0, 1.0)
    assert latencies.snapshot(1.0) == [] and len(latencies) == 0

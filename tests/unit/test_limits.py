"""Per-caller rates, per-stream report rates and stream slots, on a fake clock."""

from __future__ import annotations

import types

import pytest

from coordinator.callers import FORWARDED_FOR, caller_of, peer_host
from coordinator.config import CoordinatorConfig
from coordinator.limits import LimitExceeded, RateLimits, ReportRate, StreamSlots, TokenBucket
from latitude.errors import ConfigError
from latitude.pki import Identity


def test_a_bucket_allows_its_burst_then_its_rate():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)
    assert bucket.take(0.5)  # one token per 0.5 s
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_a_clock_stepping_back_earns_nothing():
    bucket = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)
    assert bucket.take(11.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0.5)])
def test_a_bucket_needs_a_positive_rate_and_a_burst_of_one(rate, burst):
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        TokenBucket(rate, burst, 0.0)


def test_each_caller_has_its_own_rate_and_the_refusal_says_what():
    limits = RateLimits(1.0, 2, what="latency reports")
    limits.check("a", 0.0)
    limits.check("a", 0.0)
    with pytest.raises(LimitExceeded, match="more than 1 latency reports a second"):
        limits.check("a", 0.1)
    limits.check("b", 0.1)  # another caller is not slowed by the first
    limits.check("a", 1.1)


def test_callers_tracked_are_bounded_the_least_recently_seen_forgotten():
    limits = RateLimits(1.0, 1, what="calls", max_callers=100)
    for i in range(10_000):
        limits.check(f"caller-{i}", 0.0)
    assert len(limits) == 100
    with pytest.raises(LimitExceeded):
        limits.check("caller-9999", 0.0)  # still tracked, still empty
    limits.check("caller-0", 0.0)  # forgotten: a fresh bucket


def test_a_stream_reporting_at_the_normal_rate_is_never_dropped():
    rate = ReportRate(0.5)
    assert all(rate.admit(i * 0.5) for i in range(10_000))


def test_a_burst_of_report_now_answers_passes():
    rate = ReportRate(0.5, burst=20)
    assert all(rate.admit(1.0) for _ in range(20))


def test_a_flood_is_dropped_then_the_stream_ends():
    rate = ReportRate(0.5, factor=4.0, burst=20)  # 8 a second
    admitted = [rate.admit(0.0) for _ in range(20)]
    assert all(admitted)
    assert [rate.admit(0.01) for _ in range(5)] == [False] * 5
    assert rate.admit(0.2)  # a token came back: the dropped run ends
    assert rate.dropped == 0
    for _ in range(19):
        assert not rate.admit(0.2)
    with pytest.raises(LimitExceeded, match=r"more than 8 reports a second.*20 dropped in a row"):
        rate.admit(0.2)


def test_a_report_rate_needs_a_positive_interval():
    with pytest.raises(ValueError, match="report interval must be positive"):
        ReportRate(0.0)


def test_streams_are_capped_per_caller_and_in_all():
    slots = StreamSlots(per_caller=2, total=3, what="Watch")
    slots.acquire("a")
    slots.acquire("a")
    with pytest.raises(LimitExceeded, match="at most 2 Watch streams per caller.*has 2 open"):
        slots.acquire("a")
    slots.acquire("b")
    with pytest.raises(LimitExceeded, match="at most 3 Watch streams in all"):
        slots.acquire("c")
    slots.release("a")
    slots.acquire("c")
    assert (slots.held("a"), slots.held("b"), slots.held("c"), len(slots)) == (1, 1, 1, 3)


def test_a_held_slot_is_released_when_the_block_ends_however_it_ends():
    slots = StreamSlots(per_caller=1, total=10, what="Watch")
    with pytest.raises(RuntimeError), slots.hold("a"):
        assert slots.held("a") == 1
        raise RuntimeError("stream broke")
    assert slots.held("a") == 0 and len(slots) == 0
    with slots.hold("a"), pytest.raises(LimitExceeded):
        slots.acquire("a")
    assert len(slots) == 0


def test_callers_without_streams_are_not_tracked():
    slots = StreamSlots(per_caller=1, total=10, what="Watch")
    for i in range(1000):
        with slots.hold(f"caller-{i}"):
            pass
    assert slots._held == {}
    with pytest.raises(ValueError, match="holds no Watch stream"):
        slots.release("a")


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.1:5000", "10.0.0.1"),
        ("ipv6:[::1]:5000", "::1"),
        ("ipv6:[2001:db8::7]:443", "2001:db8::7"),
        ("unix:/tmp/socket", "unix:/tmp/socket"),
        ("", ""),
    ],
)
def test_the_port_is_not_part_of_the_caller(peer, host):
    assert peer_host(peer) == host


def context(peer: str, uri: str = "", metadata=()):
    auth = {}
    if uri is not None:
        auth["transport_security_type"] = [b"ssl"] if uri else [b""]
    if uri:
        auth["peer_uri"] = [uri.encode()]
    return types.SimpleNamespace(
        peer=lambda: peer, auth_context=lambda: auth, invocation_metadata=lambda: metadata
    )


def test_a_caller_is_its_identity_on_its_host_or_its_host_alone():
    reader = caller_of(context("ipv4:10.0.0.1:1", "latitude://role/reader"))
    assert reader.key == "latitude://role/reader@10.0.0.1"
    assert reader.identity == Identity("reader")
    assert caller_of(context("ipv4:10.0.0.1:2")).key == "anonymous@10.0.0.1"


def test_only_a_coordinator_may_forward_for_another_caller():
    forwarded = ((FORWARDED_FOR, "latitude://role/reader@10.0.0.9"),)
    via = caller_of(context("ipv4:10.0.0.2:1", "latitude://role/coordinator", forwarded))
    assert via.key == "latitude://role/reader@10.0.0.9"
    assert via.forwarded_for == forwarded
    claimed = caller_of(context("ipv4:10.0.0.3:1", "latitude://role/reader", forwarded))
    assert claimed.key == "latitude://role/reader@10.0.0.3"
    plaintext = caller_of(context("ipv4:10.0.0.4:1", "", forwarded))
    assert plaintext.key == "anonymous@10.0.0.4"
    oversized = ((FORWARDED_FOR, "x" * 300),)
    huge = caller_of(context("ipv4:10.0.0.2:1", "latitude://role/coordinator", oversized))
    assert huge.key == "latitude://role/coordinator@10.0.0.2"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"latency_prefixes_per_caller": 0}, "latency_prefixes_per_caller: must be within"),
        ({"latency_reports_per_second": 0.0}, "latency_reports_per_second: must be a positive"),
        ({"latency_reports_per_second": float("inf")}, "latency_reports_per_second"),
        ({"latency_report_burst": 0}, "latency_report_burst: must be at least 1"),
        ({"streams_per_caller": 0}, "streams_per_caller: must be within 1..streams_total"),
        ({"streams_per_caller": 10, "streams_total": 5}, "streams_per_caller: must be within"),
        ({"resolve_answer_bytes": -1}, "resolve_answer_bytes: must be within 0..1 GiB"),
    ],
)
def test_the_limits_settings_are_validated_naming_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        CoordinatorConfig(**fields).validate()


def test_the_default_limits_are_valid():
    CoordinatorConfig().validate()

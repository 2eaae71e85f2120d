"""Health history: buckets, downsampling, bounds, and the recorder on a store in memory with a
made-up clock."""

from __future__ import annotations

import pytest

from coordinator import history, keys
from coordinator.history import (
    COARSE_KEEP,
    RAW_BUCKET,
    RAW_KEEP,
    STEP,
    HealthHistory,
    UnknownRegion,
    downsample,
    plan_compaction,
    request_bounds,
    thin,
)
from coordinator.store import MAX_WRITE_KEYS
from latitude.errors import LatitudeError
from latitude.history_view import format_history, parse_duration, spans, sparkline
from latitude.v1 import admin_pb2, common_pb2, history_pb2

REGIONS = ("us-east-1", "eu-west-1")
HEALTHY = common_pb2.REGION_STATE_HEALTHY
UNHEALTHY = common_pb2.REGION_STATE_UNHEALTHY
DEGRADED = common_pb2.REGION_STATE_DEGRADED
T0 = 1_800_000_000.0  # a bucket boundary: 1_800_000_000 is a multiple of 300 and 3600


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def write(self, puts: dict[str, bytes], deletes: list[str]) -> bool:
        self.data.update(puts)
        for name in deletes:
            self.data.pop(name, None)
        return True

    async def read(self, name: str) -> bytes | None:
        return self.data.get(name)

    async def read_prefix(self, name: str) -> dict[str, bytes]:
        base = name.rstrip("/") + "/"
        return {k[len(base) :]: v for k, v in self.data.items() if k.startswith(base)}


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sample(at: float, state=HEALTHY, lag=0, weight=0.5, response=0.001) -> history_pb2.HealthSample:
    return history_pb2.HealthSample(
        at_ms=int(at * 1000),
        state=state,
        replay_lag_bytes=lag,
        weight=weight,
        response_time_seconds=response,
        role=common_pb2.DATABASE_ROLE_STANDBY,
    )


def status(state=HEALTHY, lag=0) -> admin_pb2.RegionStatus:
    region = admin_pb2.RegionStatus(state=state, replay_lag_bytes=lag)
    region.database.role = common_pb2.DATABASE_ROLE_STANDBY
    return region


def test_a_downsampled_step_keeps_the_worst_state_and_largest_lag_and_averages_the_rest():
    samples = [
        sample(T0, HEALTHY, lag=10, weight=0.2),
        sample(T0 + 5, UNHEALTHY, lag=500, weight=0.0),
        sample(T0 + 10, DEGRADED, lag=20, weight=0.4),
        sample(T0 + 60, HEALTHY, lag=0, weight=0.6),
    ]
    out = downsample(samples, 60)
    assert [s.at_ms for s in out] == [int(T0 * 1000), int((T0 + 60) * 1000)]
    assert out[0].state == UNHEALTHY
    assert out[0].replay_lag_bytes == 500
    assert out[0].weight == pytest.approx(0.2)
    assert out[1].state == HEALTHY


def test_thin_keeps_at_most_the_samples_asked_for_in_whole_steps():
    samples = [sample(T0 + i * STEP) for i in range(1000)]
    thinned, step = thin(samples, 100, STEP)
    assert len(thinned) <= 100
    assert step % STEP == 0 and step >= 50
    untouched, same = thin(samples[:10], 100, STEP)
    assert len(untouched) == 10 and same == STEP


def test_raw_buckets_past_a_day_fold_into_hours_and_hours_past_a_week_are_dropped():
    now_ms = int((T0 + COARSE_KEEP + 2 * 3600) * 1000)
    old_raw = int((now_ms / 1000 - RAW_KEEP - 2 * RAW_BUCKET) * 1000)
    old_raw -= old_raw % int(RAW_BUCKET * 1000)
    fresh_raw = now_ms - now_ms % int(RAW_BUCKET * 1000)
    ancient_coarse = int(T0 * 1000)
    plan = plan_compaction(
        [f"raw/{old_raw:015d}", f"raw/{fresh_raw:015d}", f"min/{ancient_coarse:015d}", "junk"],
        now_ms,
    )
    assert plan.fold == {old_raw - old_raw % 3_600_000: [old_raw]}
    assert plan.drop_coarse == [ancient_coarse]


def test_request_bounds_name_the_field_and_apply_defaults():
    assert request_bounds(0, 0) == (history.DEFAULT_SINCE, history.DEFAULT_MAX_SAMPLES)
    with pytest.raises(ValueError, match="since_seconds"):
        request_bounds(COARSE_KEEP + 1, 0)
    with pytest.raises(ValueError, match="since_seconds"):
        request_bounds(float("nan"), 0)
    with pytest.raises(ValueError, match="max_samples"):
        request_bounds(60, 1_000_000)


async def test_recorded_samples_are_read_back_by_any_replica_oldest_first():
    store, clock = MemoryStore(), Clock()
    leader = HealthHistory(store, REGIONS, clock)
    for i in range(4):
        state = UNHEALTHY if i == 2 else HEALTHY
        await leader.record({"us-east-1": status(state, lag=i)}, {"us-east-1": 0.3}, store.write)
        clock.now += STEP
    follower = HealthHistory(store, REGIONS, clock)
    samples, step = await follower.read("us-east-1", 3600)
    assert step == STEP
    assert [s.state for s in samples] == [HEALTHY, HEALTHY, UNHEALTHY, HEALTHY]
    assert [s.replay_lag_bytes for s in samples] == [0, 1, 2, 3]
    assert all(s.weight == pytest.approx(0.3) for s in samples)
    assert (await follower.read("eu-west-1", 3600))[0] == []


async def test_a_new_leader_continues_the_current_bucket_instead_of_overwriting_it():
    store, clock = MemoryStore(), Clock(T0 + 10)
    first = HealthHistory(store, REGIONS, clock)
    await first.record({"us-east-1": status()}, {}, store.write)
    clock.now += STEP
    second = HealthHistory(store, REGIONS, clock)  # another replica, elected now
    second.begin_term()
    await second.record({"us-east-1": status(UNHEALTHY)}, {}, store.write)
    samples, _ = await second.read("us-east-1", 3600)
    assert [s.state for s in samples] == [HEALTHY, UNHEALTHY]


async def test_history_stays_bounded_a_day_raw_then_a_week_coarse():
    store, clock = MemoryStore(), Clock()
    leader = HealthHistory(store, REGIONS, clock)
    # One sample every 5 min (one per bucket) over 8 days, compacting every hour.
    for i in range(8 * 24 * 12):
        await leader.record({"us-east-1": status(lag=i)}, {}, store.write)
        if i % 12 == 0:
            await leader.compact(store.write)
        clock.now += RAW_BUCKET
    await leader.compact(store.write)
    names = [k for k in store.data if k.startswith(f"{keys.HISTORY}/us-east-1/")]
    raw = [n for n in names if "/raw/" in n]
    coarse = [n for n in names if "/min/" in n]
    assert len(raw) <= 24 * 12 + 1
    assert len(coarse) <= 7 * 24 + 1
    week, step = await leader.read("us-east-1", COARSE_KEEP, max_samples=100_000)
    assert week[0].at_ms >= (clock.now - COARSE_KEEP - 3600) * 1000
    assert week == sorted(week, key=lambda s: s.at_ms)
    assert step == history.COARSE_STEP
    day, step = await leader.read("us-east-1", 3600)
    assert step == STEP and len(day) == 12


async def test_an_unknown_region_is_named():
    with pytest.raises(UnknownRegion, match="'mars-1'.*us-east-1"):
        await HealthHistory(MemoryStore(), REGIONS).read("mars-1", 60)


def test_durations_parse_and_bad_ones_are_named():
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    for bad in ("", "1y", "h", "-1h", "0s"):
        with pytest.raises(LatitudeError, match="--since"):
            parse_duration(bad)


def test_the_timeline_shows_spans_a_silence_and_sparklines():
    samples = [sample(T0 + i * STEP, lag=i) for i in range(6)]
    samples += [sample(T0 + 60 + i * STEP, UNHEALTHY) for i in range(3)]
    runs = spans(samples, STEP)
    assert [(r.gap, r.state) for r in runs] == [(False, HEALTHY), (True, 0), (False, UNHEALTHY)]
    response = history_pb2.GetHistoryResponse(
        region="us-east-1", samples=samples, resolution_seconds=STEP
    )
    text = format_history(response, 3600)
    assert "HEALTHY" in text and "UNHEALTHY" in text and "(no samples)" in text
    assert "lag" in text and "▁" in text
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert len(sparkline(list(range(1000)), 60)) == 60
    empty = history_pb2.GetHistoryResponse(region="eu-west-1")
    assert "no samples" in format_history(empty, 60)


async def test_many_regions_are_written_in_transactions_etcd_accepts():
    """etcd refuses a transaction of more than 128 operations: 1,000 regions' buckets go in
    writes of at most MAX_WRITE_KEYS, and every region's sample lands."""
    store, clock = MemoryStore(), Clock()
    regions = [f"region-{n}" for n in range(250)]
    sizes: list[int] = []

    async def write(puts, deletes) -> bool:
        sizes.append(len(puts) + len(deletes))
        return await store.write(puts, deletes)

    leader = HealthHistory(store, regions, clock)
    assert await leader.record({r: status() for r in regions}, {}, write)
    assert sizes == [MAX_WRITE_KEYS, MAX_WRITE_KEYS, 50]
    assert all([(await leader.read(r, 3600))[0] for r in regions])

    async def refused(puts, deletes) -> bool:
        return False

    assert not await leader.record({r: status() for r in regions}, {}, refused)

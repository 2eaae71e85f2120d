"""Each region's health over time: sampled by the leader, kept in etcd, read by every replica.

Every ``STEP`` (5 s) the leader takes one sample per region — state, replay lag, routing
weight, response time, role — of what it publishes anyway, and writes it into the region's
current *bucket*: one etcd key holding ``RAW_BUCKET`` (5 min) of samples, rewritten whole with
each sample (a few hundred bytes), guarded by the leader key like every leader write. A new
leader reads the current bucket before adding to it, so a leader change loses at most the
samples of the seconds without a leader.

History is bounded: raw buckets older than ``RAW_KEEP`` (24 h) are folded into hourly buckets
at ``COARSE_STEP`` (1 min: each minute's worst state, largest lag, mean weight and response
time), and those are deleted after ``COARSE_KEEP`` (7 days). About 3 KB per region per 5 min
raw, 300 KB a day and 7 days coarse: under 1 MB per region.

Keys (under ``keys.HISTORY``): ``<region>/raw/<bucket start, ms>`` and
``<region>/min/<bucket start, ms>``, zero-padded so that name order is time order.

The pure part (buckets, downsampling, what to fold) is tested with made-up times; the
recorder and reader run against the store.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from coordinator import keys
from coordinator.etcd import EtcdError
from coordinator.store import MAX_WRITE_KEYS, Store
from latitude.v1 import admin_pb2, common_pb2, history_pb2

log = logging.getLogger(__name__)

STEP = 5.0
RAW_BUCKET = 300.0
RAW_KEEP = 24 * 3600.0
COARSE_STEP = 60.0
COARSE_BUCKET = 3600.0
COARSE_KEEP = 7 * 24 * 3600.0
# How often the leader folds and deletes expired buckets.
COMPACT_EVERY = 300.0
DEFAULT_SINCE = 3600.0
DEFAULT_MAX_SAMPLES = 2000
RAW = "raw"
COARSE = "min"

# Worst first: the state a downsampled step keeps.
_SEVERITY = {
    common_pb2.REGION_STATE_UNHEALTHY: 6,
    common_pb2.REGION_STATE_FAILOVER: 5,
    common_pb2.REGION_STATE_DEGRADED: 4,
    common_pb2.REGION_STATE_MAINTENANCE: 3,
    common_pb2.REGION_STATE_PENDING: 2,
    common_pb2.REGION_STATE_HEALTHY: 1,
}


class UnknownRegion(LookupError):
    """A history request named a region the deployment does not have."""


def request_bounds(since_seconds: float, max_samples: int) -> tuple[float, int]:
    """A GetHistory request's window and sample limit, defaults applied; ValueError naming
    the field when out of bounds."""
    if not math.isfinite(since_seconds) or not 0 <= since_seconds <= COARSE_KEEP:
        raise ValueError(
            f"since_seconds: must be within 0..{COARSE_KEEP:.0f} (7 days), got {since_seconds}"
        )
    if max_samples > 100_000:
        raise ValueError(f"max_samples: at most 100000, got {max_samples}")
    return since_seconds or DEFAULT_SINCE, max_samples or DEFAULT_MAX_SAMPLES


def bucket_start(at_ms: int, bucket_seconds: float) -> int:
    width = int(bucket_seconds * 1000)
    return at_ms - at_ms % width


def bucket_name(region: str, tier: str, start_ms: int) -> str:
    return keys.under(keys.HISTORY, f"{region}/{tier}/{start_ms:015d}")


def parse_name(name: str) -> tuple[str, int] | None:
    """``"raw/000001700000000000"`` (a name under a region) -> ("raw", start ms), or None."""
    tier, _, start = name.partition("/")
    if tier not in (RAW, COARSE) or not start.isdigit():
        return None
    return tier, int(start)


def sample_of(status: admin_pb2.RegionStatus, weight: float, at: float) -> history_pb2.HealthSample:
    return history_pb2.HealthSample(
        at_ms=int(at * 1000),
        state=status.state,
        replay_lag_bytes=status.replay_lag_bytes,
        replay_lag_seconds=status.replay_lag_seconds,
        weight=weight,
        response_time_seconds=status.response_time_seconds,
        role=status.database.role,
    )


def downsample(
    samples: Sequence[history_pb2.HealthSample], step_seconds: float
) -> list[history_pb2.HealthSample]:
    """One sample per ``step_seconds``, stamped at the step's start: the worst state, the
    largest lag, the mean weight and response time, the last role. Oldest first."""
    width = max(1, int(step_seconds * 1000))
    steps: dict[int, list[history_pb2.HealthSample]] = {}
    for sample in sorted(samples, key=lambda s: s.at_ms):
        steps.setdefault(sample.at_ms - sample.at_ms % width, []).append(sample)
    out = []
    for start, group in steps.items():
        out.append(
            history_pb2.HealthSample(
                at_ms=start,
                state=max((s.state for s in group), key=lambda s: _SEVERITY.get(s, 0)),
                replay_lag_bytes=max(s.replay_lag_bytes for s in group),
                replay_lag_seconds=max(s.replay_lag_seconds for s in group),
                weight=sum(s.weight for s in group) / len(group),
                response_time_seconds=sum(s.response_time_seconds for s in group) / len(group),
                role=group[-1].role,
            )
        )
    return out


def thin(
    samples: Sequence[history_pb2.HealthSample], max_samples: int, resolution: float
) -> tuple[list[history_pb2.HealthSample], float]:
    """At most ``max_samples``, downsampled to a whole number of ``resolution`` steps; the
    samples and the step they stand for."""
    if len(samples) <= max_samples or len(samples) < 2:
        return list(samples), resolution
    span = (samples[-1].at_ms - samples[0].at_ms) / 1000
    step = resolution * max(1, math.ceil(span / resolution / max_samples))
    thinned = downsample(samples, step)
    while len(thinned) > max_samples:
        step += resolution
        thinned = downsample(samples, step)
    return thinned, step


def merge(
    raw: Iterable[history_pb2.HealthSample], coarse: Iterable[history_pb2.HealthSample]
) -> list[history_pb2.HealthSample]:
    """Coarse history up to where raw history begins, then raw; oldest first."""
    raw = sorted(raw, key=lambda s: s.at_ms)
    first_raw = raw[0].at_ms if raw else None
    older = [s for s in coarse if first_raw is None or s.at_ms < first_raw]
    return sorted(older, key=lambda s: s.at_ms) + raw


@dataclass(frozen=True, slots=True)
class Compaction:
    """What one compaction pass does: raw buckets folded into coarse ones, and deletions."""

    # coarse bucket start -> the raw bucket starts folded into it
    fold: dict[int, list[int]]
    drop_coarse: list[int]


def plan_compaction(names: Iterable[str], now_ms: int) -> Compaction:
    """From a region's bucket names (``tier/start``), what has expired at ``now_ms``."""
    fold: dict[int, list[int]] = {}
    drop: list[int] = []
    for name in names:
        parsed = parse_name(name)
        if parsed is None:
            continue
        tier, start = parsed
        if tier == RAW and start + RAW_BUCKET * 1000 <= now_ms - RAW_KEEP * 1000:
            fold.setdefault(bucket_start(start, COARSE_BUCKET), []).append(start)
        elif tier == COARSE and start + COARSE_BUCKET * 1000 <= now_ms - COARSE_KEEP * 1000:
            drop.append(start)
    for coarse in list(fold):  # folding into a bucket that is itself expired: just drop
        if coarse + COARSE_BUCKET * 1000 <= now_ms - COARSE_KEEP * 1000:
            drop.append(coarse)
    return Compaction({k: sorted(v) for k, v in sorted(fold.items())}, sorted(set(drop)))


def _decode(value: bytes | None) -> list[history_pb2.HealthSample]:
    if not value:
        return []
    try:
        return list(history_pb2.HealthSamples.FromString(value).samples)
    except Exception:
        log.warning("a history bucket in etcd does not parse; skipped")
        return []


class HealthHistory:
    """Reads a region's history from the store (any replica), and as the leader records it.

    ``record(statuses, weights)`` is called by the leader every ``STEP``; ``run_term`` is the
    leader's task that does so and compacts; ``read`` is the history from etcd (any replica).
    """

    def __init__(self, store: Store, regions: Sequence[str], clock=time.time) -> None:
        self._store = store
        self._regions = tuple(regions)
        self._clock = clock
        # Per region: the current raw bucket's start and samples, as written to etcd.
        self._current: dict[str, tuple[int, list[history_pb2.HealthSample]]] = {}
        self._last_compaction = 0.0

    def check_region(self, region: str) -> None:
        if region not in self._regions:
            raise UnknownRegion(
                f"region {region!r} is not one of this deployment's regions "
                f"({', '.join(self._regions)})"
            )

    async def read(
        self,
        region: str,
        since_seconds: float = DEFAULT_SINCE,
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> tuple[list[history_pb2.HealthSample], float]:
        """The region's samples of the last ``since_seconds``, oldest first, thinned to
        ``max_samples``; and the step they stand for. EtcdError when etcd does not answer."""
        self.check_region(region)
        now_ms = int(self._clock() * 1000)
        since_ms = now_ms - int(since_seconds * 1000)
        buckets = await self._store.read_prefix(keys.under(keys.HISTORY, region))
        raw: list[history_pb2.HealthSample] = []
        coarse: list[history_pb2.HealthSample] = []
        for name, value in buckets.items():
            parsed = parse_name(name)
            if parsed is None:
                continue
            tier, start = parsed
            width = (RAW_BUCKET if tier == RAW else COARSE_BUCKET) * 1000
            if start + width < since_ms:
                continue
            (raw if tier == RAW else coarse).extend(_decode(value))
        samples = [s for s in merge(raw, coarse) if s.at_ms >= since_ms]
        resolution = STEP if not coarse or (raw and raw[0].at_ms <= since_ms) else COARSE_STEP
        return thin(samples, max_samples, resolution)

    def begin_term(self) -> None:
        """Forget what a previous term held in memory: etcd is read afresh."""
        self._current.clear()

    async def record(
        self,
        statuses: dict[str, admin_pb2.RegionStatus],
        weights: dict[str, float],
        write: Callable,
    ) -> bool:
        """Add one sample per region and write each region's current bucket (guarded writes,
        by ``write(puts, deletes) -> bool``, of at most MAX_WRITE_KEYS buckets each, since etcd
        refuses a transaction of more than 128 operations). False when a write failed."""
        now = self._clock()
        now_ms = int(now * 1000)
        start = bucket_start(now_ms, RAW_BUCKET)
        puts: dict[str, bytes] = {}
        for region in self._regions:
            status = statuses.get(region)
            if status is None:
                continue
            held = self._current.get(region)
            if held is None or held[0] != start:
                held = (start, await self._load(region, start))
                self._current[region] = held
            held[1].append(sample_of(status, weights.get(region, 0.0), now))
            body = history_pb2.HealthSamples(samples=held[1]).SerializeToString()
            puts[bucket_name(region, RAW, start)] = body
        names = list(puts)
        for first in range(0, len(names), MAX_WRITE_KEYS):
            chunk = {name: puts[name] for name in names[first : first + MAX_WRITE_KEYS]}
            if not await write(chunk, []):
                return False
        return True

    async def _load(self, region: str, start: int) -> list[history_pb2.HealthSample]:
        try:
            return _decode(await self._store.read(bucket_name(region, RAW, start)))
        except EtcdError as err:
            log.warning("history of %s: could not read the current bucket: %s", region, err)
            return []

    async def compact(self, write: Callable) -> None:
        """Fold expired raw buckets into coarse ones and delete what is past keeping."""
        now_ms = int(self._clock() * 1000)
        for region in self._regions:
            try:
                names = await self._store.read_prefix(keys.under(keys.HISTORY, region))
            except EtcdError as err:
                log.warning("history of %s: compaction skipped: %s", region, err)
                return
            plan = plan_compaction(names, now_ms)
            for coarse_start, raw_starts in plan.fold.items():
                if coarse_start in plan.drop_coarse:
                    continue
                folded = _decode(names.get(f"{COARSE}/{coarse_start:015d}"))
                for raw_start in raw_starts:
                    folded += _decode(names.get(f"{RAW}/{raw_start:015d}"))
                body = history_pb2.HealthSamples(
                    samples=downsample(folded, COARSE_STEP)
                ).SerializeToString()
                deletes = [bucket_name(region, RAW, s) for s in raw_starts]
                if not await write({bucket_name(region, COARSE, coarse_start): body}, deletes):
                    return
            gone = [bucket_name(region, COARSE, s) for s in plan.drop_coarse]
            gone += [
                bucket_name(region, RAW, s) for c in plan.drop_coarse for s in plan.fold.get(c, [])
            ]
            for chunk in range(0, len(gone), MAX_WRITE_KEYS):
                if not await write({}, gone[chunk : chunk + MAX_WRITE_KEYS]):
                    return

    async def run_term(
        self,
        statuses: Callable[[], dict[str, admin_pb2.RegionStatus]],
        weights: Callable[[], dict[str, float]],
        write: Callable,
    ) -> None:
        """The leader's task: a sample every STEP, a compaction every COMPACT_EVERY."""
        self.begin_term()
        next_at = time.monotonic()
        while True:
            try:
                if not await self.record(statuses(), weights(), write):
                    log.warning("history: a sample was not written")
                if time.monotonic() - self._last_compaction >= COMPACT_EVERY:
                    self._last_compaction = time.monotonic()
                    await self.compact(write)
            except EtcdError as err:
                log.warning("history: %s", err)
            next_at += STEP
            now = time.monotonic()
            if next_at < now:
                next_at = now + STEP
            await asyncio.sleep(next_at - now)

"""What the leader knows about latency: the distance model, calibrated by the agents' peer
probes, and the latencies clients measured (ReportLatency), per network prefix.

The model (RoutingTable.latency_model): a round trip costs

    base_seconds + distance_km x seconds_per_km x region_factor

- base_seconds = 0.005: last-mile access, switching and the server's own turnaround.
- seconds_per_km = 1.5e-5: light in fibre covers about 200,000 km/s (refractive index ~1.5);
  a round trip covers the distance twice, and fibre routes run about 1.5 times the great
  circle (route stretch), so 2 x 1.5 / 200,000 s per km of great-circle distance.
- region_factor: per region, the median over its agent's peer probes (Report.peers) of the
  measured round trip divided by the model's estimate for that pair, clamped to [0.5, 5] so
  that one congested link or a probe answered from a cache cannot distort the model. Regions
  with no usable probe get no entry (factor 1).

Client samples (PrefixLatencies): per (network prefix, region) an exponentially weighted mean
with alpha = 0.25 per sample: one outlier moves the mean by a quarter, and a lasting change (a
route moved) is 90 % absorbed after 8 samples. Entries not refreshed for
``max_age`` (default 600 s) are dropped, since routes change.

Who may move them (ReportLatency accepts samples only from authenticated callers once TLS is
on, at a bounded rate per caller: coordinator/routing_service.py). Each caller's samples are
kept apart, so that no caller can steer a prefix or evict what others measured:
- the mean is per (caller, prefix, region), and the table shows, per (prefix, region), the
  median of the callers' means: a caller is one voice among those that measured the prefix,
  however many samples it sends (alone, it is the only voice, and it only moves its own);
- a caller holds at most ``max_per_caller`` prefixes; a new one past that replaces its own
  least recently reported prefix, never another caller's;
- at most ``max_prefixes`` (caller, prefix) entries in all. When full, a newcomer takes the
  least recently reported entry of whoever holds the most, and only if that caller holds more
  than the newcomer would; otherwise the sample is not kept. A caller holding few entries (a
  real client reporting its own prefix) therefore keeps them, whatever others send.
"""

from __future__ import annotations

import math
import statistics
from collections import OrderedDict
from collections.abc import Mapping, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from latitude.geo.distance import great_circle_km
from latitude.routing import InvalidRequest
from latitude.v1 import admin_pb2, agent_pb2, routing_pb2

DEFAULT_BASE_SECONDS = 0.005
FIBRE_KM_PER_SECOND = 200_000.0
ROUTE_STRETCH = 1.5
DEFAULT_SECONDS_PER_KM = 2.0 * ROUTE_STRETCH / FIBRE_KM_PER_SECOND  # 1.5e-5
FACTOR_MIN, FACTOR_MAX = 0.5, 5.0

ALPHA = 0.25
DEFAULT_MAX_AGE = 600.0
DEFAULT_MAX_PREFIXES = 10_000
# A sample above this is a timeout or a broken clock, not a latency.
MAX_LATENCY_SECONDS = 60.0


# The least round trip physics allows per km of great-circle distance (200,000 km/s each way).
_LIGHT_IN_FIBRE_RTT_PER_KM = 2 / 200_000


def latency_model(
    regions: Sequence[admin_pb2.RegionStatus],
    reports: Mapping[str, agent_pb2.Report],
    *,
    base_seconds: float = DEFAULT_BASE_SECONDS,
    seconds_per_km: float = DEFAULT_SECONDS_PER_KM,
) -> routing_pb2.LatencyModel:
    """The model, with each region's factor from its agent's latest peer probes.

    ``regions`` give the locations; ``reports`` is the latest Report per region name.
    """
    where = {
        r.region: (r.location.latitude, r.location.longitude)
        for r in regions
        if r.HasField("location")
    }
    model = routing_pb2.LatencyModel(base_seconds=base_seconds, seconds_per_km=seconds_per_km)
    for name in sorted(reports):
        if name not in where:
            continue
        ratios = []
        for peer in reports[name].peers:
            rtt = peer.rtt_seconds
            if not peer.reachable or peer.region == name or peer.region not in where:
                continue
            if not math.isfinite(rtt) or rtt <= 0:
                continue
            km = great_circle_km(*where[name], *where[peer.region])
            if rtt < km * _LIGHT_IN_FIBRE_RTT_PER_KM:
                # Faster than light in fibre: the regions are not where their locations say
                # (a local stack, say), so the probe says nothing about distance.
                continue
            ratios.append(rtt / (base_seconds + km * seconds_per_km))
        if ratios:
            factor = statistics.median(ratios)
            model.region_factor[name] = min(FACTOR_MAX, max(FACTOR_MIN, factor))
    return model


class _Mean:
    __slots__ = ("last_at", "samples", "seconds")

    def __init__(self, seconds: float, at: float) -> None:
        self.seconds = seconds
        self.samples = 1
        self.last_at = at


class PrefixLatencies:
    """Client-measured latencies per (network prefix, region), per caller, averaged, aged and
    bounded (the rules are in the module docstring).

    Owned by the leader (ReportLatency is forwarded to it); not thread-safe.
    """

    def __init__(
        self,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        max_prefixes: int = DEFAULT_MAX_PREFIXES,
        max_per_caller: int | None = None,
    ) -> None:
        self.max_age = max_age
        self.max_prefixes = max_prefixes
        self.max_per_caller = max_prefixes if max_per_caller is None else max_per_caller
        # Per caller, its prefixes least recently reported first.
        self._callers: dict[str, OrderedDict[str, dict[str, _Mean]]] = {}
        self._entries = 0
        self._reporters: dict[str, int] = {}  # prefix -> callers holding it
        # The leader snapshots every table build: nothing to scan before this, and nothing to
        # rebuild while unchanged.
        self._next_expiry = math.inf
        self._snapshot: list[routing_pb2.PrefixLatency] | None = None

    def __len__(self) -> int:
        """The prefixes with a latency."""
        return len(self._reporters)

    @property
    def entries(self) -> int:
        """(caller, prefix) entries: at most ``max_prefixes``."""
        return self._entries

    def held(self, caller: str) -> int:
        return len(self._callers.get(caller, ()))

    def add(
        self,
        prefix: str,
        region: str,
        seconds: float,
        measured_at: float,
        now: float,
        *,
        caller: str = "",
        field: str = "latency_seconds",
    ) -> bool:
        """Fold one sample from ``caller`` in; whether it was kept (False: older than
        ``max_age``, or no room for the caller's new prefix).

        Raises InvalidRequest naming ``field`` (the caller passes e.g.
        ``samples[3].latency_seconds``) for NaN, negative or over 60 s. A sample from the
        future (client clock ahead) counts as measured now. The caller drops unknown regions.
        """
        if not math.isfinite(seconds) or not 0.0 <= seconds <= MAX_LATENCY_SECONDS:
            raise InvalidRequest(
                field, f"{seconds} is not a latency (must be within 0..{MAX_LATENCY_SECONDS:g} s)"
            )
        measured_at = min(measured_at, now)
        if measured_at < now - self.max_age:
            return False
        held = self._callers.get(caller)
        regions = held.get(prefix) if held is not None else None
        if regions is None:
            if not self._make_room(caller):
                return False
            held = self._callers.setdefault(caller, OrderedDict())
            regions = held[prefix] = {}
            self._entries += 1
            self._reporters[prefix] = self._reporters.get(prefix, 0) + 1
        else:
            held.move_to_end(prefix)
        self._snapshot = None
        self._next_expiry = min(self._next_expiry, measured_at + self.max_age)
        mean = regions.get(region)
        if mean is None:
            regions[region] = _Mean(seconds, measured_at)
        else:
            mean.seconds += ALPHA * (seconds - mean.seconds)
            mean.samples = min(mean.samples + 1, 2**32 - 1)
            mean.last_at = max(mean.last_at, measured_at)
        return True

    def _make_room(self, caller: str) -> bool:
        """Room for one more prefix of ``caller``, made by the rules; whether there is."""
        mine = self.held(caller)
        if mine and mine >= self.max_per_caller:
            self._drop(caller, next(iter(self._callers[caller])))
            return True
        if self.max_per_caller < 1:
            return False
        if self._entries < self.max_prefixes:
            return True
        if not self._callers:
            return False
        victim = max(self._callers, key=lambda c: len(self._callers[c]))
        if len(self._callers[victim]) <= mine + 1:
            if not mine:
                return False
            victim = caller  # as big as anyone: it moves its own oldest
        self._drop(victim, next(iter(self._callers[victim])))
        return True

    def _drop(self, caller: str, prefix: str) -> None:
        held = self._callers[caller]
        del held[prefix]
        if not held:
            del self._callers[caller]
        self._entries -= 1
        left = self._reporters[prefix] - 1
        if left:
            self._reporters[prefix] = left
        else:
            del self._reporters[prefix]
        self._snapshot = None

    def expire(self, now: float) -> None:
        """Drop what was last measured more than ``max_age`` before ``now``."""
        if now <= self._next_expiry:
            return
        oldest = now - self.max_age
        next_expiry = math.inf
        for caller in list(self._callers):
            held = self._callers[caller]
            for prefix in list(held):
                regions = held[prefix]
                for region, mean in list(regions.items()):
                    if mean.last_at < oldest:
                        del regions[region]
                        self._snapshot = None
                    else:
                        next_expiry = min(next_expiry, mean.last_at + self.max_age)
                if not regions:
                    self._drop(caller, prefix)
        self._next_expiry = next_expiry

    def snapshot(self, now: float) -> list[routing_pb2.PrefixLatency]:
        """The current means (expired ones dropped first), sorted by prefix, then region."""
        self.expire(now)
        if self._snapshot is not None:
            return list(self._snapshot)
        voices: dict[tuple[str, str], list[_Mean]] = {}
        for held in self._callers.values():
            for prefix, regions in held.items():
                for region, mean in regions.items():
                    voices.setdefault((prefix, region), []).append(mean)
        out = []
        for (prefix, region), means in sorted(voices.items()):
            at = Timestamp()
            at.FromNanoseconds(int(max(m.last_at for m in means) * 1e9))
            out.append(
                routing_pb2.PrefixLatency(
                    network_prefix=prefix,
                    region=region,
                    latency_seconds=statistics.median(m.seconds for m in means),
                    samples=min(sum(m.samples for m in means), 2**32 - 1),
                    last_measured_at=at,
                )
            )
        self._snapshot = out
        return list(out)

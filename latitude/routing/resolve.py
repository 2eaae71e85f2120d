"""One routing decision, answered locally from a RoutingTable.

The semantics are routing.proto's; this module only makes them cheap. A ``Resolver`` is built
once per table version (tables are immutable once published) and precomputes everything that
does not depend on the client: each region's prebuilt ``Target``, its position in radians,
which regions pass a lag budget and whether that means panic, the normalised weights, the
latency model and the measured prefix latencies. Decisions are pure functions of the client's
location and the request, so the Resolver also remembers up to ``MEMO_SIZE`` of them, as
serialized messages (about 0.5 kB each, a sixth of a parsed message's memory): a client whose
location is cached (the Locator caches per IP) costs a dict lookup and one parse. Round-robin
decisions are remembered per rotation position, so rotation stays exact.

Thread-safe for concurrent ``resolve()`` calls (the memo and the round-robin counter are
single operations on builtins).
"""

from __future__ import annotations

import itertools
import math
from typing import Protocol

from latitude.enums import short_name
from latitude.errors import LatitudeError
from latitude.geo.distance import EARTH_RADIUS_KM
from latitude.v1 import common_pb2, routing_pb2

GEOGRAPHIC = routing_pb2.STRATEGY_GEOGRAPHIC
LATENCY = routing_pb2.STRATEGY_LATENCY
WEIGHTED = routing_pb2.STRATEGY_WEIGHTED
ROUND_ROBIN = routing_pb2.STRATEGY_ROUND_ROBIN
HEALTH_BASED = routing_pb2.STRATEGY_HEALTH_BASED
WRITE = routing_pb2.INTENT_WRITE
MAINTENANCE = common_pb2.REGION_STATE_MAINTENANCE
HEALTHY = common_pb2.REGION_STATE_HEALTHY

# Decisions remembered per table; the memo is emptied when full (cheaper and thread-safer
# than evicting one at a time, and a table rarely lives long enough to fill it).
MEMO_SIZE = 4096

_STRATEGIES = frozenset(routing_pb2.Strategy.values())
_INTENTS = frozenset(routing_pb2.Intent.values())
_INF = math.inf
_DIAMETER_KM = 2.0 * EARTH_RADIUS_KM
_RADIANS = math.pi / 180.0
_parse = routing_pb2.RoutingDecision.FromString


class InvalidRequest(LatitudeError):
    """A field of a routing request is malformed; ``field`` names it as the contract does."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ClientLocation(Protocol):
    """What the resolver reads of a located client (``latitude.geo.Located``)."""

    @property
    def latitude(self) -> float: ...
    @property
    def longitude(self) -> float: ...
    @property
    def source(self) -> int: ...
    @property
    def detail(self) -> str: ...
    @property
    def network_prefix(self) -> str: ...


class _Region:
    """One region of the table, with what every decision reads of it precomputed."""

    __slots__ = (
        "availability",
        "capacity",
        "cos_lat",
        "error_rate",
        "factor",
        "has_location",
        "lag",
        "lat",
        "lon",
        "maintenance",
        "name",
        "panic_weight",
        "readable",
        "response_time",
        "state",
        "target",
        "utilization",
        "weight",
        "writable",
    )

    def __init__(self, route: routing_pb2.RegionRoute, write_region: str, factor) -> None:
        self.name = route.region
        self.state = route.state
        self.availability = route.availability
        self.readable = route.readable
        self.weight = route.weight
        self.capacity = route.capacity or 1
        self.lag = route.replay_lag_seconds
        self.error_rate = route.error_rate
        self.response_time = route.response_time_seconds
        self.utilization = route.capacity_utilization
        self.writable = bool(write_region) and route.region == write_region
        self.maintenance = route.state == MAINTENANCE
        # Panic treats every region as healthy: weight by capacity and headroom alone.
        self.panic_weight = self.capacity * max(0.05, 1.0 - self.utilization)
        self.factor = factor
        self.has_location = route.HasField("location")
        self.lat = route.location.latitude * _RADIANS
        self.lon = route.location.longitude * _RADIANS
        self.cos_lat = math.cos(self.lat)
        self.target = routing_pb2.Target(
            region=route.region,
            endpoints=route.endpoints,
            state=route.state,
            writable=self.writable,
            replay_lag_seconds=0.0 if self.writable else route.replay_lag_seconds,
        )


class _Eligibility:
    """Which regions may take reads under one lag budget, and whether that means panic."""

    __slots__ = ("panic", "regions", "share", "skipped")

    def __init__(self, regions, skipped, share: float, panic: bool) -> None:
        self.regions = regions
        self.skipped = skipped
        self.share = share
        self.panic = panic


class Resolver:
    """Answers Resolve from one RoutingTable; build a new one for each table version."""

    def __init__(
        self, table: routing_pb2.RoutingTable, *, succeeding: Resolver | None = None
    ) -> None:
        """``succeeding``: the resolver this one replaces, whose round-robin rotation it
        continues (tables change every few seconds; a rotation restarted with each would
        favour the first regions)."""
        self.table = table
        self.version = table.version
        self._write_region = table.write_region
        self._default_strategy = table.default_strategy or GEOGRAPHIC
        self._default_lag = table.default_max_replica_lag_seconds
        self._panic_threshold = table.panic_threshold
        # Unset (0): no overprovisioning, a region keeps exactly its availability.
        self._overprovisioning = table.overprovisioning_factor or 1.0
        model = table.latency_model
        self._has_model = table.HasField("latency_model") and model.seconds_per_km > 0
        self._base_seconds = model.base_seconds
        self._seconds_per_km = model.seconds_per_km
        self._calibrated = bool(model.region_factor)
        factors = dict(model.region_factor)
        routes = sorted(table.regions, key=lambda r: r.region)
        self._regions = [_Region(r, table.write_region, factors.get(r.region)) for r in routes]
        self._by_name = {r.name: r for r in self._regions}
        self._usable = [r for r in self._regions if not r.maintenance]
        self._total_capacity = sum(r.capacity for r in self._usable)
        self._measured: dict[str, dict[str, tuple[float, int]]] = {}
        for p in table.prefix_latencies:
            if p.region in self._by_name:
                per_region = self._measured.setdefault(p.network_prefix, {})
                per_region[p.region] = (p.latency_seconds, p.samples)
        self._eligibility: dict[float, _Eligibility] = {}
        self._memo: dict[tuple, bytes] = {}
        self._turns = succeeding._turns if succeeding is not None else itertools.count()

    def resolve(
        self,
        *,
        client: ClientLocation | None,
        strategy: int = 0,
        intent: int = 0,
        max_replica_lag_seconds: float | None = None,
        max_targets: int = 0,
    ) -> routing_pb2.RoutingDecision:
        """The decision for one request (a new message the caller may modify).

        Raises InvalidRequest naming ``strategy``, ``intent``, ``max_replica_lag_seconds`` or
        ``max_targets``; never raises because regions are unhealthy.
        """
        key, request = self._key(client, strategy, intent, max_replica_lag_seconds, max_targets)
        known = self._memo.get(key)
        if known is not None:
            return _parse(known)
        decision = self._decide(*request)
        self._remember(key, decision.SerializeToString())
        return decision

    def resolve_serialized(
        self,
        *,
        client: ClientLocation | None,
        strategy: int = 0,
        intent: int = 0,
        max_replica_lag_seconds: float | None = None,
        max_targets: int = 0,
    ) -> bytes:
        """resolve(), serialized: for a server, which would only serialize the message."""
        key, request = self._key(client, strategy, intent, max_replica_lag_seconds, max_targets)
        known = self._memo.get(key)
        if known is None:
            known = self._decide(*request).SerializeToString()
            self._remember(key, known)
        return known

    def _key(self, client, strategy, intent, max_lag, max_targets) -> tuple[tuple, tuple]:
        """The request checked: its memo key, and _decide's arguments."""
        if strategy not in _STRATEGIES:
            raise InvalidRequest("strategy", f"unknown strategy {strategy!r}")
        if intent not in _INTENTS:
            raise InvalidRequest("intent", f"unknown intent {intent!r}")
        if max_lag is not None and not max_lag >= 0:
            raise InvalidRequest("max_replica_lag_seconds", f"must be >= 0, got {max_lag!r}")
        if max_targets < 0:
            raise InvalidRequest("max_targets", f"must be >= 0, got {max_targets!r}")
        strategy = strategy or self._default_strategy
        turn = 0
        if strategy == ROUND_ROBIN and intent != WRITE:
            eligibility = self._eligible(max_lag)
            count = len(eligibility.regions if not eligibility.panic else self._usable)
            turn = next(self._turns) % count if count else 0
        if client is None:
            key = (None, strategy, intent, max_lag, max_targets, turn)
        else:
            key = (
                client.latitude,
                client.longitude,
                client.source,
                client.detail,
                client.network_prefix,
                strategy,
                intent,
                max_lag,
                max_targets,
                turn,
            )
        return key, (client, strategy, intent, max_lag, max_targets, turn)

    def _remember(self, key: tuple, decision: bytes) -> None:
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = decision

    # -- the decision proper --------------------------------------------------------------

    def _decide(self, client, strategy, intent, max_lag, max_targets, turn):
        decision = routing_pb2.RoutingDecision(
            write_region=self._write_region, table_version=self.version, strategy=strategy
        )
        where = None
        if client is not None:
            decision.location_source = client.source
            decision.location.latitude = client.latitude
            decision.location.longitude = client.longitude
            where = _describe_location(client)
        if not self._regions:
            decision.no_healthy_region = True
            decision.reason = "no regions known"
            return decision
        if intent == WRITE:
            self._write(decision, client)
            return decision
        eligibility = self._eligible(max_lag)
        if eligibility.panic:
            candidates = self._usable
            if not candidates:
                decision.no_healthy_region = True
                decision.reason = "every region is in maintenance: no region can take reads"
                return decision
        else:
            candidates = eligibility.regions
        panic = eligibility.panic
        decision.no_healthy_region = panic
        distances, estimates, measured = self._estimates(client, candidates)
        if strategy in (GEOGRAPHIC, LATENCY) and client is None:
            strategy = WEIGHTED  # nothing to measure distance from
            decision.strategy = WEIGHTED
        if strategy == GEOGRAPHIC:
            order = sorted(candidates, key=lambda r: (distances.get(r.name, _INF), r.name))
            weights = self._spill(order, panic)
            why = f"{'nearest' if panic else 'nearest healthy'} region to {where}"
        elif strategy == LATENCY:
            order = sorted(
                candidates,
                key=lambda r: (estimates.get(r.name, _INF), distances.get(r.name, _INF), r.name),
            )
            weights = self._spill(order, panic)
            why = f"{'lowest-latency' if panic else 'lowest-latency healthy'} region for {where}"
        elif strategy == WEIGHTED:
            order, weights = self._weighted(candidates, panic)
            why = "by weight (capacity, health and headroom)"
            if client is None:
                why = "no client location; " + why
        elif strategy == ROUND_ROBIN:
            ordered = sorted(candidates, key=lambda r: r.name)
            order = ordered[turn:] + ordered[:turn]
            weights = [1.0] + [0.0] * (len(order) - 1)
            why = f"round robin over {len(order)} regions"
        else:
            order = sorted(
                candidates, key=lambda r: (r.error_rate, r.response_time, r.utilization, r.name)
            )
            weights = [1.0] + [0.0] * (len(order) - 1)
            best = order[0]
            why = (
                f"healthiest region (errors {best.error_rate:.1%}, response "
                f"{best.response_time * 1000:.1f} ms, {best.utilization:.0%} used)"
            )
        if 0 < max_targets < len(order):
            order, weights = order[:max_targets], weights[:max_targets]
            total = sum(weights)
            if total > 0:
                weights = [w / total for w in weights]
        targets = decision.targets
        for region, weight in zip(order, weights, strict=True):
            target = targets.add()
            target.CopyFrom(region.target)
            target.weight = weight
            name = region.name
            if name in distances:
                target.distance_km = distances[name]
            if name in estimates:
                target.estimated_latency_seconds = estimates[name]
        decision.latency_basis = self._basis(client, order, estimates, measured)
        decision.reason = self._reason(why, decision, eligibility, max_lag)
        return decision

    def _write(self, decision: routing_pb2.RoutingDecision, client) -> None:
        name = self._write_region
        if not name:
            decision.reason = (
                "no writable primary: a failover is in progress, writes must wait"
                if self.table.failover_in_progress
                else "no writable primary known: writes must wait"
            )
            return
        region = self._by_name.get(name)
        target = decision.targets.add()
        if region is None:
            target.region, target.writable = name, True
        else:
            target.CopyFrom(region.target)
            distances, estimates, measured = self._estimates(client, [region])
            if name in distances:
                target.distance_km = distances[name]
            if name in estimates:
                target.estimated_latency_seconds = estimates[name]
            decision.latency_basis = self._basis(client, [region], estimates, measured)
        target.weight = 1.0
        reason = f"writes go to the primary in {name}"
        if region is not None and region.state != HEALTHY:
            state = short_name(common_pb2.RegionState, region.state)
            reason += f" (region {state.lower()})"
        if self.table.failover_in_progress:
            reason += "; a failover is in progress, the write region may change"
        decision.reason = reason

    def _eligible(self, max_lag: float | None) -> _Eligibility:
        bound = self._default_lag if max_lag is None else max_lag
        known = self._eligibility.get(bound)
        if known is not None:
            return known
        regions, skipped = [], []
        for region in self._regions:
            if not region.readable:
                continue
            if region.writable or region.lag <= bound:
                regions.append(region)
            else:
                skipped.append(region)
        available = sum(r.capacity * r.availability for r in regions)
        total = self._total_capacity
        share = available / total if total > 0 else 0.0
        panic = available <= 0.0 or available < self._panic_threshold * total
        known = _Eligibility(regions, skipped, share, panic)
        self._eligibility[bound] = known
        return known

    def _estimates(self, client, regions):
        """Per region name: distance from the client (km), estimated round trip (s), and the
        measured (latency, samples) for the client's prefix where there is one."""
        distances: dict[str, float] = {}
        estimates: dict[str, float] = {}
        if client is None:
            return distances, estimates, {}
        measured = self._measured.get(client.network_prefix, {}) if self._measured else {}
        lat = client.latitude * _RADIANS
        lon = client.longitude * _RADIANS
        cos_lat = math.cos(lat)
        sin, asin, sqrt = math.sin, math.asin, math.sqrt
        model = self._has_model
        base, per_km = self._base_seconds, self._seconds_per_km
        for r in regions:
            name = r.name
            if r.has_location:
                # Haversine, as latitude.geo.great_circle_km, with the region's half
                # precomputed.
                h = (
                    sin((r.lat - lat) * 0.5) ** 2
                    + cos_lat * r.cos_lat * sin((r.lon - lon) * 0.5) ** 2
                )
                km = _DIAMETER_KM * asin(sqrt(h if h < 1.0 else 1.0))
                distances[name] = km
                if model:
                    factor = r.factor
                    estimates[name] = base + km * per_km * (factor if factor else 1.0)
            if name in measured:
                estimates[name] = measured[name][0]
        return distances, estimates, measured

    def _spill(self, order, panic: bool) -> list[float]:
        """Spill-over: each region keeps min(1, availability x overprovisioning) of what is
        left, the last takes the rest."""
        weights = []
        remaining = 1.0
        last = len(order) - 1
        factor = self._overprovisioning
        for i, region in enumerate(order):
            if i == last:
                share = remaining
            else:
                availability = 1.0 if panic else region.availability
                share = remaining * min(1.0, availability * factor)
            weights.append(share)
            remaining -= share
        return weights

    def _weighted(self, candidates, panic: bool):
        raw = [r.panic_weight if panic else r.weight for r in candidates]
        total = sum(raw)
        if total <= 0:
            raw, total = [1.0] * len(candidates), float(len(candidates))
        pairs = sorted(zip(candidates, raw, strict=True), key=lambda p: (-p[1], p[0].name))
        return [p[0] for p in pairs], [p[1] / total for p in pairs]

    def _basis(self, client, order, estimates, measured) -> str:
        """Where the targets' estimated latencies came from, for humans."""
        if not estimates:
            return ""
        from_measurement = [r.name for r in order if r.name in measured]
        from_distance = [r for r in order if r.name in estimates and r.name not in measured]
        parts = []
        if from_measurement:
            samples = sum(measured[name][1] for name in from_measurement)
            text = f"measured for {client.network_prefix} ({samples} samples)"
            if from_distance:
                text += f" to {', '.join(from_measurement)}"
            parts.append(text)
        if from_distance:
            calibrated = any(r.factor for r in from_distance)
            text = "distance, calibrated by agents' peer RTTs" if calibrated else "distance only"
            parts.append(("elsewhere " if from_measurement else "") + text)
        return "; ".join(parts)

    def _reason(self, why: str, decision, eligibility: _Eligibility, max_lag) -> str:
        targets = decision.targets
        first = targets[0]
        text = f"{why}: {first.region}"
        if first.HasField("estimated_latency_seconds"):
            text += f", {first.estimated_latency_seconds * 1000:.1f} ms est."
        if len(targets) > 1 and 0.0 < first.weight < 1.0 - 1e-9:
            text += f" ({first.weight:.0%}; the rest spills over to {targets[1].region})"
        if eligibility.panic:
            return (
                f"no healthy region (panic): regions able to take reads hold "
                f"{eligibility.share:.0%} of capacity, under the "
                f"{self._panic_threshold:.0%} threshold; routing to every region not in "
                f"maintenance as if healthy; {text}"
            )
        if eligibility.skipped:
            bound = self._default_lag if max_lag is None else max_lag
            names = ", ".join(r.name for r in eligibility.skipped)
            text += f"; skipped, replica lag over {bound:g} s: {names}"
        return text


def _describe_location(client) -> str:
    detail = client.detail
    if not detail:
        try:
            name = routing_pb2.LocationSource.Name(client.source)
        except ValueError:
            name = "LOCATION_SOURCE_UNSPECIFIED"
        detail = name.removeprefix("LOCATION_SOURCE_").lower().replace("_", "-")
    return f"{client.latitude:.2f},{client.longitude:.2f} ({detail})"

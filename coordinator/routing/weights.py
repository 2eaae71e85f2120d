"""How much traffic each region may take: its availability, its weight, and when to panic.

The numbers, and why (the same shape as Envoy's locality weighting and panic routing):

Availability (RegionRoute.availability): how much of its nearby traffic a region keeps before
the rest spills to the next nearest region. It is decided by the region's state alone:

    HEALTHY 1.0 · DEGRADED 0.5 · PENDING, UNHEALTHY, FAILOVER, MAINTENANCE 0

A region being failed away from, or drained by an operator, takes nothing new. PENDING (no
report since this leader took over) is "not known yet", not "down": it takes nothing, but it
does not start a failback ramp either, so a change of leader does not ramp every region.

Failback ramp: a region whose availability rises from 0 (it was down, drained or failed over)
takes its traffic back in ``steps`` equal steps over ``ramp_seconds``, by default 10 %, 32.5 %,
55 %, 77.5 % and 100 % of its state's availability at 0, 5, 10, 15 and 20 s after it became
eligible again. Cold caches and connection pools warm up, and a region that fails again under
its first load hurts only a fraction of its clients. A region that drops back to 0 during the
ramp starts again from the bottom when it next recovers.

Weight (RegionRoute.weight, used by STRATEGY_WEIGHTED): proportional to

    capacity x availability x headroom,   headroom = max(0.05, 1 - capacity_utilization)

normalised to sum to 1 (all 0 when no region can take traffic). Headroom steers new traffic
away from busy regions; the 5 % floor keeps a saturated region (utilisation ≥ 1) in rotation
with a trickle, so that its utilisation stays measured and it is not swung from nothing to its
full share and back on every table (oscillation), and so that when every region is saturated
they still share in proportion to capacity. A capacity of 0 (no Hello heard yet) counts as 1.

Panic (RoutingTable.panic_threshold, default 0.1): when the regions able to take traffic
(Σ capacity x availability over them) hold less than 10 % of the total capacity of the
regions not in maintenance, resolvers route to every region not in maintenance as if all were
healthy: when nearly everything looks down, the observer is more often wrong than the regions,
and sending everything to a sliver would overload it. Overprovisioning factor
(RoutingTable.overprovisioning_factor, default 1.4, Envoy's): geographic and latency routing
give a region min(1, availability x 1.4) of its nearby traffic, so a region at 72 % or more
keeps all of it and a DEGRADED region keeps 70 %.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from latitude.v1 import admin_pb2, common_pb2

AVAILABILITY: Mapping[int, float] = {
    common_pb2.REGION_STATE_HEALTHY: 1.0,
    common_pb2.REGION_STATE_DEGRADED: 0.5,
}
DEFAULT_RAMP_SECONDS = 20.0
DEFAULT_RAMP_STEPS = 5
# The first step of a ramp, as a fraction of the region's full availability.
RAMP_START = 0.1
HEADROOM_FLOOR = 0.05
DEFAULT_PANIC_THRESHOLD = 0.1
DEFAULT_OVERPROVISIONING_FACTOR = 1.4

# Step boundaries are computed as since + k x interval; this absorbs the rounding so that a
# table rebuilt exactly at next_change_at() sees the new step.
_EPSILON = 1e-9


def base_availability(state: int) -> float:
    """A region's availability as its state alone decides it (before any failback ramp)."""
    return AVAILABILITY.get(state, 0.0)


class FailbackRamp:
    """Remembers when each region became eligible again and scales its availability meanwhile.

    Not thread-safe; owned by the leader's table builder. Its memory is the leader's own: a new
    leader knows no history, so a region it first sees available takes its full share.
    """

    def __init__(
        self, ramp_seconds: float = DEFAULT_RAMP_SECONDS, steps: int = DEFAULT_RAMP_STEPS
    ) -> None:
        if not ramp_seconds >= 0 or not math.isfinite(ramp_seconds):
            raise ValueError(f"ramp_seconds must be a finite number >= 0, got {ramp_seconds}")
        if steps < 2:
            raise ValueError(f"steps must be at least 2, got {steps}")
        self.ramp_seconds = float(ramp_seconds)
        self.steps = steps
        self._interval = self.ramp_seconds / (steps - 1)
        # Regions last seen at availability 0, and regions ramping (since when).
        self._down: set[str] = set()
        self._since: dict[str, float] = {}

    def availability(self, region: str, base: float, now: float) -> float:
        """``base`` (the state's availability) scaled by where ``region`` is in its ramp."""
        if base <= 0.0:
            self._down.add(region)
            self._since.pop(region, None)
            return 0.0
        if region in self._down:
            self._down.discard(region)
            if self.ramp_seconds > 0:
                self._since[region] = now
        since = self._since.get(region)
        if since is None:
            return base
        step = self._step(now - since)
        if step >= self.steps - 1:
            del self._since[region]
            return base
        return base * (RAMP_START + (1.0 - RAMP_START) * step / (self.steps - 1))

    def ramping(self) -> dict[str, float]:
        """The regions in a ramp, and when each became eligible again."""
        return dict(self._since)

    def next_change_at(self, now: float) -> float | None:
        """When the next ramp step is due (rebuild the table then); None when none is ramping."""
        due = None
        for since in self._since.values():
            step = self._step(now - since) + 1
            if step <= self.steps - 1:
                at = since + step * self._interval
                due = at if due is None else min(due, at)
        return due

    def _step(self, elapsed: float) -> int:
        if elapsed < 0:
            return 0
        return int(elapsed / self._interval + _EPSILON)


def region_availability(status: admin_pb2.RegionStatus, ramp: FailbackRamp, now: float) -> float:
    """The availability the table publishes for ``status``'s region."""
    if status.state == common_pb2.REGION_STATE_PENDING:
        return 0.0  # unknown yet, not down: see the module docstring
    return ramp.availability(status.region, base_availability(status.state), now)


def headroom(utilization: float) -> float:
    """Spare capacity as a fraction, floored at HEADROOM_FLOOR (see the module docstring)."""
    if not math.isfinite(utilization):
        return HEADROOM_FLOOR
    return max(HEADROOM_FLOOR, 1.0 - utilization)


def region_weights(
    regions: Sequence[admin_pb2.RegionStatus], availability: Mapping[str, float]
) -> dict[str, float]:
    """Each region's weight: capacity x availability x headroom, normalised to sum to 1."""
    raw = {
        r.region: (r.capacity or 1)
        * availability.get(r.region, 0.0)
        * headroom(r.capacity_utilization)
        for r in regions
    }
    total = sum(raw.values())
    if total <= 0.0:
        return dict.fromkeys(raw, 0.0)
    return {name: value / total for name, value in raw.items()}

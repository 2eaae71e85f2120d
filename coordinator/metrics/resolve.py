"""Resolve's calls and latency: the one metric on the routing hot path, so it is kept as plain
numbers rather than prometheus-client's locked values.

A call adds to the bucket its time falls in and to the sum: a subtraction, a bisect and two
additions, about half what a ``Histogram.observe`` costs (it takes a lock per value it
touches). No lock is needed: the gRPC handlers and the /metrics handler all run on the
coordinator's one event loop thread. The histogram's ``_count`` is the number of calls.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from bisect import bisect_left

import grpc
from prometheus_client import REGISTRY
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from latitude.enums import short_name
from latitude.v1 import routing_pb2

NAME = "latitude_resolve_duration_seconds"
HELP = (
    "Resolve calls answered by this replica, by the strategy applied and the outcome (ok, or "
    "the gRPC status code's name in lower case), and the time each spent in the handler (a "
    "kept answer: one dict lookup)"
)
BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05)
_BOUNDS = [floatToGoString(b) for b in (*BUCKETS, math.inf)]


class Resolved:
    """The calls of one (strategy, outcome): how many fell in each bucket, and their sum."""

    __slots__ = ("counts", "labels", "sum")

    def __init__(self, strategy: str, outcome: str) -> None:
        self.labels = [strategy, outcome]
        self.counts = [0] * (len(BUCKETS) + 1)  # the last: over every bound
        self.sum = 0.0

    def done(self, started: float) -> None:
        """One call that began at ``started`` (time.perf_counter()) has ended."""
        elapsed = time.perf_counter() - started
        self.counts[bisect_left(BUCKETS, elapsed)] += 1
        self.sum += elapsed


class ResolveTimings(Collector):
    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], Resolved] = {}

    def pair(self, strategy: str, outcome: str) -> Resolved:
        found = self._pairs.get((strategy, outcome))
        if found is None:
            found = self._pairs[strategy, outcome] = Resolved(strategy, outcome)
        return found

    def describe(self):
        return [HistogramMetricFamily(NAME, HELP, labels=["strategy", "outcome"])]

    def collect(self):
        family = HistogramMetricFamily(NAME, HELP, labels=["strategy", "outcome"])
        for pair in list(self._pairs.values()):
            cumulative = itertools.accumulate(pair.counts)
            family.add_metric(pair.labels, list(zip(_BOUNDS, cumulative, strict=True)), pair.sum)
        yield family


TIMINGS = ResolveTimings()
REGISTRY.register(TIMINGS)


def _strategy(value: int) -> str:
    if value not in routing_pb2.Strategy.values():
        return "unknown"
    return short_name(routing_pb2.Strategy, value, lower=True)


# Every strategy a Resolve can apply (never STRATEGY_UNSPECIFIED), its series there from the start.
_RESOLVED_OK = {
    value: TIMINGS.pair(_strategy(value), "ok")
    for value in routing_pb2.Strategy.values()
    if value != routing_pb2.STRATEGY_UNSPECIFIED
}


def resolved(strategy: int) -> Resolved:
    """Where a successful Resolve with ``strategy`` (the one applied) is counted."""
    found = _RESOLVED_OK.get(strategy)
    return found if found is not None else TIMINGS.pair(_strategy(strategy), "ok")


def resolve_failed(
    strategy: int, code: grpc.StatusCode | None, started: float, error: BaseException | None = None
) -> None:
    """A Resolve that ended with status ``code`` (None: not set, as by ``error``)."""
    if isinstance(code, grpc.StatusCode):
        outcome = code.name.lower()
    else:  # what gRPC answers for it: a vanished client's call, or a bug's
        outcome = "cancelled" if isinstance(error, asyncio.CancelledError) else "unknown"
    TIMINGS.pair(_strategy(strategy), outcome).done(started)

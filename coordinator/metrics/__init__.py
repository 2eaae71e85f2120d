"""The coordinator's Prometheus metrics: what happened (counters and histograms, bumped by
one-line calls where it happens), and ``install``, which adds what is (``gauges``, read from
the node at scrape time) and serves both from one registry.

Label values come from the configuration (region names, check names) or from enums, never
from requests: the set of series stays bounded whatever clients send.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from coordinator.metrics.gauges import CoordinatorCollector

# Resolve's, re-exported: the routing service reaches every metric through this module.
from coordinator.metrics.resolve import Resolved as Resolved
from coordinator.metrics.resolve import resolve_failed as resolve_failed
from coordinator.metrics.resolve import resolved as resolved
from latitude.enums import short_name
from latitude.v1 import admin_pb2, agent_pb2

if TYPE_CHECKING:
    from coordinator.node import CoordinatorNode
    from coordinator.store import LeaderInfo

# -- leadership ----------------------------------------------------------------------------

LEADER_CHANGES = Counter(
    "latitude_coordinator_leader_changes",
    "New leader terms (epochs) this replica has seen, the first it saw included",
)


class _Terms:
    """Counts a leader once per term, however often the replica re-reads the key."""

    def __init__(self) -> None:
        self.epoch = 0

    def seen(self, info: LeaderInfo | None) -> None:
        if info is not None and info.epoch != self.epoch:
            self.epoch = info.epoch
            LEADER_CHANGES.inc()


leader_seen = _Terms().seen

# -- failovers -----------------------------------------------------------------------------

_KINDS = ("automatic", "manual", "switchover")
_OUTCOMES = {
    admin_pb2.FAILOVER_PHASE_COMPLETED: "completed",
    admin_pb2.FAILOVER_PHASE_ABORTED: "aborted",
}
# A failover's steps in the order they happen (admin.proto FailoverStatus.steps); each step's
# duration runs from the step before it that was stamped.
_STEPS = (
    ("detected", ""),
    ("drained", "drain"),
    ("fenced", "fence"),
    ("selected", "select"),
    ("promoted", "promote"),
    ("redirected", "redirect"),
    ("repointed", "repoint"),
)
_FAILOVER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60, 120)

FAILOVERS = Counter(
    "latitude_failovers",
    "Failovers and switchovers this replica finished as leader, by kind and outcome",
    ["kind", "outcome"],
)
FAILOVER_DURATION = Histogram(
    "latitude_failover_duration_seconds",
    "From a failover's start to its end (completed or aborted)",
    ["kind", "outcome"],
    buckets=_FAILOVER_BUCKETS,
)
FAILOVER_STEP_DURATION = Histogram(
    "latitude_failover_step_duration_seconds",
    "How long each step of a failover took: drain, fence (including the wait for the old "
    "primary's fence deadline), select, promote, redirect (the write region), repoint",
    ["kind", "step"],
    buckets=_FAILOVER_BUCKETS,
)
for _kind in _KINDS:
    for _outcome in _OUTCOMES.values():
        FAILOVERS.labels(_kind, _outcome)


def failover_finished(record: admin_pb2.FailoverStatus) -> None:
    """Count a failover that reached COMPLETED or ABORTED, and time its steps."""
    outcome = _OUTCOMES.get(record.phase)
    if outcome is None:
        return
    kind = short_name(admin_pb2.FailoverKind, record.kind, lower=True)
    FAILOVERS.labels(kind, outcome).inc()
    if record.HasField("started_at") and record.HasField("finished_at"):
        total = record.finished_at.ToNanoseconds() - record.started_at.ToNanoseconds()
        FAILOVER_DURATION.labels(kind, outcome).observe(max(0, total) / 1e9)
    before = None
    for name, step in _STEPS:
        if name not in record.steps:
            continue
        at = record.steps[name].ToNanoseconds()
        if before is not None and step:
            FAILOVER_STEP_DURATION.labels(kind, step).observe(max(0, at - before) / 1e9)
        before = at


# -- routing -------------------------------------------------------------------------------

# Resolve's calls and latency: coordinator.metrics.resolve, built for the hot path.
WATCH_STREAMS = Gauge("latitude_watch_streams", "Routing table Watch streams open on this replica")


# -- agents --------------------------------------------------------------------------------

REPORTS = Counter(
    "latitude_reports_received", "Agent reports the leader accepted, by region", ["region"]
)
COMMANDS_SENT = Counter(
    "latitude_commands_sent", "Commands the leader sent to agents", ["region", "kind"]
)
COMMAND_RESULTS = Counter(
    "latitude_command_results",
    "Commands' ends: ok, refused (the agent answered not ok), unanswered (no agent, or no "
    "answer in time)",
    ["region", "kind", "result"],
)


# Each region's child of REPORTS: ``labels()`` takes a lock and checks its values on every
# call, which at 2,000 reports a second is most of what counting costs. Regions come from
# the configuration, so this stays as small as the set of series.
_reports_of: dict[str, Counter] = {}


def report_received(region: str) -> None:
    child = _reports_of.get(region)
    if child is None:
        child = _reports_of[region] = REPORTS.labels(region)
    child.inc()


def command_sent(region: str, kind: int) -> None:
    COMMANDS_SENT.labels(region, _command(kind)).inc()


def command_result(region: str, kind: int, result: agent_pb2.CommandResult | None) -> None:
    """``result`` None: the command got no answer (CommandFailed)."""
    outcome = "unanswered" if result is None else "ok" if result.ok else "refused"
    COMMAND_RESULTS.labels(region, _command(kind), outcome).inc()


def _command(kind: int) -> str:
    if kind not in agent_pb2.CommandKind.values():
        return "unknown"
    return short_name(agent_pb2.CommandKind, kind, lower=True)


# -- etcd ----------------------------------------------------------------------------------

ETCD_DURATION = Histogram(
    "latitude_etcd_request_duration_seconds",
    "etcd requests by operation, answered or failed (cancelled ones are left out)",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ETCD_ERRORS = Counter(
    "latitude_etcd_request_errors",
    "etcd requests that failed, by operation and error (unavailable: no member answered in "
    "time; error: etcd refused or failed it)",
    ["operation", "error"],
)


class EtcdRequest:
    """``with EtcdRequest("get"): ...`` times the request and counts its failure."""

    __slots__ = ("_operation", "_started")

    def __init__(self, operation: str) -> None:
        self._operation = operation.replace(" ", "_")

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None and not issubclass(kind, Exception):
            return  # cancelled: neither an answer nor a failure
        ETCD_DURATION.labels(self._operation).observe(time.perf_counter() - self._started)
        if kind is not None:
            # By name: coordinator.etcd, which raises these, imports this module.
            unavailable = any(k.__name__ == "EtcdUnavailable" for k in kind.__mro__)
            ETCD_ERRORS.labels(self._operation, "unavailable" if unavailable else "error").inc()


def install(node: CoordinatorNode, registry: CollectorRegistry = REGISTRY) -> CoordinatorCollector:
    """Export ``node``'s state from ``registry`` (the one its /metrics serves)."""
    collector = CoordinatorCollector(node)
    registry.register(collector)
    # One series per counter, not two: nothing here reads the _created timestamps.
    disable_created_metrics()
    return collector

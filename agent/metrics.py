"""The agent's Prometheus metrics: its probes and checks as they run (counters and histograms),
and what it sees now (``AgentCollector``, read from the agent at scrape time).

An agent serves one region, named once in ``latitude_agent_info``; the other series carry no
region label (join on the scrape target, or on the info metric). Check names come from the
configuration, roles from an enum: the label sets are bounded.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

import latitude
from latitude.v1 import common_pb2

if TYPE_CHECKING:
    from agent.main import Agent

ROLES = {
    common_pb2.DATABASE_ROLE_PRIMARY: "primary",
    common_pb2.DATABASE_ROLE_STANDBY: "standby",
    common_pb2.DATABASE_ROLE_UNKNOWN: "unknown",
    common_pb2.DATABASE_ROLE_DOWN: "down",
}
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

PROBES = Counter(
    "latitude_agent_probes",
    "Observations of the region's PostgreSQL, by the role seen (down: no connection; "
    "unknown: connected, but the query failed)",
    ["role"],
)
PROBE_DURATION = Histogram(
    "latitude_agent_probe_duration_seconds",
    "How long one observation of the region's PostgreSQL took (connecting included)",
    buckets=_BUCKETS,
)
CHECKS = Counter(
    "latitude_agent_check_results",
    "Service health check probes, by check and result (ok, failed)",
    ["check", "result"],
)
CHECK_DURATION = Histogram(
    "latitude_agent_check_duration_seconds",
    "How long a service health check probe took (a timeout counts its full timeout)",
    ["check"],
    buckets=_BUCKETS,
)
for _role in ROLES.values():
    PROBES.labels(_role)


def timed_probe(
    observe: Callable[..., Awaitable[common_pb2.DatabaseStatus]],
) -> Callable[..., Awaitable[common_pb2.DatabaseStatus]]:
    """Decorates ``PostgresProbe.observe``: counts each observation by role, and times it."""

    @functools.wraps(observe)
    async def timed(*args, **kwargs) -> common_pb2.DatabaseStatus:
        started = time.perf_counter()
        status = await observe(*args, **kwargs)
        PROBE_DURATION.observe(time.perf_counter() - started)
        PROBES.labels(ROLES.get(status.role, "unknown")).inc()
        return status

    return timed


def checked(result: common_pb2.CheckResult) -> None:
    """One service health check probe's result."""
    CHECKS.labels(result.name, "ok" if result.ok else "failed").inc()
    CHECK_DURATION.labels(result.name).observe(result.latency_seconds)


class AgentCollector(Collector):
    """What the agent would report now: its database, its checks, its link to the leader,
    and how long until it fences its database for want of acknowledgements."""

    def __init__(self, agent: Agent, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._agent = agent
        self._clock = clock

    def describe(self):
        return []  # collected fresh on every scrape; no need to run collect() at register

    def collect(self) -> Iterator:
        agent = self._agent
        config = agent.config
        info = InfoMetricFamily("latitude_agent", "This agent")
        info.add_metric(
            [], {"region": config.region, "agent_id": config.id, "version": latitude.__version__}
        )
        yield info
        db = agent.database
        role = GaugeMetricFamily(
            "latitude_agent_database_role", "1 for the role of the database seen", labels=["role"]
        )
        for value, label in ROLES.items():
            role.add_metric([label], float(db.role == value))
        yield role
        yield _gauge("latitude_agent_database_fenced", "1 while the database is fenced", db.fenced)
        yield _gauge(
            "latitude_agent_replay_lag_bytes",
            "WAL received (or known sent) and not replayed yet (0 unless a standby)",
            db.replay_lag_bytes,
        )
        yield _gauge(
            "latitude_agent_replay_lag_seconds",
            "Age of the newest primary heartbeat replayed (0 unless a standby)",
            db.replay_lag_seconds,
        )
        yield _gauge(
            "latitude_agent_utilization_ratio",
            "Share of the region's capacity in use, as reported",
            agent.utilization.value(),
        )
        yield _gauge(
            "latitude_agent_error_ratio",
            "Share of check probes that failed in the window, as reported",
            agent.checks.error_rate(),
        )
        yield _gauge(
            "latitude_agent_response_time_seconds",
            "Median latency of successful check probes in the window, as reported",
            agent.checks.response_time(),
        )
        ok = GaugeMetricFamily(
            "latitude_agent_check_ok", "1 while the check's latest probe passed", labels=["check"]
        )
        for result in agent.checks.latest():
            ok.add_metric([result.name], float(result.ok))
        yield ok
        yield _gauge(
            "latitude_agent_leader_connected",
            "1 while the agent has a stream to a leader that welcomed it",
            bool(agent.link.connected_to),
        )
        yield _gauge(
            "latitude_agent_leader_epoch", "Highest leader epoch seen", agent.link.highest_epoch
        )
        yield _gauge(
            "latitude_agent_fence_deadline_seconds",
            "Until the agent fences a primary for want of an acknowledged report or a "
            "confirmed failsafe round (negative: past)",
            agent.lease.deadline - self._clock(),
        )


def _gauge(name: str, help: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help, value=float(value))


def install(agent: Agent, registry: CollectorRegistry = REGISTRY) -> AgentCollector:
    """Export ``agent``'s state from ``registry`` (the one its /metrics serves)."""
    collector = AgentCollector(agent)
    registry.register(collector)
    # One series per counter, not two: nothing here reads the _created timestamps.
    disable_created_metrics()
    return collector

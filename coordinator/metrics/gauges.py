"""What a coordinator is, as Prometheus gauges read at scrape time (``coordinator.metrics``
installs them beside the events it counts).

Nothing is bookkept: the collector reads the leader's registry, the failover machine and the
served routing table when Prometheus asks, so a gauge is never stale and the control loop pays
nothing for it. Only the leader knows the regions' health; a follower exports its leader flag
(0), the epoch it follows, and the routing table it serves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

import latitude
from coordinator.detector import RegionState
from latitude.v1 import common_pb2

if TYPE_CHECKING:
    from coordinator.node import CoordinatorNode

_STATES = [state.value for state in RegionState]
_ROLES = {
    common_pb2.DATABASE_ROLE_PRIMARY: "primary",
    common_pb2.DATABASE_ROLE_STANDBY: "standby",
    common_pb2.DATABASE_ROLE_UNKNOWN: "unknown",
    common_pb2.DATABASE_ROLE_DOWN: "down",
}


class CoordinatorCollector(Collector):
    """Every replica: its leader flag, the epoch it knows, the routing table it serves. The
    leader also: every region's state and figures, and whether a failover is under way."""

    def __init__(self, node: CoordinatorNode, *, wall=time.time) -> None:
        self._node = node
        self._wall = wall

    def describe(self):
        return []  # collected fresh on every scrape; no need to run collect() at register

    def collect(self) -> Iterator:
        node = self._node
        info = InfoMetricFamily("latitude_coordinator", "This coordinator replica")
        info.add_metric([], {"coordinator": node.id, "version": latitude.__version__})
        yield info
        leading = node.is_leader
        yield _gauge("latitude_coordinator_leader", "1 while this replica leads", leading)
        leader = node.election.leader
        yield _gauge(
            "latitude_coordinator_epoch",
            "The current leader's epoch as this replica knows it (0: no leader known)",
            leader.epoch if leader is not None else 0,
        )
        yield from self._table()
        yield from self._alerts()
        registry, machine = node.registry, node.orchestrator
        if leading and registry is not None:
            yield from self._regions(registry)
        if leading and machine is not None:
            yield _gauge(
                "latitude_failover_in_progress",
                "1 while a failover or switchover runs",
                machine.current is not None,
            )

    def _table(self) -> Iterator[GaugeMetricFamily]:
        table = self._node.routing.table
        yield _gauge(
            "latitude_routing_table_version",
            "Version of the routing table this replica serves (0: none yet)",
            table.version if table is not None else 0,
        )
        write = GaugeMetricFamily(
            "latitude_routing_write_region",
            "1 for the write region of the table this replica serves (none during a failover)",
            labels=["region"],
        )
        weight = GaugeMetricFamily(
            "latitude_region_routing_weight_ratio",
            "Each region's share of weighted read traffic in the table this replica serves",
            labels=["region"],
        )
        routes = {r.region: r for r in table.regions} if table is not None else {}
        for name in self._node.config.regions:
            write.add_metric([name], table is not None and table.write_region == name)
            if name in routes:
                weight.add_metric([name], routes[name].weight)
        yield write
        yield weight

    def _alerts(self) -> Iterator[CounterMetricFamily]:
        """Incidents and their webhook notifications, as this replica's terms as leader
        counted them (targets are named by the configuration: a bounded label)."""
        stats = getattr(self._node, "incident_stats", None)
        if stats is None:
            return
        notifications = CounterMetricFamily(
            "latitude_alert_notifications",
            "Webhook notifications this replica posted as leader, by target and result (sent: "
            "the receiver answered 2xx; failed: refused, an error status, or no answer in time)",
            labels=["target", "result"],
        )
        timeouts = CounterMetricFamily(
            "latitude_alert_notification_timeouts",
            "Webhook notifications that got no answer within the target's timeout",
            labels=["target"],
        )
        targets = [t.label for t in getattr(self._node.config, "alerts", ())]
        for label in dict.fromkeys([*targets, *stats.targets]):
            target = stats.targets.get(label)
            notifications.add_metric([label, "sent"], target.sent if target else 0)
            notifications.add_metric([label, "failed"], target.failed if target else 0)
            timeouts.add_metric([label], target.timeouts if target else 0)
        yield notifications
        yield timeouts
        yield CounterMetricFamily(
            "latitude_incidents_opened",
            "Incidents this replica opened as leader",
            value=stats.incidents_opened,
        )
        yield CounterMetricFamily(
            "latitude_incident_events_correlated",
            "Events this replica correlated into incidents as leader",
            value=stats.events_correlated,
        )
        yield CounterMetricFamily(
            "latitude_incident_writes_failed",
            "Incident writes to etcd that failed (tried again with the next event)",
            value=stats.writes_failed,
        )

    def _regions(self, registry) -> Iterator[GaugeMetricFamily]:
        def family(name: str, help: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, help, labels=["region", *labels])

        state = family("latitude_region_state", "1 for the region's current state", "state")
        role = family("latitude_region_role", "1 for its database's reported role", "role")
        fenced = family("latitude_region_fenced", "1 while its database reports itself fenced")
        connected = family("latitude_region_agent_connected", "1 while its agent has a stream")
        age = family("latitude_region_report_age_seconds", "Since its last report arrived")
        response = family(
            "latitude_region_response_time_seconds", "Median response time its checks measured"
        )
        errors = family("latitude_region_error_ratio", "Share of its checks' probes that failed")
        utilization = family(
            "latitude_region_utilization_ratio", "Share of its capacity in use (may exceed 1)"
        )
        lag_bytes = family(
            "latitude_region_replay_lag_bytes", "WAL its standby has yet to replay (0: primary)"
        )
        lag_seconds = family(
            "latitude_region_replay_lag_seconds", "How far its standby's replay is behind"
        )
        now = self._wall()
        for name, record in registry.regions.items():
            current = record.monitor.current.state.value
            for value in _STATES:
                state.add_metric([name, value.lower()], current == value)
            connected.add_metric([name], record.session is not None)
            report = record.report
            if report is None:
                continue
            db = report.database
            for value, label in _ROLES.items():
                role.add_metric([name, label], db.role == value)
            fenced.add_metric([name], db.fenced)
            age.add_metric([name], max(0.0, now - record.report_wall))
            response.add_metric([name], report.response_time_seconds)
            errors.add_metric([name], report.error_rate)
            utilization.add_metric([name], report.capacity_utilization)
            behind_bytes, behind_seconds = registry.lag(record)
            lag_bytes.add_metric([name], behind_bytes)
            lag_seconds.add_metric([name], behind_seconds)
        yield from (state, role, fenced, connected, age, response, errors, utilization)
        yield from (lag_bytes, lag_seconds)


def _gauge(name: str, help: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help, value=float(value))

"""The coordinator's and the agent's metrics against fake nodes and agents: what a scrape
shows, parsed by prometheus-client's own parser; and the event metrics' labels."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import grpc
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent import metrics as agent_metrics
from coordinator import metrics
from coordinator.config import AlertTarget
from coordinator.etcd import EtcdError, EtcdUnavailable
from coordinator.incidents.webhooks import DeliveryStats
from coordinator.metrics import gauges, resolve
from coordinator.registry import HealthPolicy, Registry
from coordinator.store import LeaderInfo
from latitude.v1 import admin_pb2, agent_pb2, common_pb2, routing_pb2

REGIONS = ("us-east-1", "eu-west-1")
PRIMARY, STANDBY = common_pb2.DATABASE_ROLE_PRIMARY, common_pb2.DATABASE_ROLE_STANDBY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scrape(collector) -> dict[tuple[str, tuple], float]:
    """Every sample a registry holding only ``collector`` exports, by name and labels."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples) -> set[str]:
    return {name for name, _ in samples}


def hello(region: str) -> agent_pb2.Hello:
    return agent_pb2.Hello(region=region, agent_id=f"agent-{region}", capacity=100)


def node(clock: Clock, *, leading: bool = True):
    registry = Registry(REGIONS, HealthPolicy(), clock=clock, wall=clock)
    table = routing_pb2.RoutingTable(version=7, write_region="us-east-1")
    table.regions.add(region="us-east-1", weight=0.75)
    table.regions.add(region="eu-west-1", weight=0.25)
    return SimpleNamespace(
        id="coordinator-1",
        is_leader=leading,
        election=SimpleNamespace(leader=LeaderInfo("coordinator-1", "h:1", 42, 0.0)),
        config=SimpleNamespace(regions=REGIONS),
        routing=SimpleNamespace(table=table),
        registry=registry if leading else None,
        orchestrator=SimpleNamespace(current=None) if leading else None,
    )


def reported(registry: Registry, region: str, **database) -> None:
    record = registry.attach(hello(region), object())
    report = agent_pb2.Report(
        sequence=1,
        database=common_pb2.DatabaseStatus(**database),
        capacity_utilization=0.5,
        error_rate=0.02,
        response_time_seconds=0.125,
    )
    registry.report(record, report)


def test_the_leader_exports_each_region_from_its_registry_at_scrape_time():
    clock = Clock()
    leader = node(clock)
    reported(leader.registry, "us-east-1", role=PRIMARY, current_lsn=5000)
    reported(
        leader.registry, "eu-west-1", role=STANDBY, replayed_lsn=3000, wal_receiver_streaming=True
    )
    collector = gauges.CoordinatorCollector(leader, wall=clock)
    clock.now += 0.25
    samples = scrape(collector)
    assert sample(samples, "latitude_coordinator_leader") == 1
    assert sample(samples, "latitude_coordinator_epoch") == 42
    info = [dict(labels) for name, labels in samples if name == "latitude_coordinator_info"]
    assert [i["coordinator"] for i in info] == ["coordinator-1"]
    # One gauge per state, each region in exactly one.
    for region in REGIONS:
        states = {
            labels: value
            for (name, labels), value in samples.items()
            if name == "latitude_region_state" and ("region", region) in labels
        }
        assert len(states) == 6 and sum(states.values()) == 1
        assert sample(samples, "latitude_region_state", region=region, state="healthy") == 1
        assert sample(samples, "latitude_region_report_age_seconds", region=region) == 0.25
        assert sample(samples, "latitude_region_utilization_ratio", region=region) == 0.5
        assert sample(samples, "latitude_region_error_ratio", region=region) == 0.02
        assert sample(samples, "latitude_region_response_time_seconds", region=region) == 0.125
        assert sample(samples, "latitude_region_fenced", region=region) == 0
        assert sample(samples, "latitude_region_agent_connected", region=region) == 1
    assert sample(samples, "latitude_region_role", region="us-east-1", role="primary") == 1
    assert sample(samples, "latitude_region_role", region="eu-west-1", role="primary") == 0
    assert sample(samples, "latitude_region_role", region="eu-west-1", role="standby") == 1
    standby = leader.registry.regions["eu-west-1"]
    behind_bytes, behind_seconds = leader.registry.lag(standby)
    assert behind_bytes == 2000  # the primary's position, less the standby's
    assert sample(samples, "latitude_region_replay_lag_bytes", region="eu-west-1") == behind_bytes
    assert sample(samples, "latitude_region_replay_lag_seconds", region="eu-west-1") == (
        behind_seconds
    )
    assert sample(samples, "latitude_region_replay_lag_bytes", region="us-east-1") == 0
    assert sample(samples, "latitude_region_routing_weight_ratio", region="us-east-1") == 0.75
    assert sample(samples, "latitude_routing_write_region", region="us-east-1") == 1
    assert sample(samples, "latitude_routing_write_region", region="eu-west-1") == 0
    assert sample(samples, "latitude_routing_table_version") == 7
    assert sample(samples, "latitude_failover_in_progress") == 0
    # Nothing is kept: the next scrape reads the registry as it is then.
    leader.registry.regions["eu-west-1"].report.database.fenced = True
    leader.orchestrator.current = admin_pb2.FailoverStatus(failover_id="f1")
    clock.now += 1.0
    again = scrape(collector)
    assert sample(again, "latitude_region_fenced", region="eu-west-1") == 1
    assert sample(again, "latitude_region_report_age_seconds", region="us-east-1") == 1.25
    assert sample(again, "latitude_failover_in_progress") == 1


def test_a_region_without_a_report_has_a_state_and_no_figures():
    clock = Clock()
    samples = scrape(gauges.CoordinatorCollector(node(clock), wall=clock))
    assert sample(samples, "latitude_region_state", region="eu-west-1", state="pending") == 1
    assert sample(samples, "latitude_region_agent_connected", region="eu-west-1") == 0
    assert ("latitude_region_report_age_seconds", (("region", "eu-west-1"),)) not in samples


def test_a_follower_exports_its_own_view_and_no_region_state():
    clock = Clock()
    samples = scrape(gauges.CoordinatorCollector(node(clock, leading=False), wall=clock))
    assert sample(samples, "latitude_coordinator_leader") == 0
    assert sample(samples, "latitude_coordinator_epoch") == 42
    assert sample(samples, "latitude_region_routing_weight_ratio", region="eu-west-1") == 0.25
    assert not {n for n in names(samples) if n.startswith("latitude_region_state")}
    assert "latitude_failover_in_progress" not in names(samples)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def stamp(record: admin_pb2.FailoverStatus, step: str, seconds: float) -> None:
    record.steps[step].FromNanoseconds(int((1000 + seconds) * 1e9))


def test_a_finished_failover_is_counted_and_each_step_timed_from_the_one_before():
    record = admin_pb2.FailoverStatus(
        kind=admin_pb2.FAILOVER_KIND_MANUAL, phase=admin_pb2.FAILOVER_PHASE_COMPLETED
    )
    record.started_at.FromNanoseconds(int(1000e9))
    record.finished_at.FromNanoseconds(int(1007e9))
    for step, at in (("detected", 0), ("drained", 0.5), ("fenced", 4.5), ("selected", 5),
                     ("promoted", 6), ("redirected", 6.25), ("repointed", 7)):  # fmt: skip
        stamp(record, step, at)
    steps = "latitude_failover_step_duration_seconds"
    before = {s: value(f"{steps}_sum", kind="manual", step=s) for s in ("fence", "redirect")}
    counted = value("latitude_failovers_total", kind="manual", outcome="completed")
    metrics.failover_finished(record)
    assert value("latitude_failovers_total", kind="manual", outcome="completed") == counted + 1
    assert value(f"{steps}_sum", kind="manual", step="fence") - before["fence"] == 4.0
    assert value(f"{steps}_sum", kind="manual", step="redirect") - before["redirect"] == 0.25
    total = "latitude_failover_duration_seconds_bucket"
    assert value(total, kind="manual", outcome="completed", le="7.5") >= 1
    # One still running is not a finished one.
    record.phase = admin_pb2.FAILOVER_PHASE_PROMOTING
    metrics.failover_finished(record)
    assert value("latitude_failovers_total", kind="manual", outcome="completed") == counted + 1


def test_an_aborted_failover_times_only_the_steps_it_reached():
    record = admin_pb2.FailoverStatus(
        kind=admin_pb2.FAILOVER_KIND_AUTOMATIC, phase=admin_pb2.FAILOVER_PHASE_ABORTED
    )
    for step, at in (("detected", 0), ("drained", 0.1), ("fenced", 2.0)):
        stamp(record, step, at)
    steps = "latitude_failover_step_duration_seconds_count"
    promotes = value(steps, kind="automatic", step="promote")
    fences = value(steps, kind="automatic", step="fence")
    aborted = value("latitude_failovers_total", kind="automatic", outcome="aborted")
    metrics.failover_finished(record)
    assert value("latitude_failovers_total", kind="automatic", outcome="aborted") == aborted + 1
    assert value(steps, kind="automatic", step="fence") == fences + 1
    assert value(steps, kind="automatic", step="promote") == promotes


def test_resolve_outcomes_and_strategies_stay_a_bounded_set():
    def calls(strategy: str, outcome: str) -> float:
        return value("latitude_resolve_duration_seconds_count", strategy=strategy, outcome=outcome)

    started = 0.0  # perf_counter's epoch: a long call, which is fine here
    before = {
        "ok": calls("weighted", "ok"),
        "unavailable": calls("unknown", "unavailable"),
        "cancelled": calls("geographic", "cancelled"),
    }
    metrics.resolved(routing_pb2.STRATEGY_WEIGHTED).done(started)
    metrics.resolve_failed(999, grpc.StatusCode.UNAVAILABLE, started)  # no such strategy
    metrics.resolve_failed(routing_pb2.STRATEGY_GEOGRAPHIC, None, started, asyncio.CancelledError())
    after = {
        "ok": calls("weighted", "ok"),
        "unavailable": calls("unknown", "unavailable"),
        "cancelled": calls("geographic", "cancelled"),
    }
    assert {k: after[k] - before[k] for k in after} == dict.fromkeys(after, 1)


def test_a_leader_term_is_counted_once_however_often_it_is_seen():
    changes = value("latitude_coordinator_leader_changes_total")
    terms = metrics._Terms()
    first, second = LeaderInfo("c1", "h:1", 10, 0.0), LeaderInfo("c2", "h:2", 11, 0.0)
    for info in (first, None, first, second, second):
        terms.seen(info)
    assert value("latitude_coordinator_leader_changes_total") == changes + 2


def test_etcd_requests_are_timed_and_failures_counted_by_kind_but_not_cancellations():
    def errors(kind: str) -> float:
        return value("latitude_etcd_request_errors_total", operation="lease_grant", error=kind)

    timed = value("latitude_etcd_request_duration_seconds_count", operation="lease_grant")
    unavailable, refused = errors("unavailable"), errors("error")
    with metrics.EtcdRequest("lease grant"):
        pass
    for error in (EtcdUnavailable("no member"), EtcdError("refused"), asyncio.CancelledError()):
        with pytest.raises(type(error)), metrics.EtcdRequest("lease grant"):
            raise error
    assert value("latitude_etcd_request_duration_seconds_count", operation="lease_grant") == (
        timed + 3
    )
    assert (errors("unavailable"), errors("error")) == (unavailable + 1, refused + 1)


def test_commands_are_counted_by_region_kind_and_result():
    fence = agent_pb2.COMMAND_KIND_FENCE

    def results(outcome: str) -> float:
        return value(
            "latitude_command_results_total", region="eu-west-1", kind="fence", result=outcome
        )

    before = {o: results(o) for o in ("ok", "refused", "unanswered")}
    metrics.command_result("eu-west-1", fence, agent_pb2.CommandResult(ok=True))
    metrics.command_result("eu-west-1", fence, agent_pb2.CommandResult(ok=False))
    metrics.command_result("eu-west-1", fence, None)
    assert {o: results(o) - before[o] for o in before} == {"ok": 1, "refused": 1, "unanswered": 1}


def test_reports_are_counted_per_region_through_the_cached_children():
    def reports(region: str) -> float:
        return value("latitude_reports_received_total", region=region)

    before = {r: reports(r) for r in REGIONS}
    for _ in range(3):
        metrics.report_received("us-east-1")
    metrics.report_received("eu-west-1")
    assert {r: reports(r) - before[r] for r in REGIONS} == {"us-east-1": 3, "eu-west-1": 1}


# -- the agent -----------------------------------------------------------------------------


def fake_agent(database: common_pb2.DatabaseStatus):
    checks = [common_pb2.CheckResult(name="api", ok=True), common_pb2.CheckResult(name="db")]
    return SimpleNamespace(
        config=SimpleNamespace(region="eu-west-1", id="agent-eu"),
        database=database,
        utilization=SimpleNamespace(value=lambda: 0.3),
        checks=SimpleNamespace(
            error_rate=lambda: 0.5, response_time=lambda: 0.01, latest=lambda: checks
        ),
        link=SimpleNamespace(connected_to="127.0.0.1:1", highest_epoch=42),
        lease=SimpleNamespace(deadline=104.0),
    )


def test_the_agent_exports_what_it_sees_at_scrape_time():
    database = common_pb2.DatabaseStatus(
        role=STANDBY, replay_lag_bytes=4096, replay_lag_seconds=1.5
    )
    agent = fake_agent(database)
    samples = scrape(agent_metrics.AgentCollector(agent, clock=lambda: 100.0))
    info = [labels for name, labels in samples if name == "latitude_agent_info"]
    assert dict(info[0])["region"] == "eu-west-1"
    assert sample(samples, "latitude_agent_database_role", role="standby") == 1
    assert sum(v for (n, _), v in samples.items() if n == "latitude_agent_database_role") == 1
    assert sample(samples, "latitude_agent_replay_lag_bytes") == 4096
    assert sample(samples, "latitude_agent_replay_lag_seconds") == 1.5
    assert sample(samples, "latitude_agent_utilization_ratio") == 0.3
    assert sample(samples, "latitude_agent_error_ratio") == 0.5
    assert sample(samples, "latitude_agent_check_ok", check="api") == 1
    assert sample(samples, "latitude_agent_check_ok", check="db") == 0
    assert sample(samples, "latitude_agent_leader_connected") == 1
    assert sample(samples, "latitude_agent_leader_epoch") == 42
    assert sample(samples, "latitude_agent_fence_deadline_seconds") == 4.0
    agent.database = common_pb2.DatabaseStatus(role=PRIMARY, fenced=True)
    agent.link.connected_to = ""
    again = scrape(agent_metrics.AgentCollector(agent, clock=lambda: 100.0))
    assert sample(again, "latitude_agent_database_role", role="primary") == 1
    assert sample(again, "latitude_agent_database_fenced") == 1
    assert sample(again, "latitude_agent_leader_connected") == 0


async def test_a_probe_is_timed_and_counted_by_the_role_it_saw():
    @agent_metrics.timed_probe
    async def observe() -> common_pb2.DatabaseStatus:
        return common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_DOWN)

    down = value("latitude_agent_probes_total", role="down")
    timed = value("latitude_agent_probe_duration_seconds_count")
    assert (await observe()).role == common_pb2.DATABASE_ROLE_DOWN
    assert value("latitude_agent_probes_total", role="down") == down + 1
    assert value("latitude_agent_probe_duration_seconds_count") == timed + 1


def test_check_results_are_counted_by_check_and_result():
    failed = value("latitude_agent_check_results_total", check="api", result="failed")
    agent_metrics.checked(common_pb2.CheckResult(name="api", ok=False, latency_seconds=1.0))
    assert value("latitude_agent_check_results_total", check="api", result="failed") == failed + 1
    assert value("latitude_agent_check_duration_seconds_count", check="api") >= 1


def test_resolve_timings_are_a_histogram_with_cumulative_buckets():
    timings = resolve.ResolveTimings()
    call = timings.pair("geographic", "ok")
    call.done(time.perf_counter() - 0.003)  # between the 2.5 ms and 5 ms bounds
    call.done(time.perf_counter() - 1.0)  # past every bound
    samples = scrape(timings)

    def bucket(le: str) -> float:
        return sample(
            samples,
            "latitude_resolve_duration_seconds_bucket",
            le=le,
            outcome="ok",
            strategy="geographic",
        )

    assert (bucket("0.0025"), bucket("0.005"), bucket("0.05"), bucket("+Inf")) == (0, 1, 1, 2)
    labels = {"outcome": "ok", "strategy": "geographic"}
    assert sample(samples, "latitude_resolve_duration_seconds_count", **labels) == 2
    assert 1.003 <= sample(samples, "latitude_resolve_duration_seconds_sum", **labels) < 1.1


def test_alert_deliveries_are_counted_per_configured_target():
    fake = node(Clock())
    fake.config.alerts = (
        AlertTarget(url="http://127.0.0.1:9/hook", name="ops"),
        AlertTarget(url="http://127.0.0.1:9/page", name="pager"),
    )
    fake.incident_stats = DeliveryStats(events_correlated=12, incidents_opened=2)
    fake.incident_stats.target("ops").sent = 3
    fake.incident_stats.target("ops").failed = 1
    fake.incident_stats.target("ops").timeouts = 1
    families = {f.name: f for f in gauges.CoordinatorCollector(fake).collect()}
    sent = {
        (s.labels["target"], s.labels["result"]): s.value
        for s in families["latitude_alert_notifications"].samples
    }
    assert sent == {
        ("ops", "sent"): 3,
        ("ops", "failed"): 1,
        ("pager", "sent"): 0,
        ("pager", "failed"): 0,
    }
    assert families["latitude_incidents_opened"].samples[0].value == 2
    assert families["latitude_incident_events_correlated"].samples[0].value == 12

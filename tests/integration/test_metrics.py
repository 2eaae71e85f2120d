"""Prometheus metrics scraped over HTTP from the running stack's coordinators and agents, and
parsed with prometheus-client's own parser: names, types, label sets, and values that agree
with what the cluster is doing."""

from __future__ import annotations

import asyncio
import math

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from latitude.channels import open_channel
from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack
from latitude.v1 import routing_pb2, routing_pb2_grpc
from tests.integration.connections import TLS, eventually

pytestmark = pytest.mark.stack

REGIONS = {"us-east-1", "eu-west-1", "ap-southeast-1"}
STATES = {"pending", "healthy", "degraded", "unhealthy", "maintenance", "failover"}
ROLES = {"primary", "standby", "unknown", "down"}


class Scrape:
    """One scrape of a /metrics endpoint: each family's type, every sample by its own name (a
    counter's family drops the ``_total`` its sample has)."""

    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self._samples: dict[str, list[Sample]] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self._samples.setdefault(sample.name, []).append(sample)

    def samples(self, name: str, **labels: str) -> list[Sample]:
        return [
            s
            for s in self._samples.get(name, [])
            if all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the matching samples (0 when there are none)."""
        return sum(s.value for s in self.samples(name, **labels))

    def by_region(self, name: str, **labels: str) -> dict[str, float]:
        return {s.labels["region"]: s.value for s in self.samples(name, **labels)}


async def scrape(address: str) -> Scrape:
    timeout = aiohttp.ClientTimeout(total=3.0)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        async with client.get(f"http://{address}/metrics") as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            return Scrape(await response.text())


def coordinators(stack: Stack) -> dict[str, str]:
    return {n: a for n, a in stack.http_addresses(stack.state()).items() if "coordinator" in n}


def agents(stack: Stack) -> dict[str, str]:
    return {n: a for n, a in stack.http_addresses(stack.state()).items() if n.startswith("agent")}


async def scrape_all(addresses: dict[str, str]) -> dict[str, Scrape]:
    scrapes = await asyncio.gather(*(scrape(a) for a in addresses.values()))
    return dict(zip(addresses, scrapes, strict=True))


async def leader_scrape(stack: Stack) -> tuple[str, Scrape, dict[str, Scrape]]:
    """The leader's scrape once the cluster is settled: one leader, every region HEALTHY."""

    async def settled():
        scrapes = await scrape_all(coordinators(stack))
        leaders = [n for n, s in scrapes.items() if s.value("latitude_coordinator_leader") == 1]
        if len(leaders) != 1:
            return None
        healthy = scrapes[leaders[0]].by_region("latitude_region_state", state="healthy")
        return (
            (leaders[0], scrapes[leaders[0]], scrapes)
            if healthy == dict.fromkeys(REGIONS, 1.0)
            else None
        )

    return await eventually(settled, 30, "one leader, and every region HEALTHY in its metrics")


async def test_the_leader_exports_every_region_and_followers_only_their_own_view(stack: Stack):
    await stack.up()
    name, leader, scrapes = await leader_scrape(stack)
    assert len(scrapes) == 3
    assert sum(s.value("latitude_coordinator_leader") for s in scrapes.values()) == 1
    epochs = {s.value("latitude_coordinator_epoch") for s in scrapes.values()}
    assert len(epochs) == 1 and epochs.pop() > 0
    for replica, scrape in scrapes.items():
        info = scrape.samples("latitude_coordinator_info")
        assert [s.labels["coordinator"] for s in info] == [replica]
        assert scrape.types["latitude_coordinator_leader_changes"] == "counter"
        assert scrape.value("latitude_coordinator_leader_changes_total") >= 1
        # Every replica serves the routing table, and talks to etcd.
        assert scrape.value("latitude_routing_table_version") > 0
        weights = scrape.by_region("latitude_region_routing_weight_ratio")
        assert set(weights) == REGIONS and math.isclose(sum(weights.values()), 1.0)
        writes = scrape.by_region("latitude_routing_write_region")
        assert sorted(writes.values()) == [0, 0, 1]
        assert scrape.types["latitude_etcd_request_duration_seconds"] == "histogram"
        assert scrape.value("latitude_etcd_request_duration_seconds_count") > 0
        if replica != name:
            assert scrape.samples("latitude_region_state") == []
            assert scrape.samples("latitude_failover_in_progress") == []
    # The leader: one gauge per state, per region, exactly one of them 1.
    states = leader.samples("latitude_region_state")
    assert leader.types["latitude_region_state"] == "gauge"
    assert {tuple(sorted(s.labels)) for s in states} == {("region", "state")}
    assert {(s.labels["region"], s.labels["state"]) for s in states} == {
        (r, s) for r in REGIONS for s in STATES
    }
    for region in REGIONS:
        assert leader.value("latitude_region_state", region=region) == 1
    primaries = leader.by_region("latitude_region_role", role="primary")
    assert sorted(primaries.values()) == [0, 0, 1]
    (primary,) = [r for r, v in primaries.items() if v == 1]
    assert writes == {r: float(r == primary) for r in REGIONS}
    assert {s.labels["role"] for s in leader.samples("latitude_region_role")} == ROLES
    assert leader.by_region("latitude_region_fenced") == dict.fromkeys(REGIONS, 0.0)
    assert leader.by_region("latitude_region_agent_connected") == dict.fromkeys(REGIONS, 1.0)
    ages = leader.by_region("latitude_region_report_age_seconds")
    assert set(ages) == REGIONS and all(0 <= a < 2.0 for a in ages.values()), ages
    assert leader.by_region("latitude_region_replay_lag_bytes")[primary] == 0
    lag = leader.by_region("latitude_region_replay_lag_seconds")
    assert set(lag) == REGIONS and all(0 <= s < 5 for s in lag.values())
    for ratio in ("latitude_region_error_ratio", "latitude_region_utilization_ratio"):
        assert set(leader.by_region(ratio)) == REGIONS
    assert all(0 <= e <= 1 for e in leader.by_region("latitude_region_error_ratio").values())
    assert set(leader.by_region("latitude_region_response_time_seconds")) == REGIONS
    assert leader.value("latitude_failover_in_progress") == 0
    reports = leader.by_region("latitude_reports_received_total")
    assert set(reports) == REGIONS and all(n > 0 for n in reports.values()), reports
    assert leader.types["latitude_reports_received"] == "counter"


async def test_reports_keep_arriving_between_scrapes(stack: Stack):
    name, before, _ = await leader_scrape(stack)
    address = coordinators(stack)[name]
    counts = before.by_region("latitude_reports_received_total")

    async def grown():
        after = (await scrape(address)).by_region("latitude_reports_received_total")
        return all(after[r] > counts[r] for r in REGIONS)

    await eventually(grown, 5, "every region's report counter to grow")


async def test_agents_export_their_database_probes_and_link(stack: Stack):
    await stack.up()

    async def connected():
        scrapes = await scrape_all(agents(stack))
        ok = all(s.value("latitude_agent_leader_connected") == 1 for s in scrapes.values())
        return scrapes if ok else None

    scrapes = await eventually(connected, 30, "every agent connected to the leader")
    assert len(scrapes) == 3
    roles = {}
    for process, scrape in scrapes.items():
        (info,) = scrape.samples("latitude_agent_info")
        region = info.labels["region"]
        assert process == f"agent-{region}"
        role = scrape.samples("latitude_agent_database_role")
        assert {s.labels["role"] for s in role} == ROLES
        assert sum(s.value for s in role) == 1
        roles[region] = next(s.labels["role"] for s in role if s.value == 1)
        assert scrape.value("latitude_agent_database_fenced") == 0
        assert scrape.value("latitude_agent_leader_epoch") > 0
        assert scrape.types["latitude_agent_probes"] == "counter"
        assert scrape.value("latitude_agent_probes_total", role=roles[region]) > 0
        assert scrape.types["latitude_agent_probe_duration_seconds"] == "histogram"
        assert scrape.value("latitude_agent_probe_duration_seconds_count") > 0
        assert scrape.value("latitude_agent_replay_lag_bytes") >= 0
        for name in (
            "latitude_agent_utilization_ratio",
            "latitude_agent_error_ratio",
            "latitude_agent_response_time_seconds",
            "latitude_agent_fence_deadline_seconds",
        ):
            assert scrape.samples(name), name
        assert scrape.types["latitude_agent_check_results"] == "counter"
    assert sorted(roles.values()) == ["primary", "standby", "standby"]


async def test_resolve_calls_are_counted_by_strategy_and_outcome(stack: Stack):
    await leader_scrape(stack)
    state = stack.state()
    # One replica: its gRPC address and its metrics.
    replica = stack.topology.coordinators[0]
    address = stack.coordinator_addresses(state)[0]
    metrics = stack.http_address(state, replica)
    before = await scrape(metrics)
    good = routing_pb2.ResolveRequest(client_ip="81.2.69.160")
    bad = routing_pb2.ResolveRequest(client_ip="not an address")
    async with open_channel(address, TLS) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        for _ in range(25):
            await stub.Resolve(good, timeout=2.0)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Resolve(bad, timeout=2.0)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        watch = stub.Watch(routing_pb2.WatchRequest(), timeout=10.0)
        await watch.read()
        during = await scrape(metrics)
        watch.cancel()
    after = await scrape(metrics)
    calls = "latitude_resolve_duration_seconds_count"
    assert after.types["latitude_resolve_duration_seconds"] == "histogram"

    def more(outcome: str, **labels: str) -> float:
        return after.value(calls, outcome=outcome, **labels) - before.value(
            calls, outcome=outcome, **labels
        )

    # Applied: the cluster's default strategy, geographic.
    assert more("ok", strategy="geographic") == more("ok") == 25
    assert more("invalid_argument") == 1
    assert {tuple(sorted(s.labels)) for s in after.samples(calls)} == {("outcome", "strategy")}
    took = after.value("latitude_resolve_duration_seconds_sum") - before.value(
        "latitude_resolve_duration_seconds_sum"
    )
    assert 0 < took < 26 * 0.05, took  # in the handler: well under a call's round trip
    assert during.value("latitude_watch_streams") >= 1

    async def closed():
        return (await scrape(metrics)).value("latitude_watch_streams") == 0

    await eventually(closed, 5, "the Watch stream to be gone from the gauge")


@pytest.fixture
def private_stack():
    with running_stack() as stack:
        yield stack


async def test_a_failover_moves_the_failover_counters_and_step_histograms(private_stack: Stack):
    """On a private stack (its primary region is killed): the automatic failover is counted
    once, completed, with every step timed, and the gauges follow the new primary."""
    stack = private_stack
    name, before, _ = await leader_scrape(stack)
    primary = next(
        r for r, v in before.by_region("latitude_region_role", role="primary").items() if v
    )
    automatic = {"kind": "automatic", "outcome": "completed"}
    assert before.value("latitude_failovers_total", **automatic) == 0
    await stack.status()  # learn the postmaster an agent may have restarted
    await stack.kill(f"agent-{primary}")
    await stack.kill(f"postgres-{primary}")

    async def failed_over():
        scrapes = await scrape_all(coordinators(stack))
        done = sum(s.value("latitude_failovers_total", **automatic) for s in scrapes.values())
        return scrapes if done else None

    scrapes = await eventually(failed_over, 60, "a completed automatic failover counted")
    (name,) = [n for n, s in scrapes.items() if s.value("latitude_coordinator_leader") == 1]
    leader = scrapes[name]
    assert sum(s.value("latitude_failovers_total") for s in scrapes.values()) == 1
    assert leader.types["latitude_failovers"] == "counter"
    assert {tuple(sorted(s.labels)) for s in leader.samples("latitude_failovers_total")} == {
        ("kind", "outcome")
    }
    assert leader.value("latitude_failover_duration_seconds_count", **automatic) == 1
    took = leader.value("latitude_failover_duration_seconds_sum", **automatic)
    assert 0 < took < 30, took
    steps = "latitude_failover_step_duration_seconds"
    assert leader.types[steps] == "histogram"
    timed = {s.labels["step"] for s in leader.samples(f"{steps}_count", kind="automatic")}
    assert timed == {"drain", "fence", "select", "promote", "redirect", "repoint"}
    for step in timed:
        assert leader.value(f"{steps}_count", kind="automatic", step=step) == 1, step
    parts = sum(s.value for s in leader.samples(f"{steps}_sum", kind="automatic"))
    assert 0 < parts <= took + 0.001  # the rest: the old primary's rejoin, started
    # The old primary was fenced by deadline: that step waited for it.
    assert leader.value(f"{steps}_sum", kind="automatic", step="fence") > 0.5
    # The promotion was a command, and it succeeded.
    results = "latitude_command_results_total"
    promoted = [s for s in leader.samples(results, kind="promote", result="ok") if s.value]
    assert len(promoted) == 1 and promoted[0].labels["region"] != primary
    assert leader.value("latitude_commands_sent_total", kind="promote") >= 1
    new = promoted[0].labels["region"]

    async def settled():
        now = await scrape(coordinators(stack)[name])
        roles = now.by_region("latitude_region_role", role="primary")
        state = now.by_region("latitude_region_state", state="unhealthy")
        return (
            roles.get(new) == 1
            and state.get(primary) == 1
            and now.by_region("latitude_routing_write_region").get(new) == 1
            and now.value("latitude_failover_in_progress") == 0
        )

    await eventually(settled, 15, f"the gauges to show {new} as the primary")

"""Global routing on the real stack: Resolve on every coordinator, strategies, the table
reaching watching clients. Each test leaves the stack as it found it: every region HEALTHY,
the default strategy geographic."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import time

import grpc
import pytest

from latitude import cli
from latitude.admin_client import call_leader, cluster_status
from latitude.channels import open_channel
from latitude.client import RoutingClient, SyncRoutingClient
from latitude.geo import InvalidLocation
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, common_pb2, routing_pb2, routing_pb2_grpc
from tests.integration.connections import TLS
from tests.integration.proxy import LinkProxy

pytestmark = pytest.mark.stack

HEALTHY = common_pb2.REGION_STATE_HEALTHY

# Clients by coordinates and by a public address the embedded database places in the same
# country, with the region nearest to them and the next nearest.
CLIENTS = {
    "New York": ((40.71, -74.01), "8.8.8.8", "us-east-1", "eu-west-1"),
    "London": ((51.51, -0.13), "81.2.69.160", "eu-west-1", "us-east-1"),
    "Frankfurt": ((50.11, 8.68), "85.214.132.117", "eu-west-1", "us-east-1"),
    "Singapore": ((1.29, 103.85), "202.166.126.1", "ap-southeast-1", "eu-west-1"),
    "Tokyo": ((35.68, 139.69), "133.242.0.1", "ap-southeast-1", "eu-west-1"),
}


@pytest.fixture
async def cluster(stack: Stack):
    """The stack, healthy before the test and healthy with the default strategy after it."""
    await stack.up()
    await all_healthy(stack)
    yield stack
    await stack.up()
    await set_strategy(stack, routing_pb2.STRATEGY_GEOGRAPHIC)
    await all_healthy(stack)


async def all_healthy(stack: Stack) -> None:
    """Every region HEALTHY, and every coordinator serving routing (one restarted by an
    earlier test may still be starting)."""
    addresses = stack.coordinator_addresses(stack.state())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        view = await cluster_status(addresses, 1.0, tls=TLS)
        if view.regions and all(r.state == HEALTHY for r in view.regions):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the stack did not come back to every region HEALTHY")
    for address in addresses:
        while True:
            try:
                await resolve(address)
                break
            except grpc.aio.AioRpcError as err:
                assert time.monotonic() < deadline, f"{address} does not serve routing: {err}"
                await asyncio.sleep(0.1)


async def set_strategy(stack: Stack, strategy: int) -> admin_pb2.SetStrategyResponse:
    return await call_leader(
        stack.coordinator_addresses(stack.state()),
        "SetStrategy",
        admin_pb2.SetStrategyRequest(strategy=strategy),
        5.0,
        tls=TLS,
    )


async def resolve(address: str, **fields) -> routing_pb2.RoutingDecision:
    async with open_channel(address, TLS) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        return await stub.Resolve(routing_pb2.ResolveRequest(**fields), timeout=2.0)


def by_coordinates(point: tuple[float, float]) -> dict:
    return {"location": common_pb2.Location(latitude=point[0], longitude=point[1])}


async def test_every_coordinator_sends_clients_to_their_nearest_region(cluster: Stack):
    for address in cluster.coordinator_addresses(cluster.state()):
        for city, (point, ip, nearest, _) in CLIENTS.items():
            for how in (by_coordinates(point), {"client_ip": ip}):
                decision = await resolve(address, **how)
                assert decision.targets[0].region == nearest, (city, how, decision)
                assert decision.write_region == "us-east-1"
                assert not decision.no_healthy_region
    located = await resolve(
        cluster.coordinator_addresses(cluster.state())[0], client_ip="81.2.69.160"
    )
    assert located.location_source == routing_pb2.LOCATION_SOURCE_IP_COUNTRY
    writes = await resolve(
        cluster.coordinator_addresses(cluster.state())[1],
        intent=routing_pb2.INTENT_WRITE,
        **by_coordinates(CLIENTS["Tokyo"][0]),
    )
    assert [t.region for t in writes.targets] == ["us-east-1"] and writes.targets[0].writable


async def test_an_unhealthy_region_loses_its_clients_to_the_next_nearest(cluster: Stack):
    state = cluster.state()
    address = cluster.coordinator_addresses(state)[0]
    suspect_after = 1.5
    for victim in ("eu-west-1", "ap-southeast-1"):
        record = state.processes[f"agent-{victim}"]
        await cluster.kill(f"agent-{victim}", signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            moved_at = None
            while time.monotonic() - stopped < 10:
                decisions = {
                    city: await resolve(address, **by_coordinates(point))
                    for city, (point, _, nearest, _) in CLIENTS.items()
                    if nearest == victim
                }
                if all(d.targets[0].region != victim for d in decisions.values()):
                    moved_at = time.monotonic()
                    break
                await asyncio.sleep(0.05)
            assert moved_at is not None, f"clients of {victim} were never moved"
            # One detection period (suspect_after) plus publication: generous bound.
            assert moved_at - stopped < suspect_after + 2.0
            for city, decision in decisions.items():
                assert decision.targets[0].region == CLIENTS[city][3], (city, decision)
                assert all(t.region != victim or t.weight == 0 for t in decision.targets)
        finally:
            os.kill(record.pid, signal.SIGCONT)
        await all_healthy(cluster)


async def test_round_robin_is_fair_and_a_strategy_change_reaches_every_replica(cluster: Stack):
    addresses = cluster.coordinator_addresses(cluster.state())
    reply = await set_strategy(cluster, routing_pb2.STRATEGY_ROUND_ROBIN)
    assert reply.previous == routing_pb2.STRATEGY_GEOGRAPHIC
    for address in addresses:
        deadline = time.monotonic() + 2
        while (await resolve(address)).strategy != routing_pb2.STRATEGY_ROUND_ROBIN:
            assert time.monotonic() < deadline, f"{address} still serves the old strategy"
            await asyncio.sleep(0.02)
    firsts: collections.Counter[str] = collections.Counter()
    async with open_channel(addresses[0], TLS) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        request = routing_pb2.ResolveRequest(client_ip="81.2.69.160")

        async def ask(n: int) -> None:
            for _ in range(n):
                decision = await stub.Resolve(request, timeout=2.0)
                firsts[decision.targets[0].region] += 1

        await asyncio.gather(*(ask(1000) for _ in range(10)))
    assert sum(firsts.values()) == 10_000
    assert max(firsts.values()) - min(firsts.values()) <= 2, firsts


async def test_a_watching_client_follows_strategy_changes_and_bad_input_is_named(cluster):
    addresses = cluster.coordinator_addresses(cluster.state())
    async with RoutingClient(addresses, tls=TLS) as client:
        assert client.resolve(location=(51.51, -0.13)).targets[0].region == "eu-west-1"
        reply = await set_strategy(cluster, routing_pb2.STRATEGY_WEIGHTED)
        table = await client.wait_for(lambda t: t.version >= reply.table_version, 2.0)
        assert table.default_strategy == routing_pb2.STRATEGY_WEIGHTED
        weights = {r.region: r.weight for r in table.regions}
        assert abs(sum(weights.values()) - 1) < 1e-6 and all(w > 0 for w in weights.values())
        assert client.staleness == 0
    for fields, field in [
        (by_coordinates((91.0, 0.0)), "location.latitude"),
        (by_coordinates((0.0, float("nan"))), "location.longitude"),
        ({"client_ip": "300.1.2.3"}, "client_ip"),
        ({"strategy": 42}, "strategy"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await resolve(addresses[0], **fields)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(field), caught.value.details()
    # Bytes that are no ResolveRequest at all (a truncated field).
    async with open_channel(addresses[0], TLS) as channel:
        raw = channel.unary_unary("/latitude.v1.RoutingService/Resolve")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw(b"\x0a\x20abc", timeout=2.0)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("request: not a ResolveRequest")


def headroom_weights(table: routing_pb2.RoutingTable) -> dict[str, float]:
    """Weights as capacity x availability x headroom, normalised (weights.py's rule)."""
    raw = {
        r.region: r.capacity * r.availability * max(0.05, 1 - r.capacity_utilization)
        for r in table.regions
    }
    return {name: value / sum(raw.values()) for name, value in raw.items()}


async def test_weights_follow_capacity_headroom(cluster: Stack):
    addresses = cluster.coordinator_addresses(cluster.state())
    busy = cluster.utilization_file("eu-west-1")

    def follows_headroom(table, utilization: float) -> bool:
        regions = {r.region: r for r in table.regions}
        return regions["eu-west-1"].capacity_utilization == utilization and all(
            regions[name].weight == pytest.approx(weight, abs=0.006)
            for name, weight in headroom_weights(table).items()
        )

    async with RoutingClient(addresses, tls=TLS) as client:
        try:
            busy.write_text("0.8\n")
            table = await client.wait_for(lambda t: follows_headroom(t, 0.8), 10.0)
            weights = {r.region: r.weight for r in table.regions}
            # A region at 80 % takes far less than the idle ones (a recovering region may
            # still be climbing its failback ramp, which scales it further down).
            assert weights["eu-west-1"] < 0.25 * weights["us-east-1"]
            decision = client.resolve(ip="81.2.69.160", strategy="weighted")
            shares = {t.region: t.weight for t in decision.targets}
            assert shares == pytest.approx(weights, abs=0.01)
        finally:
            busy.write_text("0\n")
        await client.wait_for(lambda t: follows_headroom(t, 0.0), 10.0)


async def test_client_latency_reports_reach_the_table_through_any_replica(cluster: Stack):
    addresses = cluster.coordinator_addresses(cluster.state())
    prefix = "198.51.100.0/24"  # TEST-NET-2: placed nowhere, so only the measurements speak
    report = routing_pb2.LatencyReport(
        network_prefix=prefix,
        samples=[
            routing_pb2.LatencySample(region="us-east-1", latency_seconds=0.180),
            routing_pb2.LatencySample(region="eu-west-1", latency_seconds=0.020),
            routing_pb2.LatencySample(region="ap-southeast-1", latency_seconds=0.250),
            routing_pb2.LatencySample(region="mars-1", latency_seconds=0.001),
        ],
    )
    leader = (await cluster_status(addresses, 1.0, tls=TLS)).leader.leader_id
    follower = next(
        a
        for name, a in zip(cluster.topology.coordinators, addresses, strict=True)
        if name != leader
    )
    async with open_channel(follower, TLS) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        reply = await stub.ReportLatency(report, timeout=2.0)
        assert reply.accepted_samples == 3  # the unknown region is dropped
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            bad = routing_pb2.LatencyReport(client_ip="198.51.100.7")
            bad.samples.add(region="eu-west-1", latency_seconds=float("nan"))
            await stub.ReportLatency(bad, timeout=2.0)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("samples[0].latency_seconds")
    deadline = time.monotonic() + 5
    while True:
        decision = await resolve(
            addresses[0], client_ip="198.51.100.7", strategy=routing_pb2.STRATEGY_LATENCY
        )
        if "measured" in decision.latency_basis:
            break
        assert time.monotonic() < deadline, f"the measurements never reached the table: {decision}"
        await asyncio.sleep(0.1)
    assert [t.region for t in decision.targets] == ["eu-west-1", "us-east-1", "ap-southeast-1"]
    assert decision.targets[0].estimated_latency_seconds == pytest.approx(0.020)
    assert prefix in decision.latency_basis


async def test_the_client_moves_between_coordinators_and_outlasts_losing_them_all(cluster):
    first, second = cluster.coordinator_addresses(cluster.state())[:2]
    links = [await LinkProxy(first).start(), await LinkProxy(second).start()]
    client = RoutingClient([link.address for link in links], reconnect_max=0.2, tls=TLS)

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    try:
        await client.start()
        before = client.resolve(location=(50.11, 8.68))
        assert client.staleness == 0 and before.table_age_seconds == 0
        # The coordinator it follows goes away: it moves to the other one.
        serving = next(link for link in links if link.address == client.connected_to)
        other = next(link for link in links if link is not serving)
        await serving.cut()
        await until(lambda: client.connected_to == other.address, "a move to the other")
        reply = await set_strategy(cluster, routing_pb2.STRATEGY_HEALTH_BASED)
        await client.wait_for(lambda t: t.version >= reply.table_version, 2.0)
        # Then every coordinator is out of reach.
        await other.cut()
        await until(lambda: client.connected_to is None, "the client to notice")
        await asyncio.sleep(0.3)
        # Static stability: the last good table still answers, and says how old it is.
        during = client.resolve(location=(50.11, 8.68))
        assert during.strategy == routing_pb2.STRATEGY_HEALTH_BASED
        assert during.table_version == reply.table_version
        assert during.table_age_seconds >= 0.3 and client.staleness >= 0.3
        await serving.restore()
        await until(lambda: client.staleness == 0, "a reconnection")
        assert client.resolve(location=(50.11, 8.68)).table_age_seconds == 0
    finally:
        await client.close()
        for link in links:
            await link.cut()


def test_the_sync_client_answers_without_an_event_loop(stack: Stack):
    with SyncRoutingClient(stack.coordinator_addresses(stack.state()), tls=TLS) as client:
        decision = client.resolve(ip="202.166.126.1")
        assert decision.targets[0].region == "ap-southeast-1"
        assert client.staleness == 0 and client.table.version == decision.table_version
        with pytest.raises(InvalidLocation, match="location.longitude"):
            client.resolve(location=(1.0, 200.0))


async def test_the_route_command_explains_a_decision(cluster: Stack, capsys):
    where = ["--dir", str(cluster.dir)]
    code = await asyncio.to_thread(cli.main, ["route", *where, "--lat", "40.7", "--lon", "-74.0"])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.splitlines()[0].startswith("nearest healthy region to 40.70,-74.00")
    assert "us-east-1" in printed.splitlines()[-3]  # the first row of the targets table
    code = await asyncio.to_thread(cli.main, ["route", *where, "--ip", "81.2.69.160", "--json"])
    decision = json.loads(capsys.readouterr().out)
    assert code == 0 and decision["targets"][0]["region"] == "eu-west-1"
    code = await asyncio.to_thread(cli.main, ["route", *where, "--lat", "91", "--lon", "0"])
    assert code == 1
    assert "location.latitude" in capsys.readouterr().err
    code = await asyncio.to_thread(cli.main, ["strategy", *where, "nearest"])
    assert code == 1 and "unknown strategy 'nearest'" in capsys.readouterr().err

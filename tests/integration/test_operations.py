"""The event history, maintenance and the consistency check on the real stack. Each test
leaves the stack as it found it: every region HEALTHY, none in maintenance."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time

import grpc
import pytest

from latitude import cli
from latitude.admin_client import NoCoordinator, call_any, call_leader, cluster_status
from latitude.channels import open_channel
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, admin_pb2_grpc, common_pb2
from tests.integration.connections import CLI_TLS, TLS, eventually

pytestmark = pytest.mark.stack

HEALTHY = common_pb2.REGION_STATE_HEALTHY
MAINTENANCE = common_pb2.REGION_STATE_MAINTENANCE
K = admin_pb2
STANDBY_REGION = "eu-west-1"


@pytest.fixture
async def cluster(stack: Stack):
    """The stack, healthy before the test and made healthy again after it."""
    await stack.up()
    yield stack
    await stack.up()


def addresses(stack: Stack) -> list[str]:
    return stack.coordinator_addresses(stack.state())


async def status(stack: Stack) -> admin_pb2.ClusterStatus | None:
    try:
        return await cluster_status(addresses(stack), 1.0, tls=TLS)
    except NoCoordinator:  # every replica may be down mid-test
        return None


def region(view: admin_pb2.ClusterStatus, name: str) -> admin_pb2.RegionStatus:
    return next(r for r in view.regions if r.region == name)


async def until_status(stack: Stack, predicate, timeout: float, what: str):
    async def look():
        view = await status(stack)
        return view if view is not None and predicate(view) else None

    return await eventually(look, timeout, what)


async def events(stack: Stack, **filters) -> list[admin_pb2.Event]:
    request = admin_pb2.ListEventsRequest(**filters)
    return list((await call_any(addresses(stack), "ListEvents", request, 2.0, tls=TLS)).events)


async def newest_sequence(stack: Stack) -> int:
    found = await events(stack, limit=1)
    return found[-1].sequence if found else 0


async def events_after(stack: Stack, sequence: int, **filters) -> list[admin_pb2.Event]:
    return [e for e in await events(stack, limit=1000, **filters) if e.sequence > sequence]


async def maintenance(stack: Stack, name: str, enabled: bool, **how):
    request = admin_pb2.SetMaintenanceRequest(region=name, enabled=enabled, **how)
    return await call_leader(addresses(stack), "SetMaintenance", request, 10.0, tls=TLS)


async def call(address: str, method: str, request):
    async with open_channel(address, TLS) as channel:
        return await getattr(admin_pb2_grpc.AdminServiceStub(channel), method)(request, timeout=5)


def all_healthy(view: admin_pb2.ClusterStatus) -> bool:
    return all(r.state == HEALTHY and r.last_report_age_seconds < 1.0 for r in view.regions)


async def test_region_state_changes_are_recorded_in_order(cluster: Stack):
    name = "ap-southeast-1"
    since = await newest_sequence(cluster)
    await cluster.kill(f"agent-{name}")
    await until_status(
        cluster, lambda s: region(s, name).state != HEALTHY, 10, f"{name} to turn unhealthy"
    )
    await cluster.up()  # restarts the agent
    await until_status(cluster, all_healthy, 20, f"{name} to be healthy again")

    async def recorded():
        found = await events_after(cluster, since, region=name)
        changes = [
            (e.attributes["from"], e.attributes["to"])
            for e in found
            if e.kind == K.EVENT_KIND_REGION_STATE_CHANGED
        ]
        return found if changes and changes[-1][1] == "HEALTHY" else None

    found = await eventually(recorded, 5, "the recovery to be recorded")
    kinds = [e.kind for e in found]
    # The stream's end and the silence are noticed separately: either may be recorded first.
    disconnected = kinds.index(K.EVENT_KIND_AGENT_DISCONNECTED)
    assert K.EVENT_KIND_AGENT_CONNECTED in kinds[disconnected:]
    changes = [
        (e.attributes["from"], e.attributes["to"], e.severity)
        for e in found
        if e.kind == K.EVENT_KIND_REGION_STATE_CHANGED
    ]
    assert changes[0] == ("HEALTHY", "UNHEALTHY", K.SEVERITY_CRITICAL)
    assert changes[-1][1] == "HEALTHY"
    # Each change starts where the one before ended.
    assert all(b[0] == a[1] for a, b in itertools.pairwise(changes)), changes
    sequences = [e.sequence for e in found]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    # Filters: only that kind, only since a moment.
    only = await events_after(cluster, since, kinds=[K.EVENT_KIND_AGENT_CONNECTED])
    assert only and {e.kind for e in only} == {K.EVENT_KIND_AGENT_CONNECTED}


async def test_maintenance_survives_a_leader_change_and_is_recorded(cluster: Stack):
    before = await status(cluster)
    since = await newest_sequence(cluster)
    old_leader = before.leader.leader_id
    try:
        response = await maintenance(cluster, STANDBY_REGION, True, reason="kernel upgrade")
        assert response.region.state == MAINTENANCE
        assert response.region.state_reason == "in maintenance: kernel upgrade"
        assert not response.HasField("switchover")
        view = await until_status(
            cluster, lambda s: region(s, STANDBY_REGION).state == MAINTENANCE, 3, "MAINTENANCE"
        )
        assert region(view, STANDBY_REGION).database.wal_receiver_streaming  # still a standby
        # A replica that does not lead says so, and where the leader is.
        follower = next(a for a in addresses(cluster) if a != before.leader.address)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(
                follower,
                "SetMaintenance",
                admin_pb2.SetMaintenanceRequest(region=STANDBY_REGION, enabled=False),
            )
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        metadata = dict(refused.value.trailing_metadata() or ())
        assert metadata["latitude-leader-address"] == before.leader.address

        # Recorded in the background, soon after: a leader killed before that loses them.
        await eventually(
            lambda: events_after(cluster, since, kinds=[K.EVENT_KIND_MAINTENANCE_CHANGED]),
            3,
            "the change to be recorded",
        )
        await cluster.kill(old_leader, signal.SIGKILL)

        def new_leader_publishes(s):
            return s.leader.leader_id not in ("", old_leader) and all(
                r.agent_connected and r.last_report_age_seconds < 1.0 for r in s.regions
            )

        after = await until_status(cluster, new_leader_publishes, 15, "a new leader's view")
        assert region(after, STANDBY_REGION).state == MAINTENANCE
        assert region(after, STANDBY_REGION).state_reason == "in maintenance: kernel upgrade"
        recorded = await events_after(cluster, since)
        elected = [e for e in recorded if e.kind == K.EVENT_KIND_LEADER_ELECTED]
        assert [(e.attributes["leader_id"], e.epoch) for e in elected] == [
            (after.leader.leader_id, after.leader.epoch)
        ]
        changed = [e for e in recorded if e.kind == K.EVENT_KIND_MAINTENANCE_CHANGED]
        assert [(e.region, e.attributes["enabled"], e.epoch) for e in changed] == [
            (STANDBY_REGION, "true", before.leader.epoch)
        ]
        assert any(
            e.kind == K.EVENT_KIND_REGION_STATE_CHANGED
            and e.region == STANDBY_REGION
            and e.attributes["to"] == "MAINTENANCE"
            for e in recorded
        )
        assert recorded[-1].sequence > elected[0].sequence > changed[0].sequence
    finally:
        off = await maintenance(cluster, STANDBY_REGION, False)
        await cluster.up()  # restarts the killed coordinator
    assert off.region.state != MAINTENANCE
    await until_status(cluster, all_healthy, 10, "every region HEALTHY again")

    async def every_replica_answers():
        return all([await status_from(a) for a in addresses(cluster)])

    await eventually(every_replica_answers, 10, "the restarted coordinator to serve")


async def status_from(address: str) -> admin_pb2.ClusterStatus | None:
    try:
        return await cluster_status([address], 1.0, tls=TLS)
    except NoCoordinator:
        return None


async def test_maintenance_of_the_primary_needs_drain_and_requests_are_checked(cluster: Stack):
    view = await status(cluster)
    try:
        with pytest.raises(Exception, match=r"us-east-1 holds the primary: with drain"):
            await maintenance(cluster, view.write_region, True)
    finally:
        await maintenance(cluster, view.write_region, False)  # had it been accepted
    assert region(await status(cluster), view.write_region).state == HEALTHY
    leader = view.leader.address
    bad = [
        (
            "SetMaintenance",
            admin_pb2.SetMaintenanceRequest(region="mars-1", enabled=True),
            "region: unknown region 'mars-1'",
        ),
        ("ListEvents", admin_pb2.ListEventsRequest(limit=1001), "limit: at most 1000"),
        ("ListEvents", admin_pb2.ListEventsRequest(region="mars-1"), "region: unknown region"),
    ]
    for method, request, message in bad:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(leader, method, request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith(message)


async def test_the_healthy_stack_is_consistent(cluster: Stack, capsys):
    view = await until_status(cluster, all_healthy, 10, "every region HEALTHY")
    since = await newest_sequence(cluster)
    follower = next(a for a in addresses(cluster) if a != view.leader.address)
    for fresh, address in ((False, follower), (True, follower), (True, view.leader.address)):
        request = admin_pb2.CheckConsistencyRequest(fresh=fresh)
        report = await call(address, "CheckConsistency", request)
        verdicts = {r.region: r.verdict for r in report.regions}
        assert report.consistent, report
        assert report.primary_region == view.write_region == "us-east-1"
        assert verdicts.pop("us-east-1") == K.CONSISTENCY_VERDICT_IN_SYNC
        assert set(verdicts.values()) <= {
            K.CONSISTENCY_VERDICT_IN_SYNC,
            K.CONSISTENCY_VERDICT_LAGGING,
        }, report
        assert len({r.system_identifier for r in report.regions}) == 1
        assert {r.timeline_id for r in report.regions} == {report.primary_timeline_id}
    checked = await eventually(
        lambda: events_after(cluster, since, kinds=[K.EVENT_KIND_CONSISTENCY_CHECKED]),
        3,
        "the checks to be recorded",
    )
    assert checked[0].attributes["consistent"] == "true"
    # The command line: a table, exit status 0.
    coordinators = ",".join(addresses(cluster))
    started = time.monotonic()
    code = await asyncio.to_thread(cli.main, ["check", "--coordinators", coordinators, *CLI_TLS])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.startswith("consistent: primary us-east-1 on timeline")
    assert "VERDICT" in printed and "IN_SYNC" in printed
    code = await asyncio.to_thread(
        cli.main,
        ["events", "--coordinators", coordinators, "--kind", "consistency_checked", *CLI_TLS],
    )
    printed = capsys.readouterr().out
    assert code == 0 and "consistency_checked" in printed.splitlines()[-1]
    assert time.monotonic() - started < 10

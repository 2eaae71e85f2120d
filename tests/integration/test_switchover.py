"""Planned switchover there and back, under writes, with zero loss (private stack)."""

from __future__ import annotations

import pytest

from latitude.admin_client import call_leader, cluster_status
from latitude.client import RoutingClient
from latitude.errors import LatitudeError
from latitude.stack.harness import running_stack
from latitude.stack.postgres import connect
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, common_pb2
from tests.integration.connections import TLS, Writer, eventually, query, running, streams_to

pytestmark = pytest.mark.stack

HEALTHY = common_pb2.REGION_STATE_HEALTHY


@pytest.fixture(scope="module")
def private_stack():
    with running_stack() as stack:
        yield stack


async def _switch(stack: Stack, target: str) -> admin_pb2.FailoverStatus:
    request = admin_pb2.SwitchoverRequest(target_region=target, wait=True)
    addresses = stack.coordinator_addresses(stack.state())
    return (await call_leader(addresses, "Switchover", request, 60, tls=TLS)).failover


async def _record_tables(routing: RoutingClient, seen: list[tuple[str, bool]]) -> None:
    version = 0
    while True:
        table = await routing.wait_for(lambda t, v=version: t.version > v, 60)
        version = table.version
        seen.append((table.write_region, table.failover_in_progress))


async def test_switchover_there_and_back_loses_nothing(private_stack: Stack):
    stack = private_stack
    state = stack.state()
    setup = await connect(stack.postgres_node(state, "us-east-1"), state.superuser_password)
    await setup.execute("CREATE TABLE switchover_probe (id int PRIMARY KEY)")
    await setup.close()
    writer = Writer(stack, "switchover_probe")
    # A routing client watching the table, as an application would.
    routing = RoutingClient(stack.coordinator_addresses(state), tls=TLS)
    await routing.start()
    seen: list[tuple[str, bool]] = []
    async with running(writer.run()), running(_record_tables(routing, seen)):
        for target, old in (("eu-west-1", "us-east-1"), ("us-east-1", "eu-west-1")):
            acked = len(writer.acked)
            await eventually(lambda a=acked: len(writer.acked) >= a + 50, 10, "writes to land")
            record = await _switch(stack, target)
            assert record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, record.error
            assert record.to_region == target and record.data_loss_bound_bytes == 0
            view = await cluster_status(stack.coordinator_addresses(state), 1.0, tls=TLS)
            assert view.write_region == target
            # The watching client hears of the new write region within moments.
            await routing.wait_for(lambda t, r=target: t.write_region == r, 2.0)
            writes = routing.resolve(location=(35.68, 139.69), intent="write")
            assert [t.region for t in writes.targets] == [target]
            # The old primary rejoins as a standby of the new one.
            await streams_to(stack, target, old, timeout=30)
        back = len(writer.acked)
        await eventually(lambda: len(writer.acked) >= back + 50, 10, "writes to land back")
    await routing.close()
    # While each switchover ran, the table held writes (no write region) rather than point
    # them at a fenced primary.
    assert ("", True) in seen, seen
    moves = [region for region, _ in seen if region]
    assert [r for i, r in enumerate(moves) if i == 0 or r != moves[i - 1]] == [
        "us-east-1",
        "eu-west-1",
        "us-east-1",
    ]
    conn = await connect(stack.postgres_node(state, "us-east-1"), state.superuser_password)
    try:
        stored = {r["id"] for r in await conn.fetch("SELECT id FROM switchover_probe")}
    finally:
        await conn.close()
    assert len(writer.acked) > 100
    missing = [a for a in writer.acked if a.id not in stored]
    assert missing == [], f"{len(missing)} acknowledged writes lost"
    assert writer.longest_gap < 5.0, f"writes were unavailable for {writer.longest_gap:.1f} s"


async def test_draining_the_primary_for_maintenance_switches_over_first(private_stack: Stack):
    stack = private_stack
    addresses = stack.coordinator_addresses(stack.state())
    before = await cluster_status(addresses, 1.0, tls=TLS)
    old = before.write_region
    request = admin_pb2.SetMaintenanceRequest(
        region=old, enabled=True, drain=True, reason="kernel upgrade"
    )
    response = await call_leader(addresses, "SetMaintenance", request, 60, tls=TLS)
    # The answer comes once the switchover is done, and only then is the region flagged.
    switchover = response.switchover
    assert switchover.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, switchover.error
    assert switchover.from_region == old and switchover.to_region not in ("", old)
    assert switchover.data_loss_bound_bytes == 0
    assert response.region.state == common_pb2.REGION_STATE_MAINTENANCE
    view = await cluster_status(addresses, 1.0, tls=TLS)
    assert view.write_region == switchover.to_region
    await streams_to(stack, switchover.to_region, old, timeout=30)
    request = admin_pb2.SetMaintenanceRequest(region=old, enabled=False)
    await call_leader(addresses, "SetMaintenance", request, 10, tls=TLS)

    async def healthy_again() -> bool:
        view = await cluster_status(addresses, 1.0, tls=TLS)
        return next(r for r in view.regions if r.region == old).state == HEALTHY

    await eventually(healthy_again, 10, f"{old} HEALTHY out of maintenance")


async def test_a_switchover_refused_by_its_checks_leaves_the_primary_writable(
    private_stack: Stack,
):
    stack = private_stack
    addresses = stack.coordinator_addresses(stack.state())
    primary = (await cluster_status(addresses, 1.0, tls=TLS)).write_region
    target = next(r for r in ("eu-west-1", "us-east-1", "ap-southeast-1") if r != primary)
    on = admin_pb2.SetMaintenanceRequest(region=target, enabled=True, reason="kernel upgrade")
    await call_leader(addresses, "SetMaintenance", on, 10, tls=TLS)
    try:
        request = admin_pb2.SwitchoverRequest(target_region=target, wait=True)
        with pytest.raises(LatitudeError, match=f"{target} cannot be promoted: in maintenance"):
            await call_leader(addresses, "Switchover", request, 30, tls=TLS)
        # Refused before anything was fenced: the primary takes writes at once, and is not
        # (and was not) fenced.
        assert await query(stack, primary, "SELECT txid_current() > 0")
        view = await cluster_status(addresses, 1.0, tls=TLS)
        region = next(r for r in view.regions if r.region == primary)
        assert view.write_region == primary and not region.database.fenced
        assert not view.HasField("failover")
    finally:
        off = admin_pb2.SetMaintenanceRequest(region=target, enabled=False)
        await call_leader(addresses, "SetMaintenance", off, 10, tls=TLS)

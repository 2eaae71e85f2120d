"""The data-level check against a forced divergence: a standby taken out of replication and
written to is found, named to the row; after REJOIN the check reports 100 %.

The module runs its own stack without a control plane (a leader would rejoin the diverged
region on its own before the check could see it), and serves each region's VerifyService in
process, as its agent would; the coordinator's Verifier runs against them. The tests run in
file order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from agent.verify_service import VerifyServicer
from coordinator.verify.runner import Verifier
from coordinator.verify.settings import VerifySettings
from latitude.serving import Server
from latitude.stack.harness import running_stack
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2, agent_pb2, agent_pb2_grpc
from tests.integration.actuators import actuator_for, command, target_for
from tests.integration.connections import eventually, query, session
from tests.integration.test_rejoin import adopt_postmasters, rejoin, streams_to

pytestmark = pytest.mark.stack

US, EU, AP = "us-east-1", "eu-west-1", "ap-southeast-1"
SETTINGS = VerifySettings(tables=(("public", "ledger"),), rows_per_range=500, replay_wait=15)


@pytest.fixture(scope="module")
def cluster() -> Stack:
    with running_stack(control_plane=False) as stack:
        try:
            yield stack
        finally:
            adopt_postmasters(stack)


@pytest_asyncio.fixture
async def agents(cluster: Stack) -> AsyncIterator[dict[str, str]]:
    """Each region's VerifyService, served as its agent serves it: region -> address."""
    servers, servicers, addresses = [], [], {}
    for region in (US, EU, AP):
        servicer = VerifyServicer(target_for(cluster, region), region)
        server = Server("127.0.0.1:0")
        server.add(
            agent_pb2_grpc.add_VerifyServiceServicer_to_server, servicer,
            agent_pb2.DESCRIPTOR.services_by_name["VerifyService"].full_name,
        )  # fmt: skip
        await server.start()
        servers.append(server)
        servicers.append(servicer)
        addresses[region] = f"127.0.0.1:{server.port}"
    try:
        yield addresses
    finally:
        for server, servicer in zip(servers, servicers, strict=True):
            await server.stop(0.5)
            await servicer.close()


async def verify(agents: dict[str, str]) -> admin_pb2.VerifyReport:
    return await Verifier(US, agents, SETTINGS).run()


async def test_replicated_data_agrees_everywhere(cluster: Stack, agents):
    async with session(cluster, US) as conn:
        await conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, amount numeric, note text)")
        await conn.execute(
            "INSERT INTO ledger SELECT g, g * 1.5, 'entry ' || g FROM generate_series(1, 4000) g"
        )
    report = await verify(agents)
    assert report.consistent and report.agreeing_fraction == 1.0, report
    # Cut every 500 rows, and the open end past the last key, where rows only a standby has
    # would fall.
    assert report.rows == 4000 and report.ranges == 9
    (table,) = report.tables
    assert table.key_columns == ["id"] and table.ranges_agreeing == 9 and not table.mismatches


async def test_a_divergent_standby_is_found_to_the_row(cluster: Stack, agents):
    # Taken out of replication: promoted on its own, then written to.
    async with actuator_for(cluster, AP) as actuator:
        promoted = await actuator.execute(command(agent_pb2.COMMAND_KIND_PROMOTE, within=20))
        assert promoted.ok, promoted.error
    async with session(cluster, AP) as conn:
        await conn.execute("UPDATE ledger SET amount = 0 WHERE id = 1234")
        await conn.execute("DELETE FROM ledger WHERE id = 3001")
        await conn.execute("INSERT INTO ledger VALUES (4001, 1, 'only in ap-southeast-1')")

    report = await verify(agents)

    assert not report.consistent
    assert report.notes == [
        f"{AP} is not a standby (not in recovery, timeline 2): compared as it stands, without "
        "waiting for it to replay"
    ]
    (table,) = report.tables
    assert (table.ranges, table.ranges_agreeing) == (9, 6), table
    assert report.agreeing_fraction == 6 / 9
    found = {
        (m.range, row.key, region, how)
        for m in table.mismatches
        for row in m.rows
        for region, how in row.regions.items()
    }
    assert found == {
        ("id in (1000, 1500]", "1234", AP, "differs"),
        ("id in (3000, 3500]", "3001", AP, "missing"),
        ("id > 4000", "4001", AP, "extra"),
    }, table.mismatches
    assert all(m.regions == [AP] and not m.unsettled for m in table.mismatches)


async def test_after_rejoin_the_check_reports_full_agreement(cluster: Stack, agents):
    async with actuator_for(cluster, AP) as actuator:
        result = await actuator.execute(rejoin(cluster, AP, US))
        assert result.ok, result.error
    await streams_to(cluster, US, AP)
    await eventually(lambda: query(cluster, AP, "SELECT pg_is_in_recovery()"), 15, "AP in recovery")

    report = await verify(agents)

    assert report.consistent and report.agreeing_fraction == 1.0, report
    assert not report.notes
    assert report.rows == 4000

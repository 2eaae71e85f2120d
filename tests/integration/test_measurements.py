"""What the stack's agents measure besides their databases, as the cluster status shows it:
capacity utilisation from each region's utilization file, and RTT to the other regions."""

from __future__ import annotations

import pytest

from latitude.admin_client import NoCoordinator, cluster_status
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2
from tests.integration.connections import TLS, eventually

pytestmark = pytest.mark.stack


@pytest.fixture
async def cluster(stack: Stack):
    """The stack, running every component before the test."""
    await stack.up()
    return stack


async def status_where(stack: Stack, predicate) -> admin_pb2.ClusterStatus | None:
    try:
        view = await cluster_status(stack.coordinator_addresses(stack.state()), 1.0, tls=TLS)
    except NoCoordinator:
        return None
    return view if predicate(view) else None


def utilization(view: admin_pb2.ClusterStatus) -> dict[str, float]:
    return {r.region: r.capacity_utilization for r in view.regions}


async def test_a_figure_written_to_a_region_file_reaches_the_status(cluster: Stack):
    region = "eu-west-1"
    others = {r.name: 0.0 for r in cluster.topology.regions if r.name != region}
    path = cluster.utilization_file(region)
    assert path.read_text() == "0\n"
    try:
        path.write_text("0.75\n")
        await eventually(
            lambda: status_where(cluster, lambda v: utilization(v) == {region: 0.75, **others}),
            5.0,
            f"{region} to report capacity utilisation 0.75",
        )
    finally:
        path.write_text("0\n")
    await eventually(
        lambda: status_where(cluster, lambda v: utilization(v) == {region: 0.0, **others}),
        5.0,
        f"{region} to report capacity utilisation 0 again",
    )


async def test_every_region_reports_rtt_to_the_other_two(cluster: Stack):
    names = {r.name for r in cluster.topology.regions}

    def measured(view: admin_pb2.ClusterStatus) -> bool:
        return {r.region for r in view.regions} == names and all(
            {p.region for p in r.peers} == names - {r.region}
            and all(p.reachable and 0 < p.rtt_seconds < 1 for p in r.peers)
            for r in view.regions
        )

    view = await eventually(
        lambda: status_where(cluster, measured), 10.0, "every region to reach the other two"
    )
    for region in view.regions:
        assert len(region.peers) == len(names) - 1, region

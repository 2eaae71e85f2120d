"""The stack's network for real: a cut blocks TCP between exactly the two namespaces cut, in
both directions, established connections included; healing restores it; down removes it all."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from latitude.stack.harness import running_stack
from latitude.stack.network import Network
from latitude.stack.postgres import connect
from latitude.stack.stack import Stack


def _netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


async def _connects(network: Network, party: str, address: str, port: int) -> bool:
    """Whether a TCP connection from ``party``'s namespace to address:port opens within 1 s."""
    netns = network.layout.party(party).netns
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns, "timeout", "1", "bash", "-c",
        f"exec 3<>/dev/tcp/{address}/{port}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await proc.wait() == 0


@pytest.fixture(scope="module")
def bare_netns_stack():
    """etcd and PostgreSQL only: enough servers to connect to, quick to start."""
    with running_stack(netns=True, control_plane=False) as stack:
        yield stack


async def test_a_cut_blocks_exactly_one_link_both_ways_and_healing_restores_it(
    bare_netns_stack: Stack,
):
    stack = bare_netns_stack
    state = stack.state()
    network = stack.network(state)
    assert network is not None and network.exists()
    etcd_port = state.ports["etcd-1.client"]
    control = stack.address_of(state, "etcd-1")
    east = stack.postgres_node(state, "us-east-1")
    west = stack.postgres_node(state, "eu-west-1")
    assert await _connects(network, "us-east-1", control, etcd_port)
    assert await _connects(network, "control", east.host, east.port)

    await network.cut("us-east-1", "control")
    began = time.monotonic()
    assert not await _connects(network, "us-east-1", control, etcd_port)
    # Packets vanish: the connection attempt hangs until its timeout, no refusal comes back.
    assert time.monotonic() - began >= 0.9
    assert not await _connects(network, "control", east.host, east.port)
    # Every other link still works, the observer's included.
    assert await _connects(network, "eu-west-1", control, etcd_port)
    assert await _connects(network, "us-east-1", west.host, west.port)
    assert await _connects(network, "eu-west-1", east.host, east.port)

    await network.heal("us-east-1", "control")
    assert await _connects(network, "us-east-1", control, etcd_port)
    assert await _connects(network, "control", east.host, east.port)


async def test_an_established_connection_stops_flowing_when_cut(bare_netns_stack: Stack):
    stack = bare_netns_stack
    state = stack.state()
    network = stack.network(state)
    east = stack.postgres_node(state, "us-east-1")
    # A streaming standby holds an established connection to the primary: it must stop
    # receiving, not carry on over the connection it already had.
    west = network.layout.party("eu-west-1").address
    conn_count = (
        "SELECT count(*) FROM pg_stat_replication WHERE client_addr = $1 AND state = 'streaming'"
    )
    conn = await connect(east, state.superuser_password)
    try:
        assert await conn.fetchval(conn_count, west) == 1
        await network.isolate("eu-west-1")
        await conn.execute("CREATE TABLE cut_probe (v int); INSERT INTO cut_probe VALUES (1)")
        await asyncio.sleep(1.5)
        behind = await conn.fetchval(
            "SELECT pg_current_wal_lsn() > replay_lsn FROM pg_stat_replication "
            "WHERE client_addr = $1",
            west,
        )
        assert behind, "WAL still flows over the established connection"
        await network.heal_all()
        deadline = time.monotonic() + 20
        while True:
            row = await conn.fetchrow(
                "SELECT pg_current_wal_lsn() <= replay_lsn AS caught_up FROM pg_stat_replication "
                "WHERE client_addr = $1 AND state = 'streaming'",
                west,
            )
            if row is not None and row["caught_up"]:
                break
            assert time.monotonic() < deadline, "the standby did not catch up after healing"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


def test_down_removes_the_namespaces_and_the_bridge():
    with running_stack(netns=True, control_plane=False) as stack:
        network = stack.network()
        names = {p.netns for p in network.layout.parties}
        assert names <= _netns_names()
        # A reboot loses the processes, the namespaces and the bridge: up makes them again.
        network.destroy()
        assert not network.exists()
        asyncio.run(stack.up())
        assert stack.network().exists()
    assert not names & _netns_names()
    assert subprocess.run(["ip", "link", "show", network.layout.bridge],
                          capture_output=True).returncode != 0  # fmt: skip

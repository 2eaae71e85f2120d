"""What the fuzz tests call: the shared session stack's processes (its leader, a follower, the
agents), a private coordinator beside it for the calls that would change the shared cluster,
and a table in the stack's database so that the agents' VerifyService gets past "no table"."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from latitude.admin_client import cluster_status
from latitude.netaddr import join_host_port
from latitude.stack import postgres
from latitude.stack.harness import running_stack, tls_requested, traversable_tempdir
from latitude.stack.stack import Stack
from tests.fuzz.targets import PrivateCoordinator, Target, leader_of

# A table with a two-column key (bigint, text): key values of the wrong type or count reach
# the agents' SQL.
FUZZ_TABLE = ("public", "fuzz_keys")
_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS public.fuzz_keys (id bigint, name text, v text, PRIMARY KEY (id, name));
INSERT INTO public.fuzz_keys SELECT g, 'n' || g, repeat('v', g % 7) FROM generate_series(1, 50) g
ON CONFLICT DO NOTHING;
"""


@pytest.fixture(scope="session")
def fuzz_stack(request) -> Stack:
    """The suite's session stack when it runs in plaintext. In TLS mode
    (LATITUDE_TEST_TLS=1) a plaintext stack of the fuzz suite's own: its clients and its
    private coordinator present no certificates yet, so every call would be refused at the
    door (UNAUTHENTICATED) and nothing behind it fuzzed."""
    if not tls_requested():
        yield request.getfixturevalue("stack")
        return
    with running_stack(tls=False) as running:
        yield running


@dataclass(frozen=True, slots=True)
class SharedTargets:
    regions: tuple[str, ...]
    write_region: str
    leader: Target
    follower: Target
    agents: dict[str, Target]  # by region

    @property
    def primary_agent(self) -> Target:
        return self.agents[self.write_region]

    @property
    def standby_agent(self) -> Target:
        return next(t for r, t in sorted(self.agents.items()) if r != self.write_region)


def shared_targets(stack: Stack, timeout: float = 60.0) -> SharedTargets:
    """The stack's processes once a leader sees every region."""
    asyncio.run(stack.up())
    state = stack.state()
    addresses = stack.coordinator_addresses(state)
    by_address = dict(zip(addresses, stack.topology.coordinators, strict=True))
    regions = tuple(r.name for r in stack.topology.regions)
    deadline = time.monotonic() + timeout
    while True:
        view = asyncio.run(cluster_status(addresses, 2.0))
        if view.leader.address in by_address and view.write_region and len(view.regions) == 3:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"no leader seeing every region within {timeout} s: {view}")
        time.sleep(0.1)

    def target(name: str, address: str) -> Target:
        return Target(name, address, state.processes[name].pid)

    leader = by_address[view.leader.address]
    follower = next(n for a, n in by_address.items() if n != leader)
    agents = {
        r: target(
            f"agent-{r}",
            join_host_port(stack.address_of(state, f"agent-{r}"), state.ports[f"agent-{r}"]),
        )
        for r in regions
    }
    return SharedTargets(
        regions=regions,
        write_region=view.write_region,
        leader=target(leader, view.leader.address),
        follower=target(follower, next(a for a, n in by_address.items() if n == follower)),
        agents=agents,
    )


@pytest.fixture(scope="session")
def shared(fuzz_stack: Stack) -> SharedTargets:
    targets = shared_targets(fuzz_stack)
    asyncio.run(_create_table(fuzz_stack, targets.write_region))
    return targets


async def _create_table(stack: Stack, region: str) -> None:
    state = stack.state()
    conn = await postgres.connect(stack.postgres_node(state, region), state.superuser_password)
    try:
        await conn.execute(_CREATE_TABLE)
    finally:
        await conn.close()


@pytest.fixture
def current(fuzz_stack: Stack, shared: SharedTargets) -> SharedTargets:
    """The shared targets, looked up again if an earlier test moved the leader or restarted a
    process (the suite shares its stack)."""
    if all(t.alive() for t in (shared.leader, shared.follower, *shared.agents.values())):
        leader = leader_of(shared.leader.address)
        if leader is not None and leader.address == shared.leader.address:
            return shared
    return shared_targets(fuzz_stack)


@pytest.fixture(scope="session")
def private(fuzz_stack: Stack) -> Target:
    """A coordinator of our own, leader of a control plane with no agents (see targets)."""
    stack = fuzz_stack
    state = stack.state()
    logs = traversable_tempdir("latitude-fuzz-")
    coordinator = PrivateCoordinator(
        state.host,
        [m.endpoint for m in stack.etcd_members(state)],
        [r.name for r in stack.topology.regions],
        logs / "coordinator.log",
    )
    try:
        yield coordinator.start()
    finally:
        coordinator.stop()
        keep = os.environ.get("LATITUDE_KEEP_LOGS")  # as the harness does, for a post-mortem
        if keep:
            shutil.copytree(logs, Path(keep) / logs.name, dirs_exist_ok=True)
        shutil.rmtree(logs, ignore_errors=True)

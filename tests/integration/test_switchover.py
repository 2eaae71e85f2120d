"""Planned switchover there and back, under writes, with zero loss (private stack)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import pytest

from latitude.admin_client import NoCoordinator, call_leader, cluster_status
from latitude.stack.harness import running_stack
from latitude.stack.postgres import connect
from latitude.stack.stack import Stack
from latitude.v1 import admin_pb2
from tests.integration.connections import CONNECTION_TROUBLE, streams_to

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def private_stack():
    with running_stack() as stack:
        yield stack


class Writer:
    """Inserts ids one at a time into whichever region is the write region; remembers every
    acknowledged id and the longest gap between acknowledgements."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self.acked: list[int] = []
        self.longest_gap = 0.0
        self._conn: asyncpg.Connection | None = None

    async def run(self) -> None:
        state = self._stack.state()
        addresses = self._stack.coordinator_addresses(state)
        try:
            await self._loop(state, addresses)
        finally:
            if self._conn is not None:
                self._conn.terminate()

    async def _loop(self, state, addresses) -> None:
        next_id, last_ack = 1, time.monotonic()
        while True:
            conn = self._conn
            try:
                if conn is None:
                    region = (await cluster_status(addresses, 1.0)).write_region
                    node = self._stack.postgres_node(state, region)
                    conn = self._conn = await connect(node, state.superuser_password, timeout=0.5)
                await conn.execute("INSERT INTO switchover_probe VALUES ($1)", next_id, timeout=1)
                self.acked.append(next_id)
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last_ack)
                last_ack = now
            except (*CONNECTION_TROUBLE, NoCoordinator):
                if conn is not None:
                    conn.terminate()
                self._conn = None
            next_id += 1
            await asyncio.sleep(0.01)


async def _switch(stack: Stack, target: str) -> admin_pb2.FailoverStatus:
    request = admin_pb2.SwitchoverRequest(target_region=target, wait=True)
    addresses = stack.coordinator_addresses(stack.state())
    return (await call_leader(addresses, "Switchover", request, 60)).failover


async def test_switchover_there_and_back_loses_nothing(private_stack: Stack):
    stack = private_stack
    state = stack.state()
    setup = await connect(stack.postgres_node(state, "us-east-1"), state.superuser_password)
    await setup.execute("CREATE TABLE switchover_probe (id int PRIMARY KEY)")
    await setup.close()
    writer = Writer(stack)
    writing = asyncio.create_task(writer.run())
    try:
        for target, old in (("eu-west-1", "us-east-1"), ("us-east-1", "eu-west-1")):
            await asyncio.sleep(1.0)
            record = await _switch(stack, target)
            assert record.phase == admin_pb2.FAILOVER_PHASE_COMPLETED, record.error
            assert record.to_region == target and record.data_loss_bound_bytes == 0
            view = await cluster_status(stack.coordinator_addresses(state), 1.0)
            assert view.write_region == target
            # The old primary rejoins as a standby of the new one.
            await streams_to(stack, target, old, timeout=30)
            await asyncio.sleep(1.0)
    finally:
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
    conn = await connect(stack.postgres_node(state, "us-east-1"), state.superuser_password)
    try:
        stored = {r["id"] for r in await conn.fetch("SELECT id FROM switchover_probe")}
    finally:
        await conn.close()
    assert len(writer.acked) > 100
    missing = [i for i in writer.acked if i not in stored]
    assert missing == [], f"{len(missing)} acknowledged writes lost"
    assert writer.longest_gap < 5.0, f"writes were unavailable for {writer.longest_gap:.1f} s"

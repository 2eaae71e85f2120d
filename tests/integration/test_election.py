"""Leader election on the real etcd cluster of the session's stack."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from coordinator.election import Election
from coordinator.etcd import Etcd
from coordinator.store import Candidate, EtcdStore
from latitude.stack.harness import suite_etcd_tls
from latitude.stack.stack import Stack

pytestmark = pytest.mark.stack


@pytest.fixture
async def stores(stack: Stack):
    """Independent clients (one per would-be coordinator) on a prefix of the test's own."""
    endpoints = [m.endpoint for m in stack.etcd_members(stack.state())]
    prefix = f"/test-{uuid.uuid4().hex[:8]}"
    made = []

    def make() -> EtcdStore:
        # Outside the coordinators' prefix: etcd's root user, when etcd runs with auth.
        store = EtcdStore(Etcd(endpoints, tls=suite_etcd_tls("root")), prefix)
        made.append(store)
        return store

    yield make
    if made:
        await made[0]._etcd.delete_prefix(prefix.encode())
    for store in made:
        await store.close()


async def run(election: Election) -> asyncio.Task:
    return asyncio.create_task(election.run())


async def stop(*tasks: asyncio.Task) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_for(condition, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_exactly_one_leader_and_followers_know_it(stores):
    elections = [Election(stores(), Candidate(f"c{i}", f"127.0.0.1:{7000 + i}")) for i in range(3)]
    tasks = [await run(e) for e in elections]
    try:
        await wait_for(lambda: any(e.is_leader for e in elections), 5, "a leader")
        leaders = [e for e in elections if e.is_leader]
        assert len(leaders) == 1
        leader = leaders[0]
        await wait_for(
            lambda: all(e.leader == leader.leader for e in elections), 5, "followers to see it"
        )
        assert leader.leader.epoch == leader.leadership.epoch > 0
    finally:
        await stop(*tasks)


async def test_resigning_hands_over_at_once_with_a_higher_epoch(stores):
    first = Election(stores(), Candidate("first", "a:1"))
    second = Election(stores(), Candidate("second", "b:1"))
    t1 = await run(first)
    await first.elected.wait()
    t2 = await run(second)
    try:
        old_epoch = first.leadership.epoch
        await wait_for(lambda: second.leader is not None, 5, "the follower to see the leader")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await first.resign()
        await stop(t1)
        await asyncio.wait_for(second.elected.wait(), 2)
        # Resigning revokes the lease: no wait for the TTL.
        assert loop.time() - started < 1.0
        assert second.leadership.epoch > old_epoch
    finally:
        await stop(t1, t2)


async def test_a_deposed_leader_cannot_write(stores):
    store = stores()
    first = Election(store, Candidate("first", "a:1"))
    task = await run(first)
    try:
        await first.elected.wait()
        stale = first.leadership
        assert await store.write(stale, {"regions/x": b"1"})
        # Someone removes the leader key (an operator, or the lease expiring during a pause).
        await store._etcd.delete_prefix(store._leader_key)
        # The leader notices at once; it may well win the next term, with a new epoch.
        await wait_for(lambda: first.leadership is not stale, 2, "the leader to step down")
        assert await store.write(stale, {"regions/x": b"2"}) is False
        assert await store.read("regions/x") == b"1"
    finally:
        await stop(task)


async def test_a_lost_lease_makes_the_leader_step_down(stores):
    store = stores()
    election = Election(store, Candidate("solo", "a:1"))
    task = await run(election)
    try:
        await election.elected.wait()
        lost = election.leadership
        await store._etcd.revoke(lost.lease)
        await wait_for(lambda: election.leadership is not lost, 2, "the leader to step down")
        # It campaigns again and wins a new term.
        await wait_for(lambda: election.is_leader, 5, "re-election")
        assert election.leadership.epoch > lost.epoch
    finally:
        await stop(task)


async def test_etcd_unreachable_means_no_leader_not_a_crash():
    # A port nothing listens on: the election keeps retrying and reports no leader.
    election = Election(EtcdStore(Etcd(["127.0.0.1:9"], timeout=0.2)), Candidate("x", "a:1"))
    task = await run(election)
    try:
        await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.shield(asyncio.sleep(1.0)), 2)
        assert not task.done(), "the election loop must survive an unreachable etcd"
        assert election.leader is None and not election.is_leader
    finally:
        await stop(task)
        await election._store.close()

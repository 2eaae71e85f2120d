from __future__ import annotations

import asyncio

import pytest

from coordinator.coalesce import Coalesced


async def test_calls_while_one_runs_share_its_result():
    coalesced: Coalesced[int] = Coalesced()
    release = asyncio.Event()
    runs = 0

    async def check() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return runs

    callers = [asyncio.create_task(coalesced.run(check)) for _ in range(100)]
    await asyncio.sleep(0)
    assert coalesced.running and coalesced.waiting == 100
    release.set()
    assert await asyncio.gather(*callers) == [1] * 100
    assert runs == 1 and coalesced.started == 1 and not coalesced.running
    assert coalesced.waiting == 0
    assert await coalesced.run(check) == 2  # the next call after it ended starts another


async def test_a_caller_going_away_does_not_cancel_the_run_for_the_others():
    coalesced: Coalesced[str] = Coalesced()
    release = asyncio.Event()

    async def check() -> str:
        await release.wait()
        return "done"

    first = asyncio.create_task(coalesced.run(check))
    second = asyncio.create_task(coalesced.run(check))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == "done"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failure_reaches_every_caller():
    coalesced: Coalesced[None] = Coalesced()

    async def check() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("etcd unreachable")

    results = await asyncio.gather(
        coalesced.run(check), coalesced.run(check), return_exceptions=True
    )
    assert [str(r) for r in results] == ["etcd unreachable"] * 2

"""A coordinator whose core task fails ends, rather than serve on as a husk."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.config import CoordinatorConfig
from coordinator.node import CoordinatorNode


class NoStore:
    """The node's store, never reached: the tasks that would use it are replaced."""


async def test_a_crashed_election_ends_the_node_with_its_error():
    node = CoordinatorNode(CoordinatorConfig(id="c1"), NoStore())

    async def crash() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("election bug")

    async def follow_forever() -> None:
        await asyncio.Event().wait()

    node.election.run = crash
    node.routing.follow = follow_forever
    with pytest.raises(RuntimeError, match="election ended unexpectedly") as caught:
        async with asyncio.timeout(2.0):
            await node.run()
    assert isinstance(caught.value.__cause__, ValueError)

"""FOLLOW and REJOIN stream only from another configured region's database: any other
upstream is refused before the actuator touches the database (no server runs here: a command
that got as far as the database would fail with a connection error instead)."""

from __future__ import annotations

import pytest

from agent.actuator import Actuator
from agent.peers import Peer
from agent.postgres_probe import DatabaseTarget
from latitude.v1 import agent_pb2, common_pb2

PEERS = [Peer("us-east-1", "10.0.1.5:5432"), Peer("ap-southeast-1", "10.0.3.5:5432")]


class Probe:
    last = None

    async def observe(self) -> common_pb2.DatabaseStatus:
        return common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_STANDBY)


def actuator() -> Actuator:
    # Nothing listens on port 1: a command that reaches the database fails at once.
    target = DatabaseTarget("127.0.0.1", 1, "latitude", None)
    return Actuator(target, Probe(), region="eu-west-1", upstreams=PEERS)


def command(kind, host: str, region="us-east-1") -> agent_pb2.Command:
    follow = agent_pb2.FollowArgs(primary_region=region, primary_host=host, primary_port=5432)
    if kind == agent_pb2.COMMAND_KIND_REJOIN:
        return agent_pb2.Command(
            command_id="c", kind=kind, rejoin=agent_pb2.RejoinArgs(follow=follow)
        )
    return agent_pb2.Command(command_id="c", kind=kind, follow=follow)


KINDS = [agent_pb2.COMMAND_KIND_FOLLOW, agent_pb2.COMMAND_KIND_REJOIN]


@pytest.mark.parametrize("kind", KINDS)
async def test_an_upstream_that_is_no_configured_region_is_refused(kind):
    result = await actuator().execute(command(kind, "10.6.6.6"))
    assert not result.ok
    assert result.error == (
        "refused: upstream 10.6.6.6:5432 is not a configured region's database (the agent's peers)"
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_a_peer_named_as_another_region_is_refused(kind):
    result = await actuator().execute(command(kind, "10.0.3.5", region="us-east-1"))
    assert result.error == (
        "refused: upstream 10.0.3.5:5432 is ap-southeast-1's database in this agent's peers, "
        "not us-east-1's"
    )


async def test_a_configured_upstream_goes_on_to_the_database():
    result = await actuator().execute(command(agent_pb2.COMMAND_KIND_FOLLOW, "10.0.1.5"))
    assert not result.ok and "refused" not in result.error

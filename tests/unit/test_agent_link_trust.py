"""The link believes only what agent.trust allows: a refused Welcome leaves the leader before
in place, acks and commands carry their stream's epoch, redirects go only to configured
coordinators."""

from __future__ import annotations

import asyncio

import pytest

from agent.link import Backoff, CoordinatorLink, Redirect
from latitude.v1 import agent_pb2

COORDINATORS = ("10.0.0.1:50051", "10.0.0.2:50051")


def link(commands=None) -> CoordinatorLink:
    return CoordinatorLink(
        COORDINATORS,
        lambda epoch: agent_pb2.Hello(),
        on_command=(commands if commands is not None else []).append,
        backoff=Backoff(initial=0.001, cap=0.001),
    )


def welcome(epoch: int, **fields) -> agent_pb2.CoordinatorMessage:
    message = agent_pb2.CoordinatorMessage(welcome=agent_pb2.Welcome(epoch=epoch, **fields))
    message.welcome.report_interval.FromMilliseconds(500)
    message.welcome.fence_after.FromSeconds(4)
    return message


def test_an_out_of_range_welcome_keeps_the_leader_before():
    agent = link()
    agent._greeted(welcome(7, leader_id="c1"), COORDINATORS[0])
    before = agent.welcome
    forged = welcome(8, leader_id="c2")
    forged.welcome.fence_after.FromSeconds(86_400)  # never fence: two writable primaries
    with pytest.raises(Redirect) as redirect:
        agent._greeted(forged, COORDINATORS[1])
    assert redirect.value.address == ""  # another configured coordinator next
    assert agent.welcome is before and agent.highest_epoch == 7 and agent.leader_id == "c1"


def test_a_welcome_with_an_absurd_epoch_leaves_the_epoch_alone():
    agent = link()
    agent._greeted(welcome(7), COORDINATORS[0])
    with pytest.raises(Redirect):
        agent._greeted(welcome(2**63), COORDINATORS[1])
    assert agent.highest_epoch == 7
    agent._greeted(welcome(9), COORDINATORS[1])  # the real next leader is still believed
    assert agent.highest_epoch == 9


def test_an_ack_with_another_epoch_than_its_streams_is_not_believed():
    agent = link()
    agent._greeted(welcome(7), COORDINATORS[0])
    agent._sent_at[1] = 100.0
    agent._acked(agent_pb2.ReportAck(sequence=1, epoch=2**63))
    assert agent.highest_epoch == 7 and agent.last_ack_sent_at is None
    agent._acked(agent_pb2.ReportAck(sequence=1, epoch=7))
    assert agent.last_ack_sent_at == 100.0


def test_a_command_above_its_leaders_epoch_is_answered_refused_and_never_carried_out():
    commands = []
    agent = link(commands)
    agent._greeted(welcome(7), COORDINATORS[0])
    agent._command(agent_pb2.Command(command_id="c-1", epoch=8))
    assert commands == []
    [result] = agent._results
    assert result.command_id == "c-1" and not result.ok and result.agent_epoch == 7
    assert result.error == (
        "refused: the command's epoch 8 is higher than epoch 7 of the leader that sent it"
    )
    agent._command(agent_pb2.Command(command_id="c-2", epoch=7))
    assert [c.command_id for c in commands] == ["c-2"]


async def test_a_redirect_to_an_unconfigured_coordinator_is_not_followed():
    agent = link()
    tried = []

    async def session(address: str) -> None:
        tried.append(address)
        if len(tried) == 1:
            raise Redirect("10.6.6.6:50051")
        if len(tried) == 2:
            raise Redirect(COORDINATORS[0])  # configured: followed at once
        raise asyncio.CancelledError

    agent._session = session
    with pytest.raises(asyncio.CancelledError):
        await agent.run()
    assert tried == [COORDINATORS[0], COORDINATORS[1], COORDINATORS[0]]

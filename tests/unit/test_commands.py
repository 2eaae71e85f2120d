from __future__ import annotations

import asyncio

import pytest

from coordinator.commands import CommandDispatcher, CommandFailed
from coordinator.sessions import AgentSession
from latitude.v1 import agent_pb2


async def test_a_command_carries_epoch_and_deadline_and_returns_its_result():
    dispatcher = CommandDispatcher()
    session = AgentSession(region="eu-west-1")

    async def agent() -> None:
        sent = (await session.outbox.get()).command
        assert sent.epoch == 7 and sent.reason == "test" and sent.HasField("deadline")
        dispatcher.resolve(agent_pb2.CommandResult(command_id="other", ok=False))  # ignored
        dispatcher.resolve(agent_pb2.CommandResult(command_id=sent.command_id, ok=True))

    answering = asyncio.create_task(agent())
    command = agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_FENCE)
    result = await dispatcher.send(session, command, epoch=7, timeout=1.0, reason="test")
    await answering
    assert result.ok and result.command_id == command.command_id


async def test_no_agent_or_no_answer_is_a_command_failure():
    dispatcher = CommandDispatcher()
    command = agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_PROMOTE)
    with pytest.raises(CommandFailed, match="COMMAND_KIND_PROMOTE: no agent connected"):
        await dispatcher.send(None, command, epoch=1, timeout=0.1)
    with pytest.raises(CommandFailed, match="to eu-west-1: no answer within 0.1 s"):
        await dispatcher.send(AgentSession(region="eu-west-1"), command, epoch=1, timeout=0.1)

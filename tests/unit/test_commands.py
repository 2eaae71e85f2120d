from __future__ import annotations

import asyncio

import grpc
import pytest

from coordinator.commands import CommandDispatcher, CommandFailed
from coordinator.sessions import OUTBOX, AgentSession
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


async def test_a_command_on_a_stream_that_ends_fails_at_once_not_at_its_timeout():
    """A REJOIN waits a minute for its answer: if its stream ends meanwhile (the agent died,
    or a new stream took the region over), nothing can answer, and the caller is told now."""
    dispatcher = CommandDispatcher()
    session = AgentSession(region="us-east-1")

    async def stream_ends() -> None:
        await session.outbox.get()  # the command went out
        session.close(error=(grpc.StatusCode.ABORTED, "another stream took the region over"))

    ending = asyncio.create_task(stream_ends())
    command = agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_REJOIN)
    async with asyncio.timeout(5.0):
        with pytest.raises(CommandFailed, match="to us-east-1: its stream ended before an answer"):
            await dispatcher.send(session, command, epoch=1, timeout=60.0)
    await ending


async def test_no_command_is_queued_for_an_agent_that_does_not_read():
    dispatcher = CommandDispatcher()
    session = AgentSession(region="eu-west-1")
    for _ in range(OUTBOX // 2):
        session.send(agent_pb2.CoordinatorMessage(report_ack=agent_pb2.ReportAck()))
    command = agent_pb2.Command(kind=agent_pb2.COMMAND_KIND_REPORT_NOW)
    with pytest.raises(CommandFailed, match="to eu-west-1: 128 messages wait to be sent"):
        await dispatcher.send(session, command, epoch=1, timeout=1.0)
    assert session.outbox.qsize() == OUTBOX // 2


def test_a_session_whose_outbox_overflows_ends_and_keeps_no_more():
    session = AgentSession(region="eu-west-1")
    for _ in range(10_000):
        session.send(agent_pb2.CoordinatorMessage(report_ack=agent_pb2.ReportAck()))
    assert session.outbox.qsize() == OUTBOX + 1  # and the close marker
    code, details = session.error
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == f"{OUTBOX} messages wait to be sent: the agent is not reading"

"""Commands from the leader to agents, and the wait for their results.

A command travels on the agent's stream and is answered by a CommandResult with the same id on
that stream. The leader stamps each with its epoch and a deadline; an agent refuses one from a
deposed leader or past its deadline, so a late or stale command cannot act.

Bounded: a command is not queued on a session whose outbox is backed up (half its bound,
coordinator/sessions.py): the agent is not reading, and the command could only time out.
Every command waits within its timeout, so the commands in flight are bounded by the callers'
own bounds (one fresh consistency check at a time, one failover).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from coordinator import metrics
from coordinator.sessions import AgentSession
from latitude.errors import LatitudeError
from latitude.v1 import agent_pb2


class CommandFailed(LatitudeError):
    """The agent could not be reached, did not answer in time, or answered not ok."""


class CommandDispatcher:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[agent_pb2.CommandResult]] = {}

    async def send(
        self,
        session: AgentSession | None,
        command: agent_pb2.Command,
        *,
        epoch: int,
        timeout: float,
        reason: str = "",
    ) -> agent_pb2.CommandResult:
        """Send ``command`` and return the agent's result (ok or not); CommandFailed when there
        is no agent to send it to, or no answer within ``timeout``."""
        kind = agent_pb2.CommandKind.Name(command.kind)
        if session is None:
            raise CommandFailed(f"{kind}: no agent connected")
        if session.backed_up:
            raise CommandFailed(f"{kind} to {session.region}: {session.backlog}")
        command.command_id = command.command_id or uuid.uuid4().hex
        command.epoch = epoch
        command.reason = reason
        command.deadline.FromNanoseconds(int((time.time() + timeout) * 1e9))
        command.time_limit.FromNanoseconds(int(timeout * 1e9))
        future = asyncio.get_running_loop().create_future()
        self._waiting[command.command_id] = future
        ended = asyncio.ensure_future(session.ended.wait())
        try:
            session.send(agent_pb2.CoordinatorMessage(command=command))
            metrics.command_sent(session.region, command.kind)
            async with asyncio.timeout(timeout):
                await asyncio.wait((future, ended), return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError as err:
            raise CommandFailed(
                f"{kind} to {session.region}: no answer within {timeout:.1f} s"
            ) from err
        finally:
            ended.cancel()
            self._waiting.pop(command.command_id, None)
        if future.done():
            return future.result()
        # Ended or taken over: no answer can come on it, so waiting out the timeout would
        # only hold the caller (a rejoin, a failover's step) for nothing.
        raise CommandFailed(f"{kind} to {session.region}: its stream ended before an answer")

    def resolve(self, result: agent_pb2.CommandResult) -> None:
        future = self._waiting.get(result.command_id)
        if future is not None and not future.done():
            future.set_result(result)

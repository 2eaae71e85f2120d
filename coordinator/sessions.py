"""Open agent streams, and how the leader speaks to them."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import grpc

from latitude.v1 import agent_pb2

log = logging.getLogger(__name__)

_CLOSE = None
# Messages waiting for the stream's writer. An agent that does not read its stream blocks the
# writer; past this many the session ends (RESOURCE_EXHAUSTED) and further messages are
# dropped, rather than kept for ever.
OUTBOX = 256


@dataclass(eq=False)  # sessions are compared (and hashed) by identity
class AgentSession:
    """One agent's stream: an outbox drained by the stream's single writer."""

    region: str = ""
    agent_id: str = ""
    error: tuple | None = None  # (grpc.StatusCode, details) to end the stream with

    def __post_init__(self) -> None:
        self.outbox: asyncio.Queue[agent_pb2.CoordinatorMessage | None] = asyncio.Queue()
        # Set once the stream is over: a command still waiting on it will get no answer.
        self.ended = asyncio.Event()
        # When its reader last received a message (monotonic): Sessions.end_silent's clock,
        # one attribute store per message where a timeout around every read cost a timer.
        self.heard_at = time.monotonic()

    def send(self, message: agent_pb2.CoordinatorMessage) -> None:
        if self.outbox.qsize() >= OUTBOX:
            if self.error is None:
                self.close(error=(grpc.StatusCode.RESOURCE_EXHAUSTED, self.backlog))
            return
        self.outbox.put_nowait(message)

    @property
    def backlog(self) -> str:
        return f"{self.outbox.qsize()} messages wait to be sent: the agent is not reading"

    @property
    def backed_up(self) -> bool:
        return self.outbox.qsize() >= OUTBOX // 2

    def close(self, final: agent_pb2.CoordinatorMessage | None = None, error=None) -> None:
        if error is not None and self.error is None:
            self.error = error
        if final is not None:
            self.outbox.put_nowait(final)
        self.outbox.put_nowait(_CLOSE)
        self.ended.set()


class Sessions:
    def __init__(self) -> None:
        self._open: set[AgentSession] = set()

    def add(self, session: AgentSession) -> None:
        self._open.add(session)

    def discard(self, session: AgentSession) -> None:
        self._open.discard(session)

    def close_all(self, final: agent_pb2.CoordinatorMessage) -> None:
        for session in list(self._open):
            session.close(final)
        self._open.clear()

    def __len__(self) -> int:
        return len(self._open)

    def silent(self, now: float, after: float) -> list[AgentSession]:
        """The open sessions whose reader has received nothing for ``after`` seconds."""
        return [s for s in self._open if now - s.heard_at >= after and not s.ended.is_set()]

    def end_silent(self, now: float, after: float, interval: float) -> list[AgentSession]:
        """End the streams silent for ``after`` seconds (DEADLINE_EXCEEDED), and return them.

        An agent reports every ``interval``: the connection of a dead or cut-off agent can stay
        open on this side (no FIN seen, a half-open TCP connection), and a session nobody reads
        would keep its region "connected", take the commands meant for it until each one's
        timeout, and hold the region against the agent's next stream. The leader's tick calls
        this, so one pass over the open streams replaces a timer around every read.
        """
        ended = self.silent(now, after)
        for session in ended:
            log.warning(
                "agent stream for %s: nothing received for %.1f s: ending it",
                session.region,
                after,
            )
            session.close(
                error=(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"nothing received for {after:.1f} s (reports are due every {interval:.1f} s)",
                )
            )
        return ended

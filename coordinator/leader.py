"""What the leader's parts (the failover, its guards, rejoins) may use, and nothing more.

They get a ``Leader``: the configuration, a clock, commands to agents, guarded writes to etcd,
the event history, and when this leadership began. ``CoordinatorNode`` builds the real one for
each term; the unit tests build one from fakes (an in-memory store, scripted agents, a fake
clock) and drive the failover through every phase without a server.

Writes come in two kinds:
- ``write``: best effort, for what is rewritten anyway (region health, events): False when it
  was not applied, whatever the reason.
- ``commit``: for what a failover builds on (the failover record, the write region). Its outcome
  is known when it returns: applied, or ``Deposed`` (the leader key is no longer ours: never
  retried), or, after ``within`` seconds of unknown outcomes each re-read and retried,
  ``OutcomeUnknown``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from coordinator.config import CoordinatorConfig
from latitude.errors import LatitudeError
from latitude.v1 import agent_pb2


class Deposed(LatitudeError):
    """The leader key is no longer ours: nothing more may be written or commanded."""


class OutcomeUnknown(LatitudeError):
    """etcd did not say whether a write was applied, and re-reading could not tell either."""


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class Agents(Protocol):
    async def command(
        self, region: str, command: agent_pb2.Command, *, timeout: float, reason: str = ""
    ) -> agent_pb2.CommandResult:
        """The agent's result (ok or not); CommandFailed when it cannot be had in time."""
        ...


class Writes(Protocol):
    async def write(self, puts: Mapping[str, bytes], deletes: Sequence[str] = ()) -> bool: ...

    async def commit(
        self, puts: Mapping[str, bytes], deletes: Sequence[str] = (), *, within: float = 10.0
    ) -> None: ...

    async def read(self, name: str) -> bytes | None: ...


class Events(Protocol):
    def record(
        self,
        kind: int,
        severity: int = ...,
        *,
        region: str = "",
        message: str = "",
        attributes: Mapping[str, object] | None = None,
        failover_id: str = "",
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Leader:
    config: CoordinatorConfig
    clock: Clock
    agents: Agents
    writes: Writes
    events: Events
    epoch: int
    # When this leadership began: nothing can have been heard from any agent before it.
    began: float  # clock.monotonic()
    began_wall: float  # clock.wall()

    def wall_of(self, monotonic: float) -> float:
        """A monotonic moment on the wall clock, for records others read."""
        return self.began_wall + (monotonic - self.began)

    def monotonic_of(self, wall: float) -> float:
        return self.began + (wall - self.began_wall)

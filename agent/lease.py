"""The agent's fence lease: until when its database may stay writable without more evidence.

The leader promotes another region only after the old primary's fence deadline has passed, so
the primary must be unwritable by then whatever happened. The deadline is ``fence_after`` past
the newest evidence that no promotion can be under way:

- a leader acknowledged a report: counted from when that report was *sent* (the leader
  cannot have acknowledged anything later);
- a failsafe round was fully confirmed: every other region's standby said it still follows
  this primary and no leader has told it otherwise (agent.failsafe). Counted from when the
  round was *sent*: a standby that confirmed stops confirming before any promotion, and the
  leader waits fence_after past its last confirmation;
- the agent started: a primary that comes up with no leader and no standby in reach must not
  take writes for long either.

Once past the deadline, a database that could be writable is fenced: a primary not yet
fenced, or one the agent cannot see (UNKNOWN, DOWN): a server that cannot be probed may still
take writes, and the demotion works on files and signals. A standby cannot take writes.

The agent also writes the deadline to a file for the region's fence keeper (agent.keeper, which
owns the file's format), which fences the database itself when the agent is gone or hung.

Pure: driven by a fake clock in tests.
"""

from __future__ import annotations

from latitude.v1 import agent_pb2, common_pb2

_WRITABLE_ROLES = (
    common_pb2.DATABASE_ROLE_PRIMARY,
    common_pb2.DATABASE_ROLE_UNKNOWN,
    common_pb2.DATABASE_ROLE_DOWN,
)


def could_be_writable(database: common_pb2.DatabaseStatus) -> bool:
    """As the agent last saw it: an unfenced primary, or a server whose role it could not
    tell (UNKNOWN, DOWN)."""
    if database.role == common_pb2.DATABASE_ROLE_PRIMARY:
        return not database.fenced
    return database.role in _WRITABLE_ROLES


class FenceLease:
    """The fence deadline and the evidence it rests on."""

    def __init__(self, *, started_at: float, fence_after: float) -> None:
        self.fence_after = fence_after
        self._started_at = started_at
        self._acked_at: float | None = None  # send time of the newest acknowledged report
        self._round_at: float | None = None  # send time of the newest fully confirmed round
        self.confirmed_by: tuple[str, ...] = ()
        self.failsafe_problem = ""

    def acknowledged(self, sent_at: float | None) -> None:
        """A leader acknowledged a report sent at ``sent_at`` (None: none yet)."""
        if sent_at is not None and (self._acked_at is None or sent_at > self._acked_at):
            self._acked_at = sent_at

    def confirmed(self, sent_at: float, regions: tuple[str, ...]) -> None:
        """Every other region confirmed the round sent at ``sent_at``."""
        if self._round_at is None or sent_at > self._round_at:
            self._round_at = sent_at
            self.confirmed_by = regions
        self.failsafe_problem = ""

    def unconfirmed(self, problem: str) -> None:
        """The newest round was not fully confirmed; the deadline stays where it was."""
        self.failsafe_problem = problem

    @property
    def since(self) -> float:
        """The newest evidence the deadline rests on."""
        return max(t for t in (self._started_at, self._acked_at, self._round_at) if t is not None)

    @property
    def deadline(self) -> float:
        return self.since + self.fence_after

    @property
    def failsafe(self) -> bool:
        """The deadline rests on a failsafe round rather than on an acknowledgement."""
        return self._round_at is not None and self._round_at == self.since

    def due(self, now: float, database: common_pb2.DatabaseStatus) -> bool:
        """Past the deadline, with a database that could take writes: fence it."""
        return now >= self.deadline and could_be_writable(database)

    def to_proto(self, now: float) -> agent_pb2.Lease:
        return agent_pb2.Lease(
            remaining_seconds=max(0.0, self.deadline - now),
            failsafe=self.failsafe,
            confirmed_by=self.confirmed_by if self.failsafe else (),
            failsafe_problem=self.failsafe_problem,
        )

"""When a primary's agent must fence its own database.

The leader promotes another region only after the old primary's fence deadline has passed. That
is safe only if the old primary really is read-only by then, whatever happened to the network:
so the agent of a writable primary fences it as soon as none of its reports has been
acknowledged by a leader for ``fence_after`` seconds, counted from when the newest
acknowledged report was *sent* (the leader cannot have acknowledged anything later). An agent
that has had no acknowledgement since it started counts from its start: a primary that comes
up without a leader in reach must not accept writes for long either.
"""

from __future__ import annotations

from latitude.v1 import common_pb2


def fence_due(
    now: float,
    *,
    database: common_pb2.DatabaseStatus,
    last_ack_sent_at: float | None,
    started_at: float,
    fence_after: float,
) -> bool:
    if database.role != common_pb2.DATABASE_ROLE_PRIMARY or database.fenced:
        return False
    since = last_ack_sent_at if last_ack_sent_at is not None else started_at
    return now - since >= fence_after

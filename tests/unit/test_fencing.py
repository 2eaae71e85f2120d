"""When an agent fences its own database: past its lease, and only a database that could
take writes."""

from __future__ import annotations

import pytest

from agent.lease import FenceLease
from latitude.v1 import common_pb2

R = common_pb2.DatabaseRole
PRIMARY = common_pb2.DatabaseStatus(role=R.DATABASE_ROLE_PRIMARY)
FENCED = common_pb2.DatabaseStatus(role=R.DATABASE_ROLE_PRIMARY, fenced=True)
STANDBY = common_pb2.DatabaseStatus(role=R.DATABASE_ROLE_STANDBY)
UNKNOWN = common_pb2.DatabaseStatus(role=R.DATABASE_ROLE_UNKNOWN)
DOWN = common_pb2.DatabaseStatus(role=R.DATABASE_ROLE_DOWN)


@pytest.mark.parametrize(
    ("now", "database", "acked", "due"),
    [
        (103.9, PRIMARY, 100.0, False),  # acknowledged recently enough
        (104.0, PRIMARY, 100.0, True),  # fence_after since the newest acknowledged report
        (200.0, FENCED, 100.0, False),  # already fenced
        (200.0, STANDBY, 100.0, False),  # a standby cannot accept writes anyway
        (200.0, UNKNOWN, 100.0, True),  # cannot be seen: may still take writes
        (200.0, DOWN, 100.0, True),  # not answering: the demotion works on files and signals
        (53.9, PRIMARY, None, False),  # never acknowledged: counted from the start (50)
        (54.0, PRIMARY, None, True),
    ],
)
def test_a_database_that_could_take_writes_is_fenced_past_the_lease(now, database, acked, due):
    lease = FenceLease(started_at=50.0, fence_after=4.0)
    lease.acknowledged(acked)
    assert lease.due(now, database) is due


def test_a_confirmed_failsafe_round_keeps_the_primary_writable_without_acks():
    lease = FenceLease(started_at=50.0, fence_after=4.0)
    lease.acknowledged(100.0)
    lease.confirmed(103.0, ("eu-west-1", "ap-southeast-1"))
    assert not lease.due(106.9, PRIMARY)
    assert lease.due(107.0, PRIMARY)

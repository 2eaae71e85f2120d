from __future__ import annotations

import pytest

from agent.fencing import fence_due
from latitude.v1 import common_pb2

PRIMARY = common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_PRIMARY)
FENCED = common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_PRIMARY, fenced=True)
STANDBY = common_pb2.DatabaseStatus(role=common_pb2.DATABASE_ROLE_STANDBY)


@pytest.mark.parametrize(
    ("now", "database", "acked", "due"),
    [
        (103.9, PRIMARY, 100.0, False),  # acknowledged recently enough
        (104.0, PRIMARY, 100.0, True),  # fence_after since the newest acknowledged report
        (200.0, FENCED, 100.0, False),  # already fenced
        (200.0, STANDBY, 100.0, False),  # a standby cannot accept writes anyway
        (53.9, PRIMARY, None, False),  # never acknowledged: counted from the start (50)
        (54.0, PRIMARY, None, True),
    ],
)
def test_a_primary_fences_when_acknowledgements_stop(now, database, acked, due):
    assert (
        fence_due(now, database=database, last_ack_sent_at=acked, started_at=50.0, fence_after=4.0)
        is due
    )

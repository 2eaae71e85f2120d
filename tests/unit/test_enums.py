from latitude.enums import short_name
from latitude.v1 import admin_pb2, common_pb2, routing_pb2


def test_enum_values_lose_the_prefix_their_enum_gives_them():
    assert short_name(common_pb2.RegionState, common_pb2.REGION_STATE_HEALTHY) == "HEALTHY"
    assert short_name(routing_pb2.Strategy, routing_pb2.STRATEGY_ROUND_ROBIN, lower=True) == (
        "round_robin"
    )
    verdict = admin_pb2.CONSISTENCY_VERDICT_CONFLICTING_PRIMARY
    assert short_name(admin_pb2.ConsistencyVerdict, verdict) == "CONFLICTING_PRIMARY"

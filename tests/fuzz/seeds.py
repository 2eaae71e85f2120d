"""Requests that get past a method's first checks, to mix with drawn values.

A request drawn from the descriptor alone rarely names a real region, a table the database
has, or a key of the right width, so the fuzzing would stop at the first lookup. For each
method whose interesting code lies behind such checks, ``SEEDS`` draws requests that pass
them, with the values behind them drawn freely (key values of any text, limits of any width);
the tests send these, drawn messages, and the two merged.
"""

from __future__ import annotations

from hypothesis import strategies as st

from latitude.v1 import admin_pb2, agent_pb2, history_pb2, routing_pb2
from tests.fuzz.strategies import UINT32, UINT64, floats, integers, texts

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1")
# The table tests/fuzz/conftest.py creates: PRIMARY KEY (id bigint, name text).
SCHEMA, TABLE = "public", "fuzz_keys"
CLIENT_IPS = ("8.8.8.8", "81.2.69.160", "202.166.126.1", "127.0.0.1", "::1", "2001:db8::1")

# A key value: the text of a bigint, of a number past it, or any text at all.
_VALUE = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.integers(-(2**80), 2**80).map(str),
    st.sampled_from(["", "abc", "n1", "1e3", " 1", "x\x00y", "NaN", "'", "\\"]),
    texts(),
)
# Mostly the key's width (two columns), sometimes not.
_KEY = st.builds(
    lambda values: agent_pb2.VerifyKey(values=values),
    st.one_of(st.lists(_VALUE, min_size=2, max_size=2), st.lists(_VALUE, max_size=4)),
)


def _key_range(after, upto) -> agent_pb2.KeyRange:
    key_range = agent_pb2.KeyRange()
    if after is not None:
        key_range.after.CopyFrom(after)
    if upto is not None:
        key_range.upto.CopyFrom(upto)
    return key_range


_RANGE = st.builds(_key_range, st.none() | _KEY, st.none() | _KEY)
_WAIT = st.one_of(st.just(0.0), st.floats(0, 2), floats())

SEEDS: dict[str, st.SearchStrategy] = {
    "VerifyService.Checksum": st.builds(
        lambda ranges, lsn, wait: agent_pb2.ChecksumRequest(
            schema=SCHEMA, table=TABLE, ranges=ranges, min_lsn=lsn, wait_seconds=wait
        ),
        st.lists(_RANGE, max_size=4),
        # Replayed already: a standby waiting for an LSN it never reaches is the drawn
        # messages' case, and costs the call's whole deadline.
        st.sampled_from([0, 1]),
        _WAIT,
    ),
    "VerifyService.Bounds": st.builds(
        lambda key_range, every, limit: agent_pb2.BoundsRequest(
            schema=SCHEMA, table=TABLE, range=key_range, every=every, limit=limit
        ),
        _RANGE,
        integers(*UINT32),
        integers(*UINT32),
    ),
    "VerifyService.Rows": st.builds(
        lambda key_range, limit: agent_pb2.RowsRequest(
            schema=SCHEMA, table=TABLE, range=key_range, limit=limit
        ),
        _RANGE,
        integers(*UINT32),
    ),
    "FailsafeService.Confirm": st.builds(
        lambda region, address, system: agent_pb2.ConfirmRequest(
            primary_region=region, primary_address=address, system_identifier=system
        ),
        st.sampled_from(REGIONS),
        st.sampled_from(["127.0.0.1:5432", ""]) | texts(),
        integers(*UINT64),
    ),
    "AdminService.GetHistory": st.builds(
        lambda region, since, samples: history_pb2.GetHistoryRequest(
            region=region, since_seconds=since, max_samples=samples
        ),
        st.sampled_from(REGIONS),
        floats(),
        integers(*UINT32),
    ),
    "AdminService.ListEvents": st.builds(
        lambda region, limit, before: admin_pb2.ListEventsRequest(
            region=region, limit=limit, before_sequence=before
        ),
        st.sampled_from(("", *REGIONS)),
        integers(*UINT32),
        integers(*UINT64),
    ),
    "AdminService.SetMaintenance": st.builds(
        lambda region, enabled, drain: admin_pb2.SetMaintenanceRequest(
            region=region, enabled=enabled, drain=drain
        ),
        st.sampled_from(REGIONS),
        st.booleans(),
        st.booleans(),
    ),
    "AdminService.Switchover": st.builds(
        lambda region, force: admin_pb2.SwitchoverRequest(target_region=region, force=force),
        st.sampled_from(("", *REGIONS)),
        st.booleans(),
    ),
    "AdminService.Failover": st.builds(
        lambda region, force: admin_pb2.FailoverRequest(target_region=region, force=force),
        st.sampled_from(("", *REGIONS)),
        st.booleans(),
    ),
    "AdminService.Verify": st.builds(
        lambda per_range, per_call, wait: admin_pb2.VerifyRequest(
            tables=[f"{SCHEMA}.{TABLE}"],
            rows_per_range=per_range,
            ranges_per_call=per_call,
            replay_wait_seconds=wait,
        ),
        integers(*UINT32),
        integers(*UINT32),
        _WAIT,
    ),
    "RoutingService.Resolve": st.builds(
        lambda ip, strategy, intent, targets: routing_pb2.ResolveRequest(
            client_ip=ip, strategy=strategy, intent=intent, max_targets=targets
        ),
        st.sampled_from(CLIENT_IPS),
        st.sampled_from(list(routing_pb2.Strategy.values())),
        st.sampled_from(list(routing_pb2.Intent.values())),
        integers(*UINT32),
    ),
    "RoutingService.ReportLatency": st.builds(
        lambda ip, samples: routing_pb2.LatencyReport(client_ip=ip, samples=samples),
        st.sampled_from(CLIENT_IPS),
        st.lists(
            st.builds(
                lambda region, seconds: routing_pb2.LatencySample(
                    region=region, latency_seconds=seconds
                ),
                st.sampled_from(REGIONS),
                st.one_of(st.floats(0, 60), floats()),
            ),
            max_size=4,
        ),
    ),
}

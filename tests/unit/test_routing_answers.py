"""Resolve's kept answers stay within their bounds whatever the requests look like."""

from __future__ import annotations

import types

import pytest

from coordinator.config import CoordinatorConfig
from coordinator.routing.answers import ENTRY_OVERHEAD, AnswerCache
from coordinator.routing.cache import TableCache
from coordinator.routing_service import RoutingService
from latitude.v1 import common_pb2, routing_pb2
from tests.unit.routing_tables import REGIONS, make_table, status


def test_the_oldest_answers_go_first_when_the_bytes_run_out():
    cache = AnswerCache(max_bytes=3 * (10 + 100 + ENTRY_OVERHEAD), max_entries=100)
    for i in range(4):
        assert cache.keep(b"request-%02d" % i, ("answer", i), 100)
    assert len(cache) == 3 and cache.get(b"request-00") is None
    assert cache.get(b"request-03") == ("answer", 3)
    assert cache.bytes == 3 * (10 + 100 + ENTRY_OVERHEAD)


def test_the_oldest_answers_go_first_when_the_entries_run_out():
    cache = AnswerCache(max_entries=2)
    for i in range(3):
        cache.keep(b"k%d" % i, i, 1)
    assert [cache.get(b"k%d" % i) for i in range(3)] == [None, 1, 2]


def test_an_oversized_request_or_answer_is_never_kept():
    cache = AnswerCache(max_bytes=10_000, max_key_bytes=64)
    assert not cache.keep(b"x" * 65, "answer", 10)
    assert not cache.keep(b"small", "answer", 20_000)
    assert len(cache) == 0 and cache.bytes == 0


def test_keeping_a_key_again_replaces_it_and_clear_empties_everything():
    cache = AnswerCache()
    cache.keep(b"k", "first", 10)
    cache.keep(b"k", "second", 30)
    assert len(cache) == 1 and cache.get(b"k") == "second"
    assert cache.bytes == 1 + 30 + ENTRY_OVERHEAD
    get = cache.get
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0 and get(b"k") is None


def test_negative_bounds_are_refused():
    with pytest.raises(ValueError, match="must not be negative"):
        AnswerCache(max_bytes=-1)


def padded(request: routing_pb2.ResolveRequest, size: int, salt: int) -> bytes:
    """``request`` with an unknown field (number 1000) of ``size`` bytes: still a valid
    ResolveRequest to the server, and a different key for every ``salt``."""
    payload = salt.to_bytes(8, "big") + b"\0" * max(0, size - 8)
    tag = _varint((1000 << 3) | 2)
    return request.SerializeToString() + tag + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Context:
    """Enough of a grpc.aio.ServicerContext for calls that succeed."""

    def code(self):
        return None

    async def abort(self, code, details):
        raise AssertionError(f"aborted: {code} {details}")


def routing(answers: AnswerCache) -> RoutingService:
    cache = TableCache(store=None)
    cache.apply(make_table([status(name) for name in REGIONS]))
    node = types.SimpleNamespace(config=CoordinatorConfig(regions=tuple(REGIONS)))
    return RoutingService(node, cache, answers=answers)


LONDON = routing_pb2.ResolveRequest(location=common_pb2.Location(latitude=51.5, longitude=-0.1))


async def test_ten_thousand_padded_requests_keep_the_answers_within_their_bytes():
    answers = AnswerCache(max_bytes=256 * 1024, max_key_bytes=512)
    service = routing(answers)
    context = Context()
    expected = routing_pb2.RoutingDecision.FromString(
        await service.resolve_serialized(LONDON.SerializeToString(), context)
    )
    for salt in range(10_000):
        body = padded(LONDON, 400, salt)
        answer = await service.resolve_serialized(body, context)
        assert routing_pb2.RoutingDecision.FromString(answer) == expected
        assert answers.bytes <= 256 * 1024
    assert 0 < len(answers) < 10_000
    # The newest is kept, and answered from the cache the second time.
    assert answers.get(padded(LONDON, 400, 9_999)) is not None


async def test_requests_padded_past_the_key_bound_are_answered_but_never_kept():
    answers = AnswerCache(max_key_bytes=512)
    service = routing(answers)
    for salt in range(100):
        answer = await service.resolve_serialized(padded(LONDON, 256 * 1024, salt), Context())
        assert routing_pb2.RoutingDecision.FromString(answer).targets
    assert len(answers) == 0 and answers.bytes == 0


async def test_a_new_table_drops_the_answers_of_the_old_one():
    answers = AnswerCache()
    service = routing(answers)
    await service.resolve_serialized(LONDON.SerializeToString(), Context())
    assert len(answers) == 1
    service._cache.apply(make_table([status(name) for name in REGIONS], version=8))
    answer = await service.resolve_serialized(b"", Context())
    assert routing_pb2.RoutingDecision.FromString(answer).table_version == 8
    assert len(answers) == 1 and answers.get(LONDON.SerializeToString()) is None

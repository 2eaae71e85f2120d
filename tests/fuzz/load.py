"""Many fuzzed calls to one coordinator, for its memory: a pool of requests drawn up front
(mixed methods, drawn messages and raw bytes), sent round and round with a bounded number in
flight. Used by tests/fuzz/test_memory.py and bench/fuzz_memory.py.

The mix leaves the cluster as it is, so that memory measures what calls leave behind, not a
cluster that changes: calls that would change it when valid (SetStrategy, Switchover,
Failover, SetMaintenance) carry only inputs that must be refused, latency reports name no
region of the deployment, and agent streams open with a Hello for a region it does not have.
Resolve and the reads are drawn freely.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from latitude.v1 import agent_pb2
from tests.fuzz import calls
from tests.fuzz.seeds import SEEDS
from tests.fuzz.strategies import merged, message_strategy, wire_strategy

# Methods and their share of the mix; calls.KEEPS_CLUSTER keeps the cluster as it is.
MIX: dict[str, int] = {
    "RoutingService.Resolve": 30,
    "RoutingService.ReportLatency": 10,
    "AdminService.GetStatus": 8,
    "AdminService.ListEvents": 8,
    "AdminService.GetHistory": 8,
    "AdminService.ListIncidents": 8,
    "AdminService.SetStrategy": 4,
    "AdminService.Switchover": 4,
    "AdminService.Failover": 4,
    "AdminService.SetMaintenance": 4,
    "AgentService.Connect": 6,
}
METHODS = {m.full_name.removeprefix("latitude.v1."): m for m in calls.methods()}


@dataclass(frozen=True, slots=True)
class Request:
    method: MethodDescriptor
    body: bytes | tuple[bytes, ...]  # a tuple: a client stream's messages


def _draw(strategy: st.SearchStrategy, count: int, random_seed: int) -> list:
    drawn: list = []

    @settings(
        max_examples=count,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    @seed(random_seed)
    def collect(value):
        drawn.append(value)

    collect()
    return drawn


def _allowed(method: MethodDescriptor, keep: Callable[[Message], bool] | None):
    cls = message_factory.GetMessageClass(method.input_type)

    def sendable(body: bytes) -> bool:
        if keep is None:
            return True
        try:
            return keep(cls.FromString(body))
        except DecodeError:
            return True

    return sendable


def _decoy_hello(message: agent_pb2.AgentMessage) -> bytes:
    """A stream's first message: a Hello for a region the deployment does not have, so that
    the stream is refused and no real agent's session is touched."""
    first = agent_pb2.AgentMessage()
    first.CopyFrom(message)
    if first.WhichOneof("body") == "hello" and first.hello.region in calls.REGIONS:
        first.hello.region = "mars-1"
    return first.SerializeToString()


def request_pool(size: int, *, seed: int = 11) -> list[Request]:
    """About ``size`` requests in MIX's proportions, a third of them raw bytes, shuffled."""
    total = sum(MIX.values())
    pool: list[Request] = []
    for name, share in MIX.items():
        method, keep = METHODS[name], calls.KEEPS_CLUSTER.get(name)
        count = max(2, size * share // total)
        if method.client_streaming:
            first = message_strategy(agent_pb2.AgentMessage.DESCRIPTOR, depth=2)
            follow = st.one_of(first, st.just(agent_pb2.AgentMessage()))
            streams = st.tuples(first.map(_decoy_hello), st.lists(follow, max_size=3))
            for opening, rest in _draw(streams, count, seed):
                body = (opening, *(m.SerializeToString() for m in rest))
                pool.append(Request(method, body))
            continue
        messages = message_strategy(method.input_type, words=calls.REGIONS, depth=3)
        valid = SEEDS.get(name)
        if valid is not None:
            messages = st.one_of(messages, valid, st.builds(merged, valid, messages))
        if keep is not None:
            messages = messages.filter(keep)
        raw = wire_strategy(method.input_type, words=calls.REGIONS).filter(_allowed(method, keep))
        drawn = _draw(messages, count - count // 3, seed)
        pool += [Request(method, m.SerializeToString()) for m in drawn]
        pool += [Request(method, b) for b in _draw(raw, count // 3, seed + 1)]
    random.Random(seed).shuffle(pool)
    return pool


@dataclass
class Tally:
    calls: int = 0
    codes: collections.Counter = field(default_factory=collections.Counter)
    # The first calls that ended in UNKNOWN or INTERNAL (calls.is_bug), or whose status never
    # reached the client (calls.lost): method, details and the request.
    bugs: list[str] = field(default_factory=list)


async def send(
    address: str,
    pool: Sequence[Request],
    count: int,
    *,
    start: int = 0,
    concurrency: int = 16,
    timeout: float = 5.0,
    tally: Tally | None = None,
) -> Tally:
    """Send ``count`` calls from ``pool`` (round and round, from ``start``)."""
    tally = tally or Tally()
    identity = dict(request_serializer=None, response_deserializer=None)
    async with grpc.aio.insecure_channel(address) as channel:
        callers = {}
        for request in pool:
            name = calls.path(request.method)
            if name not in callers:
                kind = "stream_unary" if request.method.client_streaming else "unary_unary"
                if request.method.client_streaming and request.method.server_streaming:
                    kind = "stream_stream"
                callers[name] = getattr(channel, kind)(name, **identity)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(start, start + count):
            queue.put_nowait(i)

        async def worker():
            while not queue.empty():
                request = pool[queue.get_nowait() % len(pool)]
                caller = callers[calls.path(request.method)]
                code, details = await _one(caller, request, timeout)
                tally.calls += 1
                if code == CLIENT_WRITE_RACE:
                    tally.codes[code] += 1
                    continue
                tally.codes[code.name] += 1
                method = request.method.full_name.removeprefix("latitude.v1.")
                wrong = calls.is_bug(method, code, details) or calls.lost(code, details)
                if wrong and len(tally.bugs) < 20:
                    tally.bugs.append(f"{method}: {details[:300]} <- {request.body!r}"[:900])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


# grpc.aio's client, writing a stream's messages while the server has already ended the call,
# reports INTERNAL "Internal error from Core" in place of the server's status (seen against a
# handler that always aborts with INVALID_ARGUMENT; the synchronous client always reports that
# status). It is the client's, not the server's: counted apart, not as a bug.
CLIENT_WRITE_RACE = "CLIENT_WRITE_RACE"


async def _one(caller, request: Request, timeout: float) -> tuple[grpc.StatusCode | str, str]:
    try:
        if isinstance(request.body, tuple):
            call = caller(iter(request.body), timeout=timeout)
            async for _ in call:
                pass
        else:
            await caller(request.body, timeout=timeout)
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as err:
        details = err.details() or ""
        stream = isinstance(request.body, tuple)
        if (
            stream
            and err.code() == grpc.StatusCode.INTERNAL
            and details == "Internal error from Core"
        ):
            return CLIENT_WRITE_RACE, details
        return err.code(), details


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"process {pid} reports no VmRSS")

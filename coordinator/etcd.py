"""latitude's etcd client: aetcd for the protocol, plus the pieces aetcd lacks.

aetcd talks to one endpoint, gives every call the same timeout and has no lease keepalive. Here:
- one gRPC channel over every configured endpoint (round robin, so a dead member is skipped);
- a deadline on each call, chosen by the caller (the election's must fit inside the lease TTL);
- ``keepalive``: one LeaseKeepAlive round trip, driven by the election's own loop;
- errors translated once into ``EtcdError`` / ``EtcdUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aetcd
import aetcd.exceptions
import grpc
from aetcd import rpc

from coordinator import metrics
from latitude.errors import LatitudeError


class EtcdError(LatitudeError):
    """etcd refused or failed a request."""


class EtcdUnavailable(EtcdError):
    """No etcd member answered in time."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    key: bytes
    value: bytes  # empty for a delete
    deleted: bool
    create_revision: int
    mod_revision: int


class Etcd:
    def __init__(self, endpoints: Sequence[str], *, timeout: float = 1.0) -> None:
        if not endpoints:
            raise EtcdError("no etcd endpoints configured")
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        # aetcd builds its target as f"{host}:{port}"; a gRPC "ipv4:" target lists every member.
        scheme = "ipv6:" if any(e.startswith("[") for e in endpoints) else "ipv4:"
        host, _, port = (scheme + ",".join(endpoints)).rpartition(":")
        self._client = aetcd.Client(
            host=host,
            port=int(port),
            options={
                "grpc.lb_policy_name": "round_robin",
                # Reconnect to a restarted member quickly rather than after the default 20 s.
                "grpc.initial_reconnect_backoff_ms": 100,
                "grpc.max_reconnect_backoff_ms": 1000,
            },
        )
        self.transactions = self._client.transactions

    async def connect(self) -> None:
        await self._call(self._client.connect(), "connect")

    async def _kv(self):
        """aetcd's KV stub, connecting first if nothing has yet (raw calls skip its check)."""
        if self._client.kvstub is None:
            await self.connect()
        return self._client.kvstub

    async def close(self) -> None:
        try:
            await _bounded(self._client.close(), self.timeout)
        except (TimeoutError, aetcd.exceptions.ClientError, grpc.RpcError):
            pass

    async def get(self, key: bytes, timeout: float | None = None) -> KeyValue | None:
        result = await self._call(self._client.get(key), "get", timeout)
        return None if result is None else _kv(result)

    async def get_prefix(
        self, prefix: bytes, timeout: float | None = None
    ) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` and the store revision they were read at."""
        request = rpc.RangeRequest(key=prefix, range_end=_prefix_end(prefix))
        stub = await self._kv()
        response = await self._call(
            stub.Range(request, timeout=timeout or self.timeout), "get_prefix"
        )
        return [_kv(kv) for kv in response.kvs], response.header.revision

    async def get_range(
        self, start: bytes, end: bytes | None, *, limit: int, descending: bool = False
    ) -> list[KeyValue]:
        """Up to ``limit`` keys in [start, end) (end None: every key that starts with
        ``start``), in key order (``descending``: from the end)."""
        request = rpc.RangeRequest(
            key=start,
            range_end=_prefix_end(start) if end is None else end,
            limit=limit,
            sort_target=rpc.RangeRequest.KEY,
            sort_order=rpc.RangeRequest.DESCEND if descending else rpc.RangeRequest.ASCEND,
        )
        response = await self._call(
            (await self._kv()).Range(request, timeout=self.timeout), "get_range"
        )
        return [_kv(kv) for kv in response.kvs]

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> None:
        await self._call(self._client.put(key, value, lease=lease or None), "put")

    async def delete_prefix(self, prefix: bytes) -> None:
        await self._call(self._client.delete_prefix(prefix), "delete_prefix")

    async def txn(self, compare, success, failure=(), timeout: float | None = None):
        """One atomic transaction: (whether ``compare`` held, responses)."""
        return await self._call(
            self._client.transaction(compare=compare, success=success, failure=list(failure)),
            "transaction",
            timeout,
        )

    async def grant(self, ttl: int, timeout: float | None = None) -> int:
        lease = await self._call(self._client.lease(ttl), "lease grant", timeout)
        return lease.id

    async def revoke(self, lease: int, timeout: float | None = None) -> None:
        await self._call(self._client.revoke_lease(lease), "lease revoke", timeout)

    async def keepalive(self, lease: int, timeout: float) -> int:
        """Refresh ``lease`` once; its remaining TTL in seconds, 0 when it has expired."""
        reply = await self._call(self._client.refresh_lease(lease), "lease keepalive", timeout)
        return 0 if reply is None else int(reply.TTL)

    async def watch(
        self, key: bytes, *, start_revision: int, prefix: bool = False
    ) -> AsyncIterator[WatchEvent]:
        """Events on ``key`` (or under it) from ``start_revision`` on; no event is missed."""
        watch = await self._call(
            self._client.watch(
                key,
                range_end=_prefix_end(key) if prefix else None,
                start_revision=start_revision,
            ),
            "watch",
        )
        try:
            async for event in watch:
                yield WatchEvent(
                    event.kv.key,
                    event.kv.value,
                    event.kind == aetcd.EventKind.DELETE,
                    event.kv.create_revision,
                    event.kv.mod_revision,
                )
        except (aetcd.exceptions.ClientError, grpc.RpcError) as err:
            raise _translate(err, "watch") from err
        finally:
            # Detached: aetcd's cancel takes a lock its stream handler may hold, so awaiting it
            # here could hang whoever is cancelling this watch.
            _detach(watch.cancel())

    async def _call(self, awaitable, what: str, timeout: float | None = None):
        with metrics.EtcdRequest(what):
            try:
                return await _bounded(awaitable, timeout or self.timeout)
            except TimeoutError as err:
                raise EtcdUnavailable(
                    f"etcd ({', '.join(self.endpoints)}) did not answer {what} "
                    f"within {timeout or self.timeout:.1f} s"
                ) from err
            except (aetcd.exceptions.ClientError, grpc.RpcError) as err:
                raise _translate(err, what) from err


def _translate(err: Exception, what: str) -> EtcdError:
    if isinstance(
        err, aetcd.exceptions.ConnectionFailedError | aetcd.exceptions.ConnectionTimeoutError
    ):
        return EtcdUnavailable(f"etcd unavailable during {what}: {err}")
    return EtcdError(f"etcd {what} failed: {err}")


async def _bounded(awaitable, timeout: float):
    """``awaitable``'s result, or TimeoutError after ``timeout`` seconds, whatever it does.

    ``asyncio.wait_for`` waits for the cancelled call to finish unwinding; aetcd's watch calls
    can block in that unwinding on a lock (an ``asyncio.Condition`` re-acquiring it), which
    turned a 1 s deadline into a hang. Here the call is cancelled and left to unwind alone.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise TimeoutError
    return task.result()


_detached: set[asyncio.Task] = set()


def _detach(awaitable) -> None:
    """Run ``awaitable`` in the background for at most a second, ignoring what it raises."""

    async def quietly() -> None:
        try:
            await _bounded(awaitable, 1.0)
        except Exception:
            pass  # best effort: the stream it tidies is being dropped anyway

    task = asyncio.ensure_future(quietly())
    _detached.add(task)
    task.add_done_callback(_detached.discard)


def _abandon(task: asyncio.Future) -> None:
    task.cancel()
    # Retrieve whatever it ends with, so nothing is logged as "never retrieved".
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _kv(kv) -> KeyValue:
    return KeyValue(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.lease)


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (etcd's range_end)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"


@dataclass(frozen=True, slots=True)
class MemberStatus:
    endpoint: str
    healthy: bool
    member_id: int = 0
    is_leader: bool = False
    error: str = ""


class MemberProbe:
    """Asks each etcd member for its own status, over a channel per member (the shared
    round-robin channel cannot say which member answered)."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        self._channels = {e: grpc.aio.insecure_channel(e) for e in endpoints}

    async def statuses(self, timeout: float = 0.5) -> list[MemberStatus]:
        return list(await asyncio.gather(*(self._status(e, timeout) for e in self._channels)))

    async def _status(self, endpoint: str, timeout: float) -> MemberStatus:
        stub = rpc.MaintenanceStub(self._channels[endpoint])
        try:
            reply = await stub.Status(rpc.StatusRequest(), timeout=timeout)
        except grpc.RpcError as err:
            reason = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)
            return MemberStatus(endpoint, False, error=reason or "no answer")
        member = reply.header.member_id
        healthy = reply.leader != 0 and not reply.errors
        error = "; ".join(reply.errors) or ("" if reply.leader else "no raft leader")
        return MemberStatus(endpoint, healthy, member, member == reply.leader, error)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()))

"""latitude's etcd client: aetcd for the protocol, plus the pieces aetcd lacks.

aetcd talks to one endpoint, over plaintext only, gives every call the same timeout and has no
lease keepalive. Here:
- one gRPC channel over every configured endpoint (round robin, so a dead member is skipped),
  TLS with a client certificate when configured (etcd takes its common name as the user: no
  password anywhere);
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
from aetcd import rpc, watcher

from coordinator import metrics
from latitude.channels import open_channel
from latitude.errors import ConfigError, LatitudeError
from latitude.netaddr import parse_host_port
from latitude.pki import CertFiles


class EtcdError(LatitudeError):
    """etcd refused or failed a request."""


class EtcdUnavailable(EtcdError):
    """No etcd member answered in time."""


class EtcdPermissionDenied(EtcdError):
    """etcd refused who we are: no client certificate it trusts, or a user without the role
    for the key (with auth on, etcd's user is the client certificate's common name)."""


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
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 1.0,
        tls: CertFiles | None = None,
        server_name: str = "",
    ) -> None:
        """``tls``: the CA that signed the members' certificates and our client certificate.
        ``server_name``: the name every member's certificate must carry (default: the
        endpoints' host, when they share one)."""
        if not endpoints:
            raise EtcdError("no etcd endpoints configured")
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        # A gRPC "ipv4:" target lists every member; the round-robin policy spreads calls
        # over them and skips a dead one.
        scheme = "ipv6:" if any(e.startswith("[") for e in endpoints) else "ipv4:"
        options = {
            "grpc.lb_policy_name": "round_robin",
            # Reconnect to a restarted member quickly rather than after the default 20 s.
            "grpc.initial_reconnect_backoff_ms": 100,
            "grpc.max_reconnect_backoff_ms": 1000,
        }
        if tls is not None:
            # The target names several members, so gRPC cannot take the name to verify from
            # it: every member's certificate is checked against this one name instead.
            options["grpc.ssl_target_name_override"] = tls_server_name(endpoints, server_name)
        self._client = _Client(scheme + ",".join(endpoints), tls, options)
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


class _Client(aetcd.Client):
    """aetcd's client on a channel from ``latitude.channels``: TLS when configured (aetcd's own
    ``connect`` only opens plaintext channels, to a single host:port)."""

    def __init__(self, target: str, tls: CertFiles | None, options: dict) -> None:
        super().__init__(options=options)
        self._target = target
        self._tls = tls

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        # Nothing here awaits, so no other task can see a half-built client (aetcd's connect
        # awaits only to log in with a password, which latitude never uses).
        self.channel = open_channel(self._target, self._tls, options=self._options.items())
        self.auth_stub = rpc.AuthStub(self.channel)
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout)
        self._connected.set()


def tls_server_name(endpoints: Sequence[str], configured: str = "") -> str:
    """The name every member's certificate is verified against: ``configured``, else the host
    all ``endpoints`` share; a ConfigError when they are on different hosts."""
    if configured:
        return configured
    hosts = sorted({parse_host_port(e, "etcd")[0] for e in endpoints})
    if len(hosts) != 1:
        raise ConfigError(
            f"etcd_server_name: the etcd endpoints are on different hosts ({', '.join(hosts)}); "
            "name the host every member's certificate carries"
        )
    return hosts[0]


def _translate(err: Exception, what: str) -> EtcdError:
    if isinstance(
        err, aetcd.exceptions.ConnectionFailedError | aetcd.exceptions.ConnectionTimeoutError
    ):
        return EtcdUnavailable(f"etcd unavailable during {what}: {err}")
    if _status_code(err) in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return EtcdPermissionDenied(f"etcd refused {what}: {_details(err)}")
    return EtcdError(f"etcd {what} failed: {err}")


def _status_code(err: BaseException) -> grpc.StatusCode | None:
    """The gRPC status behind ``err``: aetcd wraps the codes it does not map (such as
    PERMISSION_DENIED) in a plain ClientError raised from the RpcError."""
    for cause in (err, err.__cause__):
        if isinstance(cause, grpc.aio.AioRpcError):
            return cause.code()
    return None


def _details(err: Exception) -> str:
    return err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)


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
    secure: bool = False  # asked over TLS

    @property
    def client_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"


class MemberProbe:
    """Asks each etcd member for its own status, over a channel per member (the shared
    round-robin channel cannot say which member answered)."""

    def __init__(
        self, endpoints: Sequence[str], *, tls: CertFiles | None = None, server_name: str = ""
    ) -> None:
        # One member per channel: gRPC verifies each member's certificate against its own
        # host, unless a server name is configured.
        options = {"grpc.ssl_target_name_override": server_name} if tls and server_name else {}
        self._secure = tls is not None
        self._channels = {e: open_channel(e, tls, options=options.items()) for e in endpoints}

    async def statuses(self, timeout: float = 0.5) -> list[MemberStatus]:
        return list(await asyncio.gather(*(self._status(e, timeout) for e in self._channels)))

    async def _status(self, endpoint: str, timeout: float) -> MemberStatus:
        stub = rpc.MaintenanceStub(self._channels[endpoint])
        try:
            reply = await stub.Status(rpc.StatusRequest(), timeout=timeout)
        except grpc.RpcError as err:
            reason = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)
            return MemberStatus(endpoint, False, error=reason or "no answer", secure=self._secure)
        member = reply.header.member_id
        healthy = reply.leader != 0 and not reply.errors
        error = "; ".join(reply.errors) or ("" if reply.leader else "no raft leader")
        return MemberStatus(
            endpoint, healthy, member, member == reply.leader, error, secure=self._secure
        )

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._channels.values()))

"""The coordinator's one contract with etcd (the "store"), and its etcd implementation.

Every call says which kind it is:

- timing-critical: ``campaign`` and ``renew`` run inside the leader lease; the caller passes a
  deadline shorter than the TTL and treats a late answer as a failure.
- atomic: ``campaign`` (take the leader key only if absent) and ``write`` (apply only while the
  leader key still holds our leadership). A ``write`` that returns False means this coordinator
  has been deposed; it must not be retried.
- retryable: ``leader``, ``read``, ``read_prefix`` and ``read_page`` are plain reads.

The unit tests drive the pure logic above this interface; everything that talks to the store is
tested against the real etcd cluster of the test stack.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from coordinator import keys
from coordinator.etcd import Etcd

# The most keys one ``write`` should put or delete: with the leader guard it stays within
# etcd's --max-txn-ops (128 by default). Callers with more split them.
MAX_WRITE_KEYS = 100


@dataclass(frozen=True, slots=True)
class Candidate:
    """A coordinator that may lead: its id and where agents and clients reach it."""

    id: str
    address: str

    def encode(self, elected_at: float) -> bytes:
        return json.dumps(
            {"id": self.id, "address": self.address, "elected_at": elected_at}
        ).encode()


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    id: str
    address: str
    # The leader key's create revision: strictly greater for every new term. Commands and
    # acknowledgements carry it, so an agent can refuse a deposed leader.
    epoch: int
    elected_at: float

    @classmethod
    def decode(cls, value: bytes, epoch: int) -> LeaderInfo:
        data = json.loads(value)
        return cls(data["id"], data["address"], epoch, float(data["elected_at"]))


@dataclass(frozen=True, slots=True)
class Leadership:
    """Proof that we lead: the key's value and create revision, and the lease holding it."""

    info: LeaderInfo
    value: bytes
    lease: int

    @property
    def epoch(self) -> int:
        return self.info.epoch


class Store(Protocol):
    async def campaign(self, me: Candidate, ttl: int, timeout: float) -> Leadership | None: ...

    async def renew(self, leadership: Leadership, timeout: float) -> bool: ...

    async def resign(self, leadership: Leadership) -> None: ...

    async def leader(self) -> tuple[LeaderInfo | None, int]: ...

    def watch_leader(self, start_revision: int) -> AsyncIterator[LeaderInfo | None]: ...

    async def write(
        self,
        leadership: Leadership,
        puts: Mapping[str, bytes],
        deletes: Sequence[str] = (),
        timeout: float | None = None,
    ) -> bool: ...

    async def read(self, name: str) -> bytes | None: ...

    async def read_prefix(self, name: str) -> dict[str, bytes]: ...

    async def read_at(self, name: str) -> tuple[bytes | None, int]: ...

    async def read_page(
        self, name: str, *, limit: int, before: str = "", newest_first: bool = False
    ) -> list[tuple[str, bytes]]: ...

    def watch(self, name: str, start_revision: int) -> AsyncIterator[bytes | None]: ...

    async def close(self) -> None: ...


class EtcdStore:
    """The store on etcd. Names are paths under ``prefix`` (default /latitude)."""

    def __init__(self, etcd: Etcd, prefix: str = "/latitude") -> None:
        self._etcd = etcd
        self._prefix = prefix.rstrip("/")
        self._leader_key = self._key(keys.LEADER)

    def _key(self, name: str) -> bytes:
        return f"{self._prefix}/{name}".encode()

    async def campaign(self, me: Candidate, ttl: int, timeout: float) -> Leadership | None:
        t = self._etcd.transactions
        lease = await self._etcd.grant(ttl, timeout)
        value = me.encode(time.time())
        taken, _ = await self._etcd.txn(
            compare=[t.create(self._leader_key) == 0],
            success=[t.put(self._leader_key, value, lease=lease)],
            timeout=timeout,
        )
        if not taken:
            await self._etcd.revoke(lease, timeout)
            return None
        current = await self._etcd.get(self._leader_key, timeout)
        if current is None or current.value != value:
            return None
        return Leadership(LeaderInfo.decode(value, current.create_revision), value, lease)

    async def renew(self, leadership: Leadership, timeout: float) -> bool:
        return await self._etcd.keepalive(leadership.lease, timeout) > 0

    async def resign(self, leadership: Leadership) -> None:
        # Revoking the lease deletes the leader key at once: followers need not wait for the TTL.
        await self._etcd.revoke(leadership.lease)

    async def leader(self) -> tuple[LeaderInfo | None, int]:
        kvs, revision = await self._etcd.get_prefix(self._leader_key)
        for kv in kvs:
            if kv.key == self._leader_key:
                return LeaderInfo.decode(kv.value, kv.create_revision), revision
        return None, revision

    async def watch_leader(self, start_revision: int) -> AsyncIterator[LeaderInfo | None]:
        async for event in self._etcd.watch(self._leader_key, start_revision=start_revision):
            if event.deleted:
                yield None
            else:
                current = await self._etcd.get(self._leader_key)
                yield (
                    None
                    if current is None
                    else LeaderInfo.decode(current.value, current.create_revision)
                )

    async def write(
        self,
        leadership: Leadership,
        puts: Mapping[str, bytes],
        deletes: Sequence[str] = (),
        timeout: float | None = None,
    ) -> bool:
        t = self._etcd.transactions
        ops = [t.put(self._key(name), value) for name, value in puts.items()]
        ops += [t.delete(self._key(name)) for name in deletes]
        applied, _ = await self._etcd.txn(
            compare=[
                t.create(self._leader_key) == leadership.epoch,
                t.value(self._leader_key) == leadership.value,
            ],
            success=ops,
            timeout=timeout,
        )
        return applied

    async def read(self, name: str) -> bytes | None:
        kv = await self._etcd.get(self._key(name))
        return None if kv is None else kv.value

    async def read_prefix(self, name: str) -> dict[str, bytes]:
        base = self._key(name).decode().rstrip("/") + "/"
        kvs, _ = await self._etcd.get_prefix(base.encode())
        return {kv.key.decode()[len(base) :]: kv.value for kv in kvs}

    async def read_page(
        self, name: str, *, limit: int, before: str = "", newest_first: bool = False
    ) -> list[tuple[str, bytes]]:
        """Up to ``limit`` (name, value) pairs under ``name``, in name order (``newest_first``:
        descending), only names that sort below ``before`` when it is given."""
        base = self._key(name).decode().rstrip("/") + "/"
        end = (base + before).encode() if before else None
        kvs = await self._etcd.get_range(base.encode(), end, limit=limit, descending=newest_first)
        return [(kv.key.decode()[len(base) :], kv.value) for kv in kvs]

    async def read_at(self, name: str) -> tuple[bytes | None, int]:
        """The value (None if absent) and the store revision it was read at: watch from + 1."""
        key = self._key(name)
        kvs, revision = await self._etcd.get_prefix(key)
        return next((kv.value for kv in kvs if kv.key == key), None), revision

    async def watch(self, name: str, start_revision: int) -> AsyncIterator[bytes | None]:
        """Each new value of ``name`` (None when deleted) from ``start_revision`` on."""
        async for event in self._etcd.watch(self._key(name), start_revision=start_revision):
            yield None if event.deleted else event.value

    async def close(self) -> None:
        await self._etcd.close()

"""The routing table as one coordinator serves it: followed from etcd, answered from memory.

Every replica, leader or not, keeps the newest table the leader published and a ``Resolver``
built from it once per version, so Resolve costs no etcd round trip and reads scale with
replicas. ``newer_than`` lets Watch streams wait for the next version without polling.

When etcd is unreachable the cache keeps the last table it had (static stability); it never
goes back to an older version.
"""

from __future__ import annotations

import asyncio
import logging
import random

from google.protobuf.message import DecodeError

from coordinator import keys
from coordinator.etcd import EtcdError
from coordinator.store import Store
from latitude.routing import Resolver
from latitude.v1 import routing_pb2

log = logging.getLogger(__name__)

TABLE_KEY = keys.ROUTING_TABLE
# A watch on a partitioned etcd member can go quiet; re-read the key this often regardless.
_REREAD_EVERY = 5.0


class TableCache:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.table: routing_pb2.RoutingTable | None = None
        self.resolver: Resolver | None = None
        self._next: asyncio.Future[routing_pb2.RoutingTable] | None = None

    @property
    def version(self) -> int:
        return self.table.version if self.table is not None else 0

    def apply(self, table: routing_pb2.RoutingTable) -> bool:
        """Serve ``table`` if it is newer than what is served; whether it was."""
        if table.version <= self.version:
            return False
        self.resolver = Resolver(table, succeeding=self.resolver)
        self.table = table
        waiting, self._next = self._next, None
        if waiting is not None and not waiting.done():
            waiting.set_result(table)
        return True

    async def newer_than(self, version: int) -> routing_pb2.RoutingTable:
        """The served table once its version differs from ``version``."""
        table = self.table
        if table is not None and table.version != version:
            return table
        if self._next is None or self._next.done():
            self._next = asyncio.get_running_loop().create_future()
        # Shielded: one Watch stream going away must not cancel the future the others share.
        return await asyncio.shield(self._next)

    async def follow(self) -> None:
        """Keep the cache current from etcd until cancelled; outages are waited out."""
        backoff = 0.1
        while True:
            try:
                await self._follow_once()
                backoff = 0.1
                continue
            except EtcdError as err:
                log.warning("routing table: %s; serving version %d meanwhile", err, self.version)
            except Exception:
                # Serving a slightly old table beats not following at all: log it, go on.
                log.exception(
                    "routing table follower failed; serving version %d meanwhile", self.version
                )
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 2.0)

    async def _follow_once(self) -> None:
        value, revision = await self._store.read_at(TABLE_KEY)
        self._apply_bytes(value)
        watch = self._store.watch(TABLE_KEY, revision + 1)
        try:
            while True:
                try:
                    async with asyncio.timeout(_REREAD_EVERY):
                        value = await anext(watch)
                except (TimeoutError, StopAsyncIteration):
                    return
                self._apply_bytes(value)
        finally:
            await watch.aclose()

    def _apply_bytes(self, value: bytes | None) -> None:
        if not value:
            return
        try:
            table = routing_pb2.RoutingTable.FromString(value)
        except DecodeError as err:  # a corrupt value must not stop the replica serving
            log.error(
                "routing table in etcd is unreadable (%s); keeping version %d", err, self.version
            )
            return
        self.apply(table)

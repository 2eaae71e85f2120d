"""Leader election on the store: a lease-bound key, a keepalive loop, and a watch.

One coordinator holds the leader key; its lease is renewed every TTL/3. The leader counts
itself leader only until ``last successful renewal sent + TTL - margin``: the server cannot have
expired the lease before then, so a leader that loses contact with etcd steps down before
anyone else can be elected. Followers watch the key from the revision after they read it (no
delete is missed) and campaign as soon as it is gone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from coordinator import metrics
from coordinator.etcd import EtcdError
from coordinator.store import Candidate, LeaderInfo, Leadership, Store

log = logging.getLogger(__name__)

# Give up our claim this long before the lease could expire on the server.
_SAFETY_MARGIN = 0.5


class Election:
    def __init__(
        self,
        store: Store,
        me: Candidate,
        *,
        ttl: int = 3,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._me = me
        self._ttl = ttl
        self._on_change = on_change
        self._clock = clock
        self.leader: LeaderInfo | None = None  # who leads, as far as we know
        self.leadership: Leadership | None = None  # set while we lead
        self._valid_until = 0.0
        self.elected = asyncio.Event()
        self.deposed = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        """True only while our claim is certainly still valid on the server."""
        return self.leadership is not None and self._clock() < self._valid_until

    async def run(self) -> None:
        """Campaign, lead and follow until cancelled; etcd outages are waited out."""
        backoff = 0.1
        while True:
            try:
                started = self._clock()
                leadership = await self._store.campaign(self._me, self._ttl, timeout=self._ttl / 3)
                if leadership is not None:
                    self._valid_until = started + self._ttl - _SAFETY_MARGIN
                    await self._lead(leadership)
                else:
                    await self._follow()
                backoff = 0.1
            except EtcdError as err:
                self._set_leader(None)
                log.warning("election: %s; retrying in %.1f s", err, backoff)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 2.0)

    async def _lead(self, leadership: Leadership) -> None:
        self.leadership = leadership
        self.deposed.clear()
        self.elected.set()
        self._set_leader(leadership.info)
        log.info("elected leader with epoch %d", leadership.epoch)
        watcher = asyncio.create_task(self._watch_own_key(leadership))
        try:
            await self._keep_alive(leadership, watcher)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self._step_down()
            try:
                async with asyncio.timeout(self._ttl / 3):
                    await self._store.resign(leadership)
            except (EtcdError, TimeoutError):
                pass  # the lease expires on its own

    async def _keep_alive(self, leadership: Leadership, watcher: asyncio.Task) -> None:
        interval = self._ttl / 3
        while not watcher.done():
            await asyncio.wait({watcher}, timeout=interval)
            if watcher.done() or self.leadership is not leadership:
                return
            remaining = self._valid_until - self._clock()
            if remaining <= 0:
                log.warning("leader lease could not be renewed in time; stepping down")
                return
            sent = self._clock()
            try:
                renewed = await self._store.renew(leadership, timeout=min(interval, remaining))
            except EtcdError as err:
                log.warning("lease renewal failed: %s", err)
                continue
            if not renewed:
                log.warning("leader lease expired; stepping down")
                return
            self._valid_until = sent + self._ttl - _SAFETY_MARGIN

    async def _watch_own_key(self, leadership: Leadership) -> None:
        """Return when the leader key stops being ours (deleted by hand, or expired)."""
        async for info in self._store.watch_leader(leadership.epoch + 1):
            if info is None or info.epoch != leadership.epoch:
                log.warning("leader key changed under us; stepping down")
                return

    def step_down(self) -> None:
        """Stop leading at once (a guarded write found the leader key no longer ours)."""
        self._step_down()

    def _step_down(self) -> None:
        if self.leadership is not None:
            self.leadership = None
            self.elected.clear()
            self.deposed.set()
            self._set_leader(None)

    async def _follow(self) -> None:
        """Track the current leader; return when the key is gone (time to campaign)."""
        info, revision = await self._store.leader()
        self._set_leader(info)
        if info is None:
            return
        watch = self._store.watch_leader(revision + 1)
        try:
            while True:
                # A watch on a partitioned member can go quiet; re-read now and then.
                try:
                    async with asyncio.timeout(self._ttl):
                        info = await anext(watch)
                except TimeoutError:
                    return
                except StopAsyncIteration:
                    return
                self._set_leader(info)
                if info is None:
                    return
        finally:
            await watch.aclose()

    def _set_leader(self, info: LeaderInfo | None) -> None:
        if info != self.leader:
            self.leader = info
            metrics.leader_seen(info)
            self._on_change()

    async def resign(self) -> None:
        """Give up leadership now (on shutdown), so a successor need not wait for the TTL."""
        leadership = self.leadership
        self._step_down()
        if leadership is not None:
            try:
                async with asyncio.timeout(self._ttl / 3):
                    await self._store.resign(leadership)
            except (EtcdError, TimeoutError):
                pass

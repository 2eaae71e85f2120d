"""Live updates for every open page: one poll of the cluster, fanned out as server-sent events.

While at least one page listens, the hub reads the cluster view every ``interval`` (and the
event history and incidents less often) and offers each frame to every page's own bounded
buffer; it never waits for a page. A page whose buffer is full is too slow to follow: it is
dropped (its stream ends, and the browser's EventSource reconnects by itself, starting again
from the current view). With no page listening, the hub reads nothing.

Beside the poll, the hub watches the failover record in etcd, so that every phase of a running
failover reaches the pages as the leader writes it, however short.

Frames are SSE text: ``event: <kind>`` and one ``data:`` line of JSON. Kinds: ``status`` (the
whole picture, views.status_view), ``failover`` (views.failover_view, or null), ``events``
(the newest events, oldest first), ``incidents``, and ``unavailable`` (``{"error": ...}``:
the view could not be read just now).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from typing import Any

from aiohttp import web

from coordinator.dashboard.source import ClusterSource, Unavailable

log = logging.getLogger(__name__)

INTERVAL = 0.5
EVENTS_EVERY = 2  # polls
INCIDENTS_EVERY = 4  # polls
BUFFER = 16  # frames a page may fall behind by
MAX_PAGES = 64
KEEPALIVE = 15.0
WRITE_TIMEOUT = 5.0


def frame(kind: str, data: Any) -> bytes:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return f"event: {kind}\ndata: {body}\n\n".encode()


class Page:
    """One listening page: its frames not yet written, at most ``bound`` of them."""

    def __init__(self, bound: int = BUFFER) -> None:
        self._frames: deque[bytes] = deque()
        self._bound = bound
        self._ready = asyncio.Event()
        self.dropped = False

    def offer(self, data: bytes) -> bool:
        """Queue a frame; False (and the page dropped) when it is too far behind."""
        if self.dropped:
            return False
        if len(self._frames) >= self._bound:
            self.drop()
            return False
        self._frames.append(data)
        self._ready.set()
        return True

    def drop(self) -> None:
        self.dropped = True
        self._frames.clear()
        self._ready.set()

    async def take(self, wait: float) -> list[bytes]:
        """Every queued frame; empty after ``wait`` seconds with none, or once dropped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._ready.wait()
        self._ready.clear()
        frames = list(self._frames)
        self._frames.clear()
        return frames


class Hub:
    def __init__(
        self,
        source: ClusterSource,
        *,
        interval: float = INTERVAL,
        buffer: int = BUFFER,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self._source = source
        self._interval = interval
        self._buffer = buffer
        self._max_pages = max_pages
        self._pages: set[Page] = set()
        self._latest: dict[str, bytes] = {}  # kind -> newest frame, for pages that join
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()  # read the status now, not at the next interval
        self._closed = False

    @property
    def pages(self) -> int:
        return len(self._pages)

    def join(self) -> Page | None:
        """A new listening page, given the newest frames at once; None when the hub is full
        or closing."""
        if self._closed or len(self._pages) >= self._max_pages:
            return None
        page = Page(self._buffer)
        for data in self._latest.values():
            page.offer(data)
        self._pages.add(page)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="dashboard hub")
        return page

    def leave(self, page: Page) -> None:
        self._pages.discard(page)

    def publish(self, kind: str, data: Any, *, keep: bool = True) -> None:
        encoded = frame(kind, data)
        if keep:
            self._latest[kind] = encoded
        for page in list(self._pages):
            if not page.offer(encoded):
                log.info("a dashboard page fell %d updates behind: dropped", self._buffer)
                self._pages.discard(page)

    async def _poll(self) -> None:
        follower = asyncio.create_task(self._follow_failovers(), name="dashboard failovers")
        try:
            await self._poll_rounds()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            self._latest.clear()  # stale by the time anyone joins again

    async def _follow_failovers(self) -> None:
        """Each failover record as the leader writes it, published at once (a phase may last
        less than a poll), and a fresh status after it; outages are waited out."""
        backoff = 0.1
        while True:
            try:
                async for failover in self._source.failovers():
                    self.publish("failover", failover)
                    self._wake.set()
                    backoff = 0.1
            except Unavailable as err:
                log.debug("dashboard failover watch: %s", err)
            except Exception:
                log.exception("dashboard failover watch failed")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _poll_rounds(self) -> None:
        rounds = 0
        events_seen: int | None = None
        incidents_seen: Any = None
        while self._pages:
            try:
                # Fresh: the hub's own rounds are the reads page requests share.
                self.publish("status", await self._source.snapshot(fresh=True))
                if rounds % EVENTS_EVERY == 0:
                    found = await self._source.events()
                    newest = found[-1]["sequence"] if found else 0
                    if newest != events_seen:
                        events_seen = newest
                        self.publish("events", found)
                if rounds % INCIDENTS_EVERY == 0:
                    incidents = await self._source.incidents()
                    if incidents != incidents_seen:
                        incidents_seen = incidents
                        self.publish("incidents", incidents)
            except Unavailable as err:
                self.publish("unavailable", {"error": str(err)}, keep=False)
            except Exception:
                # The dashboard must never take the coordinator down; the next round retries.
                log.exception("dashboard update failed")
            rounds += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()

    async def close(self) -> None:
        """End every stream (the listener is shutting down)."""
        self._closed = True
        for page in list(self._pages):
            page.drop()
        self._pages.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """GET /api/stream: server-sent events until the page goes, falls behind, or the
        listener shuts down."""
        page = self.join()
        if page is None:
            problem = f"too many dashboard streams (at most {self._max_pages})"
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": problem}), content_type="application/json"
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            while not page.dropped:
                frames = await page.take(KEEPALIVE)
                if page.dropped:
                    break
                async with asyncio.timeout(WRITE_TIMEOUT):
                    await response.write(b"".join(frames) or b": keepalive\n\n")
        except (ConnectionError, TimeoutError):
            pass  # the page went away, or stopped reading
        finally:
            self.leave(page)
        return response

"""Where the dashboard's figures come from, each read bounded in time.

The cluster view and a region's history are AdminService's own GetStatus and GetHistory,
called in-process: the page shows exactly what ``latitude status`` and ``latitude history``
print, on any replica (followers read etcd like the leader). Every read that touches etcd is
time-bounded, and callers asking for the same thing at once share one read in flight (and
its answer for a moment after), so a page — or a hundred — costs the control loop at most
one read of each kind at a time. Incidents come from whatever provider is plugged in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

import grpc

from coordinator import keys
from coordinator.dashboard import views
from coordinator.etcd import EtcdError
from latitude.errors import LatitudeError
from latitude.v1 import admin_pb2, history_pb2

log = logging.getLogger(__name__)

# A status read is reused for this long (a burst of page loads is one etcd read); history,
# sampled every 5 s, for longer.
STATUS_REUSE = 0.25
HISTORY_REUSE = 4.0
EVENTS = 30
HISTORY_SECONDS = 15 * 60
HISTORY_SAMPLES = 180

Incidents = Callable[[], Awaitable[list[Any]]]


class Unavailable(LatitudeError):
    """The figures cannot be read now (etcd slow or unreachable); the message says why."""


class UnknownRegion(LatitudeError):
    """A region the deployment does not have."""


class BadRequest(LatitudeError):
    """A parameter out of bounds; the message names it."""


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details or code.name)
        self.code = code


class _InProcessCall:
    """The part of a grpc.aio servicer context AdminService's read calls use, for calling them
    in-process: an abort raises _Aborted with its code, metadata goes nowhere."""

    def __init__(self, budget: float) -> None:
        self._deadline = time.monotonic() + budget

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        raise _Aborted(code, details)

    def set_trailing_metadata(self, metadata) -> None:
        pass

    def invocation_metadata(self):
        return ()

    def time_remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())


class SharedReads:
    """Reads by key: one in flight per key, shared by every caller, its answer reused for
    ``reuse`` seconds; each bounded by ``timeout`` (Unavailable past it)."""

    def __init__(
        self, reuse: float, timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reuse = reuse
        self._timeout = timeout
        self._clock = clock
        self._answers: dict[Hashable, tuple[float, Any]] = {}
        self._reading: dict[Hashable, asyncio.Task] = {}

    async def get(
        self, key: Hashable, read: Callable[[], Awaitable[Any]], *, fresh: bool = False
    ) -> Any:
        """``fresh``: a read that starts now, for a caller that knows something changed."""
        answer = self._answers.get(key)
        if not fresh and answer is not None and self._clock() - answer[0] < self._reuse:
            return answer[1]
        task = self._reading.get(key)
        if fresh or task is None or task.done():
            # Keys come from requests (a region, a window): keep none that is not in use.
            now = self._clock()
            self._answers = {k: a for k, a in self._answers.items() if now - a[0] < self._reuse}
            self._reading = {k: t for k, t in self._reading.items() if not t.done()}
            task = asyncio.create_task(self._read(key, read), name=f"dashboard read {key}")
            # Retrieved here too: every page that waited for it may have gone.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._reading[key] = task
        # Shielded: a page that goes away must not cancel the read others wait for.
        return await asyncio.shield(task)

    async def _read(self, key: Hashable, read: Callable[[], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                value = await read()
        except TimeoutError as err:
            raise Unavailable(f"etcd did not answer within {self._timeout:.1f} s") from err
        except EtcdError as err:
            raise Unavailable(f"etcd unreachable: {err}") from err
        self._answers[key] = (self._clock(), value)
        return value


class ClusterSource:
    """``admin`` is this coordinator's AdminService; ``incidents`` a coroutine function
    answering the open incidents (views.incident_view dicts, or Incident messages); without
    one, AdminService.ListIncidents when the service has it."""

    def __init__(
        self, node, admin, *, incidents: Incidents | None = None, timeout: float = 2.0
    ) -> None:
        self._node = node
        self._admin = admin
        if incidents is None and hasattr(admin, "ListIncidents"):
            incidents = self._open_incidents
        self._incidents = incidents
        self.timeout = timeout
        self._status = SharedReads(STATUS_REUSE, timeout)
        self._history = SharedReads(HISTORY_REUSE, timeout)

    async def snapshot(self, *, fresh: bool = False) -> dict[str, Any]:
        """The page's whole picture (views.status_view); Unavailable when it cannot be read
        within the timeout. ``fresh``: read now, not a moment ago."""
        return await self._status.get("status", self._read_status, fresh=fresh)

    async def _read_status(self) -> dict[str, Any]:
        try:
            status, failover = await asyncio.gather(
                self._admin.GetStatus(admin_pb2.GetStatusRequest(), _InProcessCall(self.timeout)),
                self._node.store.read(keys.FAILOVER),
            )
        except _Aborted as err:
            raise Unavailable(str(err)) from err
        last = admin_pb2.FailoverStatus.FromString(failover) if failover else None
        return views.status_view(status, last)

    async def failovers(self) -> AsyncIterator[dict[str, Any] | None]:
        """The newest failover record (views.failover_view; None when there is none), then
        each one the leader writes, as it writes it: every phase of a running failover, however
        quick. Unavailable when etcd fails; it ends when the watch does."""
        store = self._node.store
        try:
            async with asyncio.timeout(self.timeout):
                value, revision = await store.read_at(keys.FAILOVER)
            yield _failover(value)
            watch = store.watch(keys.FAILOVER, revision + 1)
            try:
                async for value in watch:
                    yield _failover(value)
            finally:
                await watch.aclose()
        except TimeoutError as err:
            raise Unavailable(f"etcd did not answer within {self.timeout:.1f} s") from err
        except EtcdError as err:
            raise Unavailable(f"etcd unreachable: {err}") from err

    async def events(self, limit: int = EVENTS) -> list[dict[str, Any]]:
        """The newest ``limit`` events, oldest first (the event history ListEvents serves)."""

        async def read() -> list[dict[str, Any]]:
            page = await self._node.store.read_page(keys.EVENTS, limit=limit, newest_first=True)
            return [views.event_view(admin_pb2.Event.FromString(value)) for _, value in page][::-1]

        return await self._status.get(("events", limit), read)

    async def history(self, region: str, seconds: float = HISTORY_SECONDS) -> dict[str, Any]:
        """The region's samples of the last ``seconds`` (at most HISTORY_SAMPLES of them);
        UnknownRegion for a region the deployment does not have."""
        if region not in self._node.config.regions:
            known = ", ".join(self._node.config.regions)
            raise UnknownRegion(f"unknown region {region!r} (known: {known})")

        async def read() -> dict[str, Any]:
            request = history_pb2.GetHistoryRequest(
                region=region, since_seconds=seconds, max_samples=HISTORY_SAMPLES
            )
            try:
                answer = await self._admin.GetHistory(request, _InProcessCall(self.timeout))
            except _Aborted as err:
                if err.code == grpc.StatusCode.NOT_FOUND:
                    raise UnknownRegion(str(err)) from err
                if err.code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise BadRequest(str(err)) from err
                raise Unavailable(str(err)) from err
            return views.history_view(answer)

        return await self._history.get(("history", region, seconds), read)

    async def _open_incidents(self) -> list[Any]:
        request = admin_pb2.ListIncidentsRequest()  # open ones only
        try:
            answer = await self._admin.ListIncidents(request, _InProcessCall(self.timeout))
        except _Aborted as err:
            raise Unavailable(str(err)) from err
        return list(answer.incidents)

    async def incidents(self) -> dict[str, Any]:
        """The open incidents, or ``available: false`` when no provider is plugged in or it
        fails (the page says so rather than show "none")."""
        if self._incidents is None:
            return {"available": False, "incidents": []}
        try:
            async with asyncio.timeout(self.timeout):
                found = await self._incidents()
        except (TimeoutError, EtcdError, LatitudeError) as err:
            log.debug("incidents unavailable: %s", err)
            return {"available": False, "incidents": [], "error": str(err) or "timed out"}
        return {
            "available": True,
            "incidents": [i if isinstance(i, dict) else views.incident_view(i) for i in found],
        }


def _failover(value: bytes | None) -> dict[str, Any] | None:
    return views.failover_view(admin_pb2.FailoverStatus.FromString(value)) if value else None
